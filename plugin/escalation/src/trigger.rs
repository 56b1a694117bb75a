//! Recognising an "add users" request: an in-dialog REFER with one Refer-To
//! (RFC 3515), a REFER with several targets (RFC 5368), or the operator's
//! custom request. Target URIs lose any embedded headers (`?Replaces=`,
//! `?Require=`...) before use: a client must not smuggle headers into the
//! conference INVITE.

use crate::multipart;
use crate::policy::{BodyFormat, Triggers};
use crate::resource_list;
use escalator_sip::{NameAddr, SipMessage, SipUri};
use thiserror::Error;

/// Upper bound on targets read from one request (the group size check comes later).
pub const MAX_TARGETS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerKind {
    Refer,
    MultiRefer,
    Custom,
}

impl TriggerKind {
    pub fn label(self) -> &'static str {
        match self {
            TriggerKind::Refer => "refer",
            TriggerKind::MultiRefer => "multi-refer",
            TriggerKind::Custom => "custom",
        }
    }

    pub fn is_refer(self) -> bool {
        self != TriggerKind::Custom
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    pub kind: TriggerKind,
    /// Cleaned target URIs, duplicates removed, in request order.
    pub targets: Vec<String>,
    /// False when the REFER carried `Refer-Sub: false` (RFC 4488): no NOTIFYs.
    pub subscription: bool,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TriggerError {
    /// The request form is switched off by policy: pass it through.
    #[error("{0} triggers are disabled by policy")]
    Disabled(&'static str),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    UnsupportedScheme(String),
    #[error("the REFER asks for {0}, not an invitation")]
    NotAnInvitation(String),
    #[error("multiple-refer is required for a list of targets")]
    ExtensionRequired,
}

impl TriggerError {
    /// The SIP status that refuses the request.
    pub fn status(&self) -> u16 {
        match self {
            TriggerError::Disabled(_) => 0,
            TriggerError::BadRequest(_) | TriggerError::NotAnInvitation(_) => 400,
            TriggerError::UnsupportedScheme(_) => 416,
            TriggerError::ExtensionRequired => 421,
        }
    }
}

fn bad(msg: impl Into<String>) -> TriggerError {
    TriggerError::BadRequest(msg.into())
}

/// A target URI as a clean `sip:`/`sips:` URI without embedded headers.
pub fn clean_target(raw: &str) -> Result<String, TriggerError> {
    let raw = raw.trim();
    let uri_text = match NameAddr::parse(raw) {
        Some(na) if raw.contains('<') => na.uri,
        None if raw.contains('<') => return Err(bad(format!("malformed target {raw:?}"))),
        _ => raw.to_string(),
    };
    let scheme = uri_text
        .split(':')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if scheme != "sip" && scheme != "sips" {
        return Err(TriggerError::UnsupportedScheme(format!(
            "unsupported URI scheme in target {uri_text:?}"
        )));
    }
    let uri = SipUri::parse(&uri_text)
        .ok_or_else(|| bad(format!("malformed target URI {uri_text:?}")))?;
    if uri.user.as_deref().is_none_or(str::is_empty) {
        return Err(bad(format!("target {uri_text:?} names no user")));
    }
    if let Some(Some(m)) = uri.param("method") {
        if !m.eq_ignore_ascii_case("INVITE") {
            return Err(TriggerError::NotAnInvitation(m.to_ascii_uppercase()));
        }
    }
    let mut clean = uri.without_headers();
    clean
        .params
        .retain(|(k, _)| !k.eq_ignore_ascii_case("method"));
    Ok(clean.to_string())
}

fn dedup(targets: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in targets {
        if !out.iter().any(|o| o.eq_ignore_ascii_case(&t)) {
            out.push(t);
        }
    }
    out
}

fn media_type(ct: &str) -> String {
    ct.split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// `Some(trigger)` for an add-users request, `None` for anything else.
pub fn recognise(msg: &SipMessage, triggers: &Triggers) -> Result<Option<Trigger>, TriggerError> {
    let Some(method) = msg.method() else {
        return Ok(None);
    };
    if method == "REFER" {
        return refer(msg, triggers).map(Some);
    }
    match &triggers.custom {
        Some(c) if c.method == method => {
            let ct = msg.content_type().map(media_type).unwrap_or_default();
            if ct != media_type(&c.content_type) {
                return Ok(None);
            }
            let uris = match c.format {
                BodyFormat::Lines => {
                    let text =
                        std::str::from_utf8(&msg.body).map_err(|_| bad("body is not UTF-8"))?;
                    let lines: Vec<String> = text
                        .lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(str::to_string)
                        .collect();
                    if lines.len() > MAX_TARGETS {
                        return Err(bad(format!("more than {MAX_TARGETS} targets")));
                    }
                    lines
                }
                BodyFormat::ResourceList => resource_list::parse(&msg.body, MAX_TARGETS)
                    .map_err(|e| bad(format!("resource list: {e}")))?,
            };
            finish(TriggerKind::Custom, uris, true).map(Some)
        }
        _ => Ok(None),
    }
}

fn refer(msg: &SipMessage, triggers: &Triggers) -> Result<Trigger, TriggerError> {
    let refer_to = msg.header_values("Refer-To");
    let value = match refer_to.as_slice() {
        [one] => *one,
        [] => return Err(bad("REFER without Refer-To")),
        _ => return Err(bad("more than one Refer-To")),
    };
    let subscription = !msg
        .header("Refer-Sub")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("false"));
    let target = NameAddr::parse(value).ok_or_else(|| bad("malformed Refer-To"))?;
    if let Some(cid) = target.uri.strip_prefix("cid:") {
        if !triggers.multi_refer {
            return Err(TriggerError::Disabled("multi-refer"));
        }
        let required = msg
            .header_values("Require")
            .iter()
            .any(|t| t.eq_ignore_ascii_case("multiple-refer"));
        if !required {
            return Err(TriggerError::ExtensionRequired);
        }
        let uris = list_body(msg, cid)?;
        return finish(TriggerKind::MultiRefer, uris, subscription);
    }
    if !triggers.refer {
        return Err(TriggerError::Disabled("refer"));
    }
    // Keep the angle-bracket form so parameters stay with the URI.
    finish(
        TriggerKind::Refer,
        vec![format!("<{}>", target.uri)],
        subscription,
    )
}

/// The resource list a `cid:` Refer-To points at: the body itself, or the
/// part of a multipart body with that Content-ID (RFC 5368).
fn list_body(msg: &SipMessage, cid: &str) -> Result<Vec<String>, TriggerError> {
    let want = cid.trim();
    let matches_cid = |v: Option<&str>| {
        v.map(|v| v.trim().trim_start_matches('<').trim_end_matches('>') == want)
            .unwrap_or(false)
    };
    let ct = msg.content_type().unwrap_or_default();
    let xml = if media_type(ct) == resource_list::CONTENT_TYPE {
        if !matches_cid(msg.header("Content-ID")) {
            return Err(bad(format!("no body with Content-ID {want}")));
        }
        msg.body.to_vec()
    } else if media_type(ct).starts_with("multipart/") {
        let parts =
            multipart::split(&msg.body, ct).map_err(|e| bad(format!("multipart body: {e}")))?;
        parts
            .into_iter()
            .find(|p| matches_cid(p.header("Content-ID")))
            .map(|p| p.body)
            .ok_or_else(|| bad(format!("no body part with Content-ID {want}")))?
    } else {
        return Err(bad("multiple-refer REFER without a resource list"));
    };
    resource_list::parse(&xml, MAX_TARGETS).map_err(|e| bad(format!("resource list: {e}")))
}

fn finish(
    kind: TriggerKind,
    uris: Vec<String>,
    subscription: bool,
) -> Result<Trigger, TriggerError> {
    let cleaned: Result<Vec<_>, _> = uris.iter().map(|u| clean_target(u)).collect();
    let targets = dedup(cleaned?);
    if targets.is_empty() {
        return Err(bad("no target to add"));
    }
    Ok(Trigger {
        kind,
        targets,
        subscription,
    })
}

#[cfg(test)]
mod tests {
    /// Found by `fuzz/` (target `trigger`): targets that would break or
    /// inject into the Refer-To and resource list the plugin builds.
    #[test]
    fn targets_that_would_break_the_headers_built_from_them_are_refused() {
        for raw in [
            "sip:<@e",
            "<sip:@>>",
            "sip:evil>;method=BYE@example.com",
            "sip:a\rInjected: x@example.com",
            "sip:a\r\nInjected:%20x@example.com",
            "sip:caro\u{2}l@example.com",
            "sip:carol@exa\0mple.com",
            "sip:carol@example.SIP/2.1 Max-Focom",
            "sip:@example.com",
        ] {
            assert!(clean_target(raw).is_err(), "{raw:?} accepted");
        }
        assert_eq!(
            clean_target("<sip:carol@example.com;method=INVITE?X=1>")
                .ok()
                .as_deref(),
            Some("sip:carol@example.com")
        );
    }

    use super::*;
    use crate::policy::{CustomTrigger, OutsideDialog};

    fn triggers() -> Triggers {
        Triggers {
            refer: true,
            multi_refer: true,
            outside_dialog: OutsideDialog::Reject,
            custom: Some(CustomTrigger {
                method: "INFO".into(),
                content_type: "application/vnd.example.add-user".into(),
                format: BodyFormat::Lines,
                added_message: crate::policy::default_added_message(),
                failed_message: crate::policy::default_failed_message(),
            }),
        }
    }

    fn msg(s: &str) -> SipMessage {
        SipMessage::parse(s.replace('\n', "\r\n").as_bytes(), Default::default()).unwrap()
    }

    const REFER: &str = "REFER sip:host SIP/2.0\nCall-ID: c\nCSeq: 2 REFER\nFrom: <sip:a@x>;tag=1\nTo: <sip:b@x>;tag=2\n";

    #[test]
    fn single_refer_with_smuggled_headers_cleaned() {
        let m = msg(&format!(
            "{REFER}Refer-To: <sip:carol@example.com;method=INVITE?Replaces=abc%3Bto-tag%3D1&Require=replaces>\nContent-Length: 0\n\n"
        ));
        let t = recognise(&m, &triggers()).unwrap().unwrap();
        assert_eq!(t.kind, TriggerKind::Refer);
        assert_eq!(t.targets, vec!["sip:carol@example.com"]);
        assert!(t.subscription);
    }

    #[test]
    fn refer_sub_false_and_errors() {
        let m = msg(&format!(
            "{REFER}Refer-To: sip:carol@example.com\nRefer-Sub: false\nContent-Length: 0\n\n"
        ));
        assert!(!recognise(&m, &triggers()).unwrap().unwrap().subscription);
        let two = msg(&format!(
            "{REFER}Refer-To: <sip:c@x>\nRefer-To: <sip:d@x>\nContent-Length: 0\n\n"
        ));
        assert_eq!(recognise(&two, &triggers()).unwrap_err().status(), 400);
        let none = msg(&format!("{REFER}Content-Length: 0\n\n"));
        assert_eq!(recognise(&none, &triggers()).unwrap_err().status(), 400);
        let tel = msg(&format!(
            "{REFER}Refer-To: <tel:+331234>\nContent-Length: 0\n\n"
        ));
        assert_eq!(recognise(&tel, &triggers()).unwrap_err().status(), 416);
        let bye = msg(&format!(
            "{REFER}Refer-To: <sip:c@x;method=BYE>\nContent-Length: 0\n\n"
        ));
        assert_eq!(
            recognise(&bye, &triggers()).unwrap_err(),
            TriggerError::NotAnInvitation("BYE".into())
        );
        let mut off = triggers();
        off.refer = false;
        let m = msg(&format!(
            "{REFER}Refer-To: <sip:c@x>\nContent-Length: 0\n\n"
        ));
        assert_eq!(
            recognise(&m, &off).unwrap_err(),
            TriggerError::Disabled("refer")
        );
    }

    fn list(uris: &[&str]) -> String {
        resource_list::build(&uris.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn multi_refer_reads_the_cid_list() {
        let xml = list(&["sip:c@x", "sip:d@x?Replaces=evil", "sip:c@x"]);
        let m = msg(&format!(
            "{REFER}Refer-To: <cid:list1@a.example>\nRequire: multiple-refer\nContent-Type: application/resource-lists+xml\nContent-Disposition: recipient-list\nContent-ID: <list1@a.example>\nContent-Length: {}\n\n{xml}",
            xml.replace('\n', "\r\n").len()
        ));
        let t = recognise(&m, &triggers()).unwrap().unwrap();
        assert_eq!(t.kind, TriggerKind::MultiRefer);
        assert_eq!(
            t.targets,
            vec!["sip:c@x", "sip:d@x"],
            "cleaned and de-duplicated"
        );
        let no_require = msg(&format!(
            "{REFER}Refer-To: <cid:list1@a.example>\nContent-Type: application/resource-lists+xml\nContent-ID: <list1@a.example>\nContent-Length: 0\n\n"
        ));
        assert_eq!(
            recognise(&no_require, &triggers()).unwrap_err().status(),
            421
        );
    }

    #[test]
    fn multi_refer_in_a_multipart_body() {
        let xml = list(&["sip:c@x"]);
        let body = multipart::build(
            &[multipart::Part {
                headers: vec![
                    (
                        "Content-Type".into(),
                        "application/resource-lists+xml".into(),
                    ),
                    ("Content-ID".into(), "<l2@a>".into()),
                ],
                body: xml.into_bytes(),
            }],
            "zz",
        );
        let head = format!(
            "{REFER}Refer-To: <cid:l2@a>\nRequire: multiple-refer\nContent-Type: multipart/mixed;boundary=zz\nContent-Length: {}\n\n",
            body.len()
        )
        .replace('\n', "\r\n");
        let mut raw = head.into_bytes();
        raw.extend_from_slice(&body);
        let m = SipMessage::parse(&raw, Default::default()).unwrap();
        assert_eq!(
            recognise(&m, &triggers()).unwrap().unwrap().targets,
            vec!["sip:c@x"]
        );
    }

    #[test]
    fn custom_request_by_method_and_content_type() {
        let body = "sip:c@x\r\n\r\n<sip:d@x;user=phone>\r\n";
        let m = msg(&format!(
            "INFO sip:h SIP/2.0\nCall-ID: c\nCSeq: 3 INFO\nContent-Type: application/vnd.example.add-user\nContent-Length: {}\n\n{body}",
            body.len()
        ));
        assert_eq!(clean_target("<sip:d@x;user=p").unwrap_err().status(), 400);
        let t = recognise(&m, &triggers()).unwrap().unwrap();
        assert_eq!(t.kind, TriggerKind::Custom);
        assert_eq!(t.targets, vec!["sip:c@x", "sip:d@x;user=phone"]);
        let other = msg("INFO sip:h SIP/2.0\nCall-ID: c\nCSeq: 3 INFO\nContent-Type: application/dtmf-relay\nContent-Length: 0\n\n");
        assert_eq!(
            recognise(&other, &triggers()).unwrap(),
            None,
            "other INFOs are not triggers"
        );
        let message =
            msg("MESSAGE sip:h SIP/2.0\nCall-ID: c\nCSeq: 3 MESSAGE\nContent-Length: 0\n\n");
        assert_eq!(recognise(&message, &triggers()).unwrap(), None);
    }
}
