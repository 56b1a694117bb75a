//! `escalator check-policy`: validate a policy file and show the decision
//! for sample users, so a rollout can be tested before it is deployed.

use escalator_escalation::policy::{bucket, Outcome, Policy, Subject};

/// What the operator asks about.
pub struct Sample {
    pub users: Vec<String>,
    pub user_agent: Option<String>,
    pub supported: Vec<String>,
}

/// The report, or the validation error (naming the field and line).
pub fn report(path: &str, text: &str, sample: &Sample) -> Result<String, String> {
    let p = Policy::parse(text).map_err(|e| format!("{path}: {e}"))?;
    let mut out = format!(
        "{path}: valid (version {:?}, hash {:016x})\n  shadow: {}; rollout: {:.2} % of legacy users, {} canary entries; {} legacy rules; default verdict: {}\n",
        p.version,
        p.hash,
        if p.shadow { "yes (log only)" } else { "no" },
        p.rollout_basis_points as f64 / 100.0,
        p.canary.len(),
        p.rules.len(),
        p.default_verdict,
    );
    for (name, d) in &p.domains {
        out.push_str(&format!(
            "  domain {name}: factory {}, max group {}, media {}, notify user {}\n",
            d.factory_uri, d.max_group_size, d.media, d.notify_user
        ));
    }
    for user in &sample.users {
        let s = Subject {
            user: user.clone(),
            user_agent: sample.user_agent.clone(),
            supported: sample.supported.clone(),
            contact_features: vec![],
        };
        let d = p.decide(&s);
        let what = match &d.outcome {
            Outcome::Escalate(dom) => format!(
                "ESCALATE via {} (max group {})",
                dom.factory_uri, dom.max_group_size
            ),
            Outcome::Capable => "pass through (not legacy)".into(),
            Outcome::NotInRollout => "pass through (legacy, not in the rollout)".into(),
            Outcome::UnknownDomain(dom) => {
                format!("pass through (legacy, no settings for domain {dom})")
            }
        };
        out.push_str(&format!(
            "{user} [user-agent {:?}]: {what}; rule {}, bucket {} of 10000{}{}\n",
            sample.user_agent.as_deref().unwrap_or("-"),
            d.rule,
            bucket(user),
            if d.canary { ", canary" } else { "" },
            if d.shadow {
                ", shadow: nothing would change on the wire"
            } else {
                ""
            },
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_shows_validation_and_decisions() {
        let text = include_str!("../../policies/staged-5-percent.toml");
        let r = report(
            "staged.toml",
            text,
            &Sample {
                users: vec![
                    "sip:tester1@example.com".into(),
                    "sip:nobody@elsewhere.example".into(),
                ],
                user_agent: Some("OldIM/1.0".into()),
                supported: vec![],
            },
        )
        .unwrap();
        assert!(r.contains("valid (version \"stage-1-5pct\""), "{r}");
        assert!(r.contains("rollout: 5.00 %"), "{r}");
        assert!(r.contains("sip:tester1@example.com [user-agent \"OldIM/1.0\"]: ESCALATE via sip:conference-factory@ims.example.com"), "{r}");
        assert!(r.contains("canary"), "{r}");
        assert!(r.contains("sip:nobody@elsewhere.example"), "{r}");
        let e = report(
            "bad.toml",
            "[rollout]\npercent = 101\n",
            &Sample {
                users: vec![],
                user_agent: None,
                supported: vec![],
            },
        )
        .unwrap_err();
        assert!(
            e.contains("bad.toml") && e.contains("rollout.percent") && e.contains("line 2"),
            "{e}"
        );
    }
}
