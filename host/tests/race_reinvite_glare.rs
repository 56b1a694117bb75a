//! Two INVITEs on one dialog at once (RFC 3261 §14).
//!
//! Glare: alice re-INVITEs, the host relays it toward the core, and before
//! the core answers it the core re-INVITEs too on the same dialog. The
//! host's own re-INVITE on that leg is pending, so the core's gets 491 and
//! retries later; alice's goes on. Wire order: alice → host re-INVITE;
//! host → core re-INVITE; core → host re-INVITE; host → core 491; core →
//! host 200 (to the first); host → alice 200.
//!
//! Overlap: alice sends a second re-INVITE before her first is answered:
//! 500 with a Retry-After of 0–10 s (§14.2), nothing relayed.

mod support;
use support::*;

#[tokio::test(start_paused = true)]
async fn a_re_invite_crossing_the_hosts_own_gets_491() {
    let mut rig = Rig::new();
    let (mut alice, at_core) = established_call(&mut rig, "glare");
    rig.alice_sends(&alice.request("INVITE", "re1"));
    let relayed = one(&rig.sent(), "re-INVITE to the core", |s| {
        s.is_request("INVITE")
    });

    rig.core_sends(&core_request(&at_core, "c1", "INVITE", 1));
    assert_eq!(
        lines(&rig.sent()),
        ["100/INVITE→core", "491/INVITE→core"],
        "the core's re-INVITE crossed the host's: glare"
    );

    rig.core_sends(&reply(&relayed, 200, "c1", CORE));
    assert_eq!(lines(&rig.sent()), ["200/INVITE→alice"], "alice's goes on");
    assert_eq!(rig.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_second_re_invite_before_the_first_is_answered_gets_500_with_retry_after() {
    let mut rig = Rig::new();
    let (mut alice, _) = established_call(&mut rig, "glare");
    rig.alice_sends(&alice.request("INVITE", "re1"));
    assert_eq!(lines(&rig.sent()), ["100/INVITE→alice", "INVITE→core"]);
    rig.alice_sends(&alice.request("INVITE", "re2"));
    let sent = rig.sent();
    assert_eq!(lines(&sent), ["100/INVITE→alice", "500/INVITE→alice"]);
    let after: u32 = sent[1]
        .msg
        .header("Retry-After")
        .and_then(|v| v.trim().parse().ok())
        .expect("a Retry-After in seconds");
    assert!(after <= 10, "{after}");
}

/// The host's re-INVITE on a leg timed out (no answer for 64×T1): the
/// leg has no INVITE pending any more, so a later re-INVITE from the core
/// is relayed, not answered 491.
#[tokio::test(start_paused = true)]
async fn after_the_hosts_re_invite_timed_out_a_new_one_is_no_glare() {
    let mut rig = Rig::new();
    let (mut alice, at_core) = established_call(&mut rig, "glare3");
    rig.alice_sends(&alice.request("INVITE", "re1"));
    rig.sent();
    rig.run_for(std::time::Duration::from_secs(40)).await;
    let sent = rig.sent();
    assert!(
        lines(&sent).contains(&"408/INVITE→alice".to_string()),
        "{:?}",
        lines(&sent)
    );
    rig.core_sends(&core_request(&at_core, "c1", "INVITE", 1));
    let sent = lines(&rig.sent());
    assert!(sent.contains(&"INVITE→alice".to_string()), "{sent:?}");
    assert!(!sent.iter().any(|l| l.starts_with("491")), "{sent:?}");
}
