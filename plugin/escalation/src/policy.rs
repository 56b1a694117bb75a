//! Escalation policy: who is legacy, who is in the rollout, where and how to
//! escalate. Typed TOML (unknown fields refused), validated on load with
//! errors that name the field and, where the file gives one, the line.

use regex::Regex;
use serde::Deserialize;
use std::collections::BTreeMap;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum PolicyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Toml(#[from] toml::de::Error),
    #[error("invalid `{field}`{}: {message}", line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    Invalid {
        field: String,
        line: Option<usize>,
        message: String,
    },
}

fn invalid(
    field: impl Into<String>,
    line: Option<usize>,
    message: impl Into<String>,
) -> PolicyError {
    PolicyError::Invalid {
        field: field.into(),
        line,
        message: message.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Escalate on the client's behalf.
    Legacy,
    /// The client escalates by itself: pass its requests through.
    Capable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MediaMode {
    /// Re-INVITE the client without SDP for a fresh MSRP offer (RFC 3725).
    FreshOffer,
    /// Reuse the client's last offer from the dialog state.
    ReuseOffer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutsideDialog {
    /// Answer 403.
    Reject,
    /// Let the host forward it unchanged.
    Pass,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BodyFormat {
    /// One URI per line.
    Lines,
    /// An RFC 4826 resource-lists document.
    ResourceList,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Legacy => "legacy",
            Verdict::Capable => "capable",
        })
    }
}

impl std::fmt::Display for MediaMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MediaMode::FreshOffer => "fresh-offer",
            MediaMode::ReuseOffer => "reuse-offer",
        })
    }
}

/// The file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    version: String,
    #[serde(default)]
    shadow: bool,
    #[serde(default)]
    legacy: LegacyFile,
    #[serde(default)]
    rollout: RolloutFile,
    #[serde(default)]
    triggers: TriggersFile,
    #[serde(default)]
    domains: BTreeMap<String, DomainFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyFile {
    #[serde(default = "capable")]
    default: Verdict,
    #[serde(default)]
    rules: Vec<RuleFile>,
}

fn capable() -> Verdict {
    Verdict::Capable
}

