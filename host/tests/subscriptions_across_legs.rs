//! Subscriptions relayed across the host keep their ids (RFC 3515 §2.4.6,
//! RFC 6665). alice's REFER is CSeq 11 in her dialog (a UA may skip CSeq
//! numbers) and CSeq 2 on the host's leg toward the core, so the core's
//! NOTIFYs say `id=2` and alice must see `id=11`. NOTIFYs for no subscription the host relayed get 481
//! from the host and go nowhere.

mod support;
use escalator_host::sip::SipMessage;
use support::*;

/// alice's call, confirmed, then her REFER relayed and accepted; returns
/// alice, the core's INVITE (for in-dialog requests from the core) and the
/// REFER as the core received it.
fn referred(rig: &mut Rig, refer_sub: Option<&str>) -> (Alice, SipMessage, SipMessage) {
    let (mut alice, at_core) = established_call(rig, "subs");
    alice.cseq = 10;
    let mut refer = alice.request("REFER", "ref1");
    refer.push_header("Refer-To", "<sip:carol@example.com>");
    if let Some(v) = refer_sub {
        refer.push_header("Refer-Sub", v);
    }
    rig.alice_sends(&refer);
    let relayed = one(&rig.sent(), "REFER to the core", |s| s.is_request("REFER"));
    assert_eq!(refer.cseq().map(|c| c.0), Some(11), "alice's REFER");
    assert_eq!(
        relayed.cseq().map(|c| c.0),
        Some(2),
        "the host's own numbering"
    );
    (alice, at_core, relayed)
}

fn notify(at_core: &SipMessage, cseq: u32, event: &str, state: &str) -> SipMessage {
    let mut n = core_request(at_core, "c1", "NOTIFY", cseq);
    n.push_header("Event", event);
    n.push_header("Subscription-State", state);
    n
}

#[tokio::test(start_paused = true)]
async fn a_notify_reaches_the_subscriber_with_its_own_id() {
    let mut rig = Rig::new();
    let (_, at_core, relayed) = referred(&mut rig, None);
    rig.core_sends(&reply(&relayed, 202, "c1", CORE));
    rig.sent();
    for (cseq, event) in [(1, "refer;id=2"), (2, "refer")] {
        rig.core_sends(&notify(&at_core, cseq, event, "active;expires=60"));
        let n = one(&rig.sent(), "NOTIFY to alice", |s| s.is_request("NOTIFY"));
        assert_eq!(
            n.header("Event"),
            Some("refer;id=11"),
            "{event}: alice's REFER was CSeq 11"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_notify_for_an_unknown_or_ended_subscription_gets_481() {
    let mut rig = Rig::new();
    let (_, at_core, relayed) = referred(&mut rig, None);
    rig.core_sends(&reply(&relayed, 202, "c1", CORE));
    rig.sent();
    rig.core_sends(&notify(&at_core, 1, "refer;id=9", "active"));
    assert_eq!(
        lines(&rig.sent()),
        ["481/NOTIFY→core"],
        "no such subscription"
    );
    rig.core_sends(&notify(
        &at_core,
        2,
        "refer;id=2",
        "terminated;reason=noresource",
    ));
    assert_eq!(
        lines(&rig.sent()),
        ["NOTIFY→alice"],
        "the last one goes through"
    );
    rig.core_sends(&notify(&at_core, 3, "refer;id=2", "active"));
    assert_eq!(lines(&rig.sent()), ["481/NOTIFY→core"], "it ended");
}

#[tokio::test(start_paused = true)]
async fn a_refused_refer_or_refer_sub_false_leaves_no_subscription() {
    let mut rig = Rig::new();
    let (_, at_core, relayed) = referred(&mut rig, None);
    rig.core_sends(&reply(&relayed, 403, "c1", CORE));
    assert_eq!(
        lines(&rig.sent()),
        ["ACK→core", "403/REFER→alice"]
            .map(String::from)
            .iter()
            .filter(|l| l.as_str() != "ACK→core")
            .cloned()
            .collect::<Vec<_>>()
    );
    rig.core_sends(&notify(&at_core, 1, "refer;id=2", "active"));
    assert_eq!(lines(&rig.sent()), ["481/NOTIFY→core"]);

    let mut rig = Rig::new();
    let (_, at_core, relayed) = referred(&mut rig, Some("false"));
    assert_eq!(relayed.header("Refer-Sub"), Some("false"), "passed on");
    let mut ok = reply(&relayed, 200, "c1", CORE);
    ok.push_header("Refer-Sub", "false");
    rig.core_sends(&ok);
    rig.sent();
    rig.core_sends(&notify(&at_core, 1, "refer;id=2", "active"));
    assert_eq!(lines(&rig.sent()), ["481/NOTIFY→core"], "Refer-Sub: false");
}
