//! bytes -> `SipMessage::parse` -> the escalation plugin's public trigger
//! reading: `trigger::recognise(msg, triggers)` (REFER, multi-target REFER,
//! custom add-user request) under a policy picked by the first input byte,
//! `trigger::clean_target` on every Refer-To value, and `multipart::split`
//! on the body. Must not panic. A recognised trigger must carry 1..=100
//! distinct targets, each already clean (no whitespace or control byte,
//! `clean_target` maps it to itself, no `?headers`, no `method=`), each reading back as itself from the
//! `Refer-To: <target>` that addition.rs sends the conference, and the
//! resource list the conference INVITE is built with
//! (`resource_list::build`) must read back as those targets.
#![no_main]

use escalator_escalation::multipart;
use escalator_escalation::policy::{
    default_added_message, default_failed_message, BodyFormat, CustomTrigger, OutsideDialog,
    Triggers,
};
use escalator_escalation::resource_list;
use escalator_escalation::trigger::{self, MAX_TARGETS};
use escalator_sip::message::{ParseLimits, SipMessage};
use escalator_sip::{NameAddr, SipUri};
use libfuzzer_sys::fuzz_target;

fn triggers(b: u8) -> Triggers {
    let custom = match (b >> 2) & 3 {
        0 => None,
        n => Some(CustomTrigger {
            method: if n == 3 { "ADDUSER" } else { "INFO" }.into(),
            content_type: if n == 1 {
                "application/vnd.example.add-user".into()
            } else {
                resource_list::CONTENT_TYPE.into()
            },
            format: if n == 1 { BodyFormat::Lines } else { BodyFormat::ResourceList },
            added_message: default_added_message(),
            failed_message: default_failed_message(),
        }),
    };
    Triggers {
        refer: b & 1 == 0,
        multi_refer: b & 2 == 0,
        outside_dialog: OutsideDialog::Reject,
        custom,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&b, raw)) = data.split_first() else {
        return;
    };
    let Ok(msg) = SipMessage::parse(raw, ParseLimits::default()) else {
        return;
    };
    for v in msg.header_values("Refer-To") {
        let _ = trigger::clean_target(v);
    }
    if let Some(ct) = msg.content_type() {
        let _ = multipart::split(&msg.body, ct);
    }
    let Ok(Some(t)) = trigger::recognise(&msg, &triggers(b)) else {
        return;
    };
    assert!(!t.targets.is_empty(), "trigger without targets");
    assert!(t.targets.len() <= MAX_TARGETS, "{} targets", t.targets.len());
    for (i, target) in t.targets.iter().enumerate() {
        assert!(
            !t.targets[..i].iter().any(|o| o.eq_ignore_ascii_case(target)),
            "duplicate target {target:?}"
        );
        // Targets become header values (Refer-To) and message text.
        assert!(
            !target.bytes().any(|b| b <= b' ' || b == 0x7f),
            "whitespace or control byte in a cleaned target: {target:?}"
        );
        // addition.rs adds each target to the conference as `Refer-To: <target>`.
        let refer_to = format!("<{target}>");
        let na = NameAddr::parse(&refer_to).expect("Refer-To <target> does not parse");
        assert!(
            na.uri == *target && na.params.is_empty(),
            "Refer-To {refer_to:?} reads back as {na:?}, not the target"
        );
        assert_eq!(
            trigger::clean_target(target).as_ref(),
            Ok(target),
            "a cleaned target is not clean"
        );
        let uri = SipUri::parse(target).expect("cleaned target does not parse as a SIP URI");
        assert!(uri.headers.is_empty(), "headers survive cleaning: {target:?}");
        assert!(uri.param("method").is_none(), "method= survives cleaning: {target:?}");
    }
    let xml = resource_list::build(&t.targets);
    assert_eq!(
        resource_list::parse(xml.as_bytes(), MAX_TARGETS).as_ref(),
        Ok(&t.targets),
        "the conference INVITE's list does not read back as the targets: {xml:?}"
    );
});