impl Default for LegacyFile {
    fn default() -> Self {
        LegacyFile {
            default: Verdict::Capable,
            rules: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    name: String,
    verdict: Verdict,
    user_agent: Option<toml::Spanned<String>>,
    missing_feature: Option<String>,
    users: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RolloutFile {
    #[serde(default = "hundred")]
    percent: toml::Spanned<f64>,
    #[serde(default)]
    canary: Vec<String>,
}

fn hundred() -> toml::Spanned<f64> {
    toml::Spanned::new(0..0, 100.0)
}

impl Default for RolloutFile {
    fn default() -> Self {
        RolloutFile {
            percent: hundred(),
            canary: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggersFile {
    #[serde(default = "yes")]
    refer: bool,
    #[serde(default = "yes")]
    multi_refer: bool,
    #[serde(default = "reject")]
    outside_dialog: OutsideDialog,
    custom: Option<CustomTrigger>,
}

fn yes() -> bool {
    true
}

fn reject() -> OutsideDialog {
    OutsideDialog::Reject
}

impl Default for TriggersFile {
    fn default() -> Self {
        TriggersFile {
            refer: true,
            multi_refer: true,
            outside_dialog: OutsideDialog::Reject,
            custom: None,
        }
    }
}

/// An operator-defined "add user" request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomTrigger {
    pub method: String,
    pub content_type: String,
    pub format: BodyFormat,
    /// The MESSAGE the client gets when the users were added; `{added}`
    /// stands for them ("carol@example.com and dave@example.com").
    #[serde(default = "default_added_message")]
    pub added_message: String,
    /// The MESSAGE the client gets when they could not be added (refused
    /// or failed); `{added}` as above, `{reason}` the status ("486 Busy Here").
    #[serde(default = "default_failed_message")]
    pub failed_message: String,
}

pub fn default_added_message() -> String {
    "Added to the chat: {added}.".into()
}

pub fn default_failed_message() -> String {
    "Could not add {added} to the chat: {reason}.".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct DomainFile {
    factory_uri: toml::Spanned<String>,
    #[serde(default = "ten")]
    max_group_size: usize,
    #[serde(default = "fresh")]
    media: MediaMode,
    #[serde(default)]
    notify_user: bool,
}

fn ten() -> usize {
    10
}

fn fresh() -> MediaMode {
    MediaMode::FreshOffer
}

// ----- the validated policy -----

#[derive(Debug, Clone)]
pub enum Matcher {
    UserAgent(Regex),
    MissingFeature(String),
    Users(Vec<UserPattern>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserPattern {
    /// `user@host`, lower-cased.
    Address(String),
    Domain(String),
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub verdict: Verdict,
    pub matcher: Matcher,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Domain {
    pub factory_uri: String,
    pub max_group_size: usize,
    pub media: MediaMode,
    pub notify_user: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Triggers {
    pub refer: bool,
    pub multi_refer: bool,
    pub outside_dialog: OutsideDialog,
    pub custom: Option<CustomTrigger>,
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub version: String,
    /// FNV-1a of the file text: tells which file is in force.
    pub hash: u64,
    pub shadow: bool,
    pub default_verdict: Verdict,
    pub rules: Vec<Rule>,
    /// Share of users in, in hundredths of a percent (0..=10000).
    pub rollout_basis_points: u32,
    pub canary: Vec<UserPattern>,
    pub triggers: Triggers,
    pub domains: BTreeMap<String, Domain>,
}

fn line_of(text: &str, span: std::ops::Range<usize>) -> Option<usize> {
    (span.start > 0 || span.end > 0)
        .then(|| text[..span.start.min(text.len())].matches('\n').count() + 1)
}

fn user_pattern(s: &str) -> Option<UserPattern> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if s.contains('@') {
        normalize_user(s).map(UserPattern::Address)
    } else {
        Some(UserPattern::Domain(s.to_ascii_lowercase()))
    }
}

/// `sip:Alice@Example.com;x` → `alice@example.com`.
pub fn normalize_user(uri: &str) -> Option<String> {
    let s = uri.trim().trim_start_matches('<').trim_end_matches('>');
    let s = s
        .strip_prefix("sip:")
        .or_else(|| s.strip_prefix("sips:"))
        .unwrap_or(s);
    let s = s.split([';', '?', '>']).next()?;
    let (user, host) = s.rsplit_once('@')?;
    let host = host.split(':').next()?;
    if user.is_empty() || host.is_empty() {
        return None;
    }
    Some(format!(
        "{}@{}",
        user.to_ascii_lowercase(),
        host.to_ascii_lowercase()
    ))
}

/// FNV-1a, 64 bit: fixed forever, so a user's bucket is the same on every
/// host, build and restart.
pub fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The rollout bucket of a user, 0..10000.
pub fn bucket(user: &str) -> u32 {
    let key = normalize_user(user).unwrap_or_else(|| user.trim().to_ascii_lowercase());
    (fnv1a(key.as_bytes()) % 10_000) as u32
}

impl Policy {
    pub fn load(path: &std::path::Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Policy::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let file: PolicyFile = toml::from_str(text)?;
        let mut rules = Vec::new();
        for (i, r) in file.legacy.rules.iter().enumerate() {
            let field = |f: &str| format!("legacy.rules[{i}].{f}");
            if r.name.trim().is_empty() {
                return Err(invalid(field("name"), None, "every rule needs a name"));
            }
            let given = [
                r.user_agent.is_some(),
                r.missing_feature.is_some(),
                r.users.is_some(),
            ]
            .iter()
            .filter(|x| **x)
            .count();
            if given != 1 {
                return Err(invalid(
                    format!("legacy.rules[{i}]"),
                    None,
                    format!(
                        "rule {:?} must have exactly one of user_agent, missing_feature, users",
                        r.name
                    ),
                ));
            }
            let matcher = if let Some(ua) = &r.user_agent {
                let re = Regex::new(ua.get_ref()).map_err(|e| {
                    invalid(field("user_agent"), line_of(text, ua.span()), e.to_string())
                })?;
                Matcher::UserAgent(re)
            } else if let Some(f) = &r.missing_feature {
                if f.trim().is_empty() {
                    return Err(invalid(field("missing_feature"), None, "empty feature tag"));
                }
                Matcher::MissingFeature(f.trim().to_ascii_lowercase())
            } else {
                let users = r.users.as_deref().unwrap_or_default();
                let patterns: Option<Vec<_>> = users.iter().map(|u| user_pattern(u)).collect();
                Matcher::Users(patterns.ok_or_else(|| {
                    invalid(
                        field("users"),
                        None,
                        "entries must be user@host addresses or domains",
                    )
                })?)
            };
            rules.push(Rule {
                name: r.name.clone(),
                verdict: r.verdict,
                matcher,
            });
        }
        let percent = *file.rollout.percent.get_ref();
        if !(0.0..=100.0).contains(&percent) || percent.is_nan() {
            return Err(invalid(
                "rollout.percent",
                line_of(text, file.rollout.percent.span()),
                "must be between 0 and 100",
            ));
        }
        let canary: Option<Vec<_>> = file
            .rollout
            .canary
            .iter()
            .map(|u| user_pattern(u))
            .collect();
        let canary = canary.ok_or_else(|| {
            invalid(
                "rollout.canary",
                None,
                "entries must be user@host addresses or domains",
            )
        })?;
        let mut domains = BTreeMap::new();
        for (name, d) in &file.domains {
            let field = |f: &str| format!("domains.{name}.{f}");
            let uri = d.factory_uri.get_ref();
            let parsed = escalator_sip::SipUri::parse(uri)
                .filter(|u| u.user.is_some() && u.headers.is_empty());
            if parsed.is_none() {
                return Err(invalid(
                    field("factory_uri"),
                    line_of(text, d.factory_uri.span()),
                    format!("{uri:?} is not a sip: or sips: URI with a user part and no headers"),
                ));
            }
            if d.max_group_size < 3 {
                return Err(invalid(
                    field("max_group_size"),
                    None,
                    "an ad-hoc group has at least 3 members (the user, the peer and one invitee)",
                ));
            }
            domains.insert(
                name.to_ascii_lowercase(),
                Domain {
                    factory_uri: uri.clone(),
                    max_group_size: d.max_group_size,
                    media: d.media,
                    notify_user: d.notify_user,
                },
            );
        }
        if let Some(c) = &file.triggers.custom {
            let token_ok = !c.method.is_empty()
                && c.method
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b == b'-');
            if !token_ok {
                return Err(invalid(
                    "triggers.custom.method",
                    None,
                    "must be an upper-case SIP method name",
                ));
            }
            if matches!(
                c.method.as_str(),
                "INVITE" | "ACK" | "CANCEL" | "BYE" | "REFER"
            ) {
                return Err(invalid(
                    "triggers.custom.method",
                    None,
                    format!("{} cannot be a custom trigger", c.method),
                ));
            }
            if !c.content_type.contains('/') {
                return Err(invalid(
                    "triggers.custom.content_type",
                    None,
                    "must be a media type",
                ));
            }
        }
        Ok(Policy {
            version: file.version,
            hash: fnv1a(text.as_bytes()),
            shadow: file.shadow,
            default_verdict: file.legacy.default,
            rules,
            rollout_basis_points: (percent * 100.0).round() as u32,
            canary,
            triggers: Triggers {
                refer: file.triggers.refer,
                multi_refer: file.triggers.multi_refer,
                outside_dialog: file.triggers.outside_dialog,
                custom: file.triggers.custom,
            },
            domains,
        })
    }
}

/// What is known about the client when it asks to add users.
#[derive(Debug, Clone, Default)]
pub struct Subject {
    /// The client's address (its From in the 1-to-1 session).
    pub user: String,
    pub user_agent: Option<String>,
    /// Option tags of its Supported header.
    pub supported: Vec<String>,
    /// Feature tags of its Contact (`+g.oma.sip-im`, ...).
    pub contact_features: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Escalate, with the user's home-domain settings.
    Escalate(Domain),
    /// The client is not legacy: pass through.
    Capable,
    /// Legacy, but outside the rollout share and not a canary.
    NotInRollout,
    /// Legacy and in the rollout, but no settings for the user's domain.
    UnknownDomain(String),
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Escalate(_) => "escalate",
            Outcome::Capable => "capable",
            Outcome::NotInRollout => "not-in-rollout",
            Outcome::UnknownDomain(_) => "unknown-domain",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub outcome: Outcome,
    /// The legacy rule that matched, or `default`.
    pub rule: String,
    pub bucket: u32,
    pub canary: bool,
    /// Shadow mode: decide and log, change nothing.
    pub shadow: bool,
}

fn matches_user(patterns: &[UserPattern], user: &str) -> bool {
    let Some(addr) = normalize_user(user) else {
        return false;
    };
    let domain = addr.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
    patterns.iter().any(|p| match p {
        UserPattern::Address(a) => *a == addr,
        UserPattern::Domain(d) => d == domain,
    })
}

impl Policy {
    pub fn decide(&self, s: &Subject) -> Decision {
        let has_feature = |f: &str| {
            s.supported.iter().any(|t| t.eq_ignore_ascii_case(f))
                || s.contact_features.iter().any(|t| t.eq_ignore_ascii_case(f))
        };
        let (verdict, rule) = self
            .rules
            .iter()
            .find(|r| match &r.matcher {
                Matcher::UserAgent(re) => s.user_agent.as_deref().is_some_and(|ua| re.is_match(ua)),
                Matcher::MissingFeature(f) => !has_feature(f),
                Matcher::Users(list) => matches_user(list, &s.user),
            })
            .map(|r| (r.verdict, r.name.clone()))
            .unwrap_or((self.default_verdict, "default".into()));
        let bucket = bucket(&s.user);
        let canary = matches_user(&self.canary, &s.user);
        let outcome = if verdict == Verdict::Capable {
            Outcome::Capable
        } else if !canary && bucket >= self.rollout_basis_points {
            Outcome::NotInRollout
        } else {
            let domain = normalize_user(&s.user)
                .and_then(|a| a.rsplit_once('@').map(|(_, d)| d.to_string()))
                .unwrap_or_default();
            match self.domains.get(&domain) {
                Some(d) => Outcome::Escalate(d.clone()),
                None => Outcome::UnknownDomain(domain),
            }
        };
        Decision {
            outcome,
            rule,
            bucket,
            canary,
            shadow: self.shadow,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
version = "t1"

[legacy]
default = "capable"

[[legacy.rules]]
name = "vip-opt-out"
verdict = "capable"
users = ["sip:ceo@example.com", "partner.example"]

[[legacy.rules]]
name = "old-ua"
verdict = "legacy"
user_agent = "^OldClient/1\\."

[[legacy.rules]]
name = "no-replaces"
verdict = "legacy"
missing_feature = "replaces"

[rollout]
percent = 100
canary = ["sip:tester@example.com"]

[domains."example.com"]
factory_uri = "sip:conf-factory@ims.example.com"
max_group_size = 5
"#;

    fn subject(user: &str, ua: &str, supported: &[&str]) -> Subject {
        Subject {
            user: user.into(),
            user_agent: Some(ua.into()),
            supported: supported.iter().map(|s| s.to_string()).collect(),
            contact_features: vec![],
        }
    }

    #[test]
    fn first_matching_rule_wins_and_is_recorded() {
        let p = Policy::parse(POLICY).unwrap();
        let d = p.decide(&subject("sip:ceo@example.com", "OldClient/1.0", &[]));
        assert_eq!(
            (d.outcome.label(), d.rule.as_str()),
            ("capable", "vip-opt-out")
        );
        let d = p.decide(&subject(
            "sip:alice@example.com",
            "OldClient/1.2",
            &["replaces"],
        ));
        assert_eq!((d.outcome.label(), d.rule.as_str()), ("escalate", "old-ua"));
        let d = p.decide(&subject(
            "sip:alice@example.com",
            "NewClient/5",
            &["100rel"],
        ));
        assert_eq!(
            (d.outcome.label(), d.rule.as_str()),
            ("escalate", "no-replaces")
        );
        let d = p.decide(&subject(
            "sip:alice@example.com",
            "NewClient/5",
            &["replaces"],
        ));
        assert_eq!((d.outcome.label(), d.rule.as_str()), ("capable", "default"));
        let d = p.decide(&subject("sip:bob@elsewhere.net", "OldClient/1.0", &[]));
        assert_eq!(d.outcome, Outcome::UnknownDomain("elsewhere.net".into()));
        let d = p.decide(&subject("sip:x@partner.example", "OldClient/1.0", &[]));
        assert_eq!(
            d.rule, "vip-opt-out",
            "domain entries match every user of the domain"
        );
    }

    #[test]
    fn rollout_share_and_canaries() {
        let p = Policy::parse(&POLICY.replace("percent = 100", "percent = 0")).unwrap();
        let d = p.decide(&subject("sip:alice@example.com", "OldClient/1.0", &[]));
        assert_eq!(d.outcome, Outcome::NotInRollout);
        let d = p.decide(&subject("sip:Tester@Example.com", "OldClient/1.0", &[]));
        assert!(d.canary);
        assert_eq!(d.outcome.label(), "escalate", "canaries are always in");
    }

    #[test]
    fn buckets_are_stable_and_normalised() {
        // Fixed values: a change here moves users between buckets on upgrade.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(
            bucket("sip:Alice@Example.com;transport=tcp"),
            bucket("alice@example.com")
        );
        assert_eq!(
            bucket("<sip:alice@example.com>"),
            bucket("sips:alice@example.com")
        );
    }

    #[test]
    fn share_in_rollout_is_within_one_point_over_100k_users() {
        for percent in [1.0f64, 5.0, 33.3, 50.0, 95.0] {
            let points = (percent * 100.0).round() as u32;
            let inside = (0..100_000)
                .filter(|i| bucket(&format!("sip:user{i}@operator{}.example", i % 7)) < points)
                .count();
            let share = inside as f64 / 1000.0;
            assert!((share - percent).abs() <= 1.0, "{percent}% gave {share}%");
        }
    }

    fn err(text: &str) -> String {
        Policy::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn invalid_files_name_the_field_and_line() {
        let e = err("[rollout]\npercent = 150\n");
        assert!(e.contains("rollout.percent") && e.contains("line 2"), "{e}");
        let e = err("[[legacy.rules]]\nname = \"x\"\nverdict = \"legacy\"\nuser_agent = \"(\"\n");
        assert!(
            e.contains("legacy.rules[0].user_agent") && e.contains("line 4"),
            "{e}"
        );
        let e = err("[domains.\"a.example\"]\nfactory_uri = \"http://x\"\n");
        assert!(
            e.contains("domains.a.example.factory_uri") && e.contains("line 2"),
            "{e}"
        );
        let e = err("[legacy]\nverdikt = 1\n");
        assert!(e.contains("verdikt") && e.contains("line 2"), "{e}");
        let e = err("[[legacy.rules]]\nname = \"two\"\nverdict = \"legacy\"\nuser_agent = \"a\"\nmissing_feature = \"b\"\n");
        assert!(e.contains("exactly one of"), "{e}");
        let e =
            err("[domains.\"a.example\"]\nfactory_uri = \"sip:f@a.example\"\nmax_group_size = 2\n");
        assert!(e.contains("max_group_size"), "{e}");
        let e = err("[triggers.custom]\nmethod = \"BYE\"\ncontent_type = \"text/plain\"\nformat = \"lines\"\n");
        assert!(e.contains("triggers.custom.method"), "{e}");
    }

    #[test]
    fn defaults_of_an_empty_file() {
        let p = Policy::parse("").unwrap();
        assert_eq!(p.default_verdict, Verdict::Capable);
        assert_eq!(p.rollout_basis_points, 10_000);
        assert!(p.triggers.refer && p.triggers.multi_refer);
        assert_eq!(p.triggers.outside_dialog, OutsideDialog::Reject);
        assert!(!p.shadow);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn bucket_is_a_pure_function_of_the_normalised_address(
            user in "[a-z0-9._-]{1,20}",
            host in "[a-z0-9-]{1,15}\\.[a-z]{2,5}",
        ) {
            let a = bucket(&format!("sip:{user}@{host}"));
            prop_assert_eq!(a, bucket(&format!("<sip:{}@{};user=phone>", user.to_uppercase(), host.to_uppercase())));
            prop_assert!(a < 10_000);
        }

        #[test]
        fn rule_order_decides(ua in "[A-Za-z]{1,10}/[0-9]") {
            let p = Policy::parse(&format!(
                "[[legacy.rules]]\nname = \"first\"\nverdict = \"capable\"\nuser_agent = \"^{ua}$\"\n\
                 [[legacy.rules]]\nname = \"second\"\nverdict = \"legacy\"\nuser_agent = \".*\"\n"
            )).unwrap();
            let d = p.decide(&Subject { user: "sip:a@b.example".into(), user_agent: Some(ua.clone()), ..Default::default() });
            prop_assert_eq!(d.rule, "first");
        }
    }
}

#[cfg(test)]
mod shipped_files {
    use super::*;

    fn load(name: &str, text: &str) -> Policy {
        Policy::parse(text).unwrap_or_else(|e| panic!("policies/{name}: {e}"))
    }

    fn alice(ua: &str) -> Subject {
        Subject {
            user: "sip:alice@example.com".into(),
            user_agent: Some(ua.into()),
            supported: vec!["replaces".into()],
            contact_features: vec![],
        }
    }

    #[test]
    fn default_policy() {
        let p = load(
            "default.toml",
            include_str!("../../../policies/default.toml"),
        );
        assert_eq!(p.decide(&alice("OldIM/1.4")).outcome.label(), "escalate");
        assert_eq!(p.decide(&alice("ModernIM/9")).outcome.label(), "capable");
        let mut no_replaces = alice("ModernIM/9");
        no_replaces.supported.clear();
        assert_eq!(p.decide(&no_replaces).rule, "no-replaces-support");
    }

    #[test]
    fn staged_rollout_policy() {
        let p = load(
            "staged-5-percent.toml",
            include_str!("../../../policies/staged-5-percent.toml"),
        );
        assert_eq!(p.rollout_basis_points, 500);
        let mut tester = alice("OldIM/1.0");
        tester.user = "sip:tester1@example.com".into();
        assert_eq!(p.decide(&tester).outcome.label(), "escalate");
        let inside = (0..10_000)
            .filter(|i| {
                let mut s = alice("OldIM/1.0");
                s.user = format!("sip:user{i}@example.com");
                p.decide(&s).outcome.label() == "escalate"
            })
            .count();
        assert!(
            (400..=600).contains(&inside),
            "{inside} of 10000 in a 5 % rollout"
        );
    }

    #[test]
    fn shadow_trial_policy() {
        let p = load(
            "shadow-trial.toml",
            include_str!("../../../policies/shadow-trial.toml"),
        );
        let d = p.decide(&alice("OldIM/7"));
        assert!(d.shadow);
        assert_eq!(d.outcome.label(), "escalate");
    }

    #[test]
    fn two_domains_policy() {
        let p = load(
            "two-domains.toml",
            include_str!("../../../policies/two-domains.toml"),
        );
        assert_eq!(p.domains.len(), 2);
        assert_eq!(p.domains["mvno.example"].media, MediaMode::ReuseOffer);
        assert!(p.triggers.custom.is_some());
        let mut ceo = alice("OldIM/1");
        ceo.user = "sip:ceo@operator.example".into();
        assert_eq!(p.decide(&ceo).rule, "vip-opt-out");
        let mut qa = alice("OldIM/1");
        qa.user = "sip:qa@operator.example".into();
        match p.decide(&qa).outcome {
            Outcome::Escalate(d) => {
                assert_eq!(d.factory_uri, "sip:conference-factory@ims.operator.example")
            }
            o => panic!("{o:?}"),
        }
    }
}
