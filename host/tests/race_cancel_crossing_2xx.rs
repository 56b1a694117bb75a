//! Race: a CANCEL crossing the 2xx it came too late for.
//!
//! Wire order: alice → host INVITE; host → core INVITE; core → host 180;
//! alice → host CANCEL; host → core CANCEL; core → host 200 (INVITE), which
//! crossed the CANCEL, then 200 (CANCEL). The caller gave up, so the host
//! ACKs the 2xx and ends the dialog it made: ACK then BYE toward the core,
//! 487 to alice, and nothing of the core's dialog reaches her.

mod support;
use std::time::Duration;
use support::*;

#[tokio::test(start_paused = true)]
async fn cancel_crossing_a_2xx_is_acked_then_ended_with_bye() {
    let mut rig = Rig::new();
    let mut alice = Alice::new("cancel-2xx");
    let (invite, at_core) = invite_through(&mut rig, &mut alice);

    rig.core_sends(&reply(&at_core, 180, "c1", CORE));
    assert_eq!(lines(&rig.sent()), ["180/INVITE→alice"]);

    rig.alice_sends(&alice.cancel(&invite));
    let sent = rig.sent();
    assert_eq!(
        lines(&sent),
        ["200/CANCEL→alice", "487/INVITE→alice", "CANCEL→core"]
    );
    let cancel = one(&sent, "CANCEL", |s| s.is_request("CANCEL"));
    assert_eq!(cancel.top_via(), at_core.top_via(), "the INVITE's branch");
    let terminated = one(&sent, "487", |s| s.is_response(487, "INVITE"));

    // The 2xx crosses the CANCEL.
    rig.core_sends(&reply(&at_core, 200, "c1", CORE));
    rig.core_sends(&reply(&cancel, 200, "c1", CORE));
    let sent = rig.sent();
    assert_eq!(
        lines(&sent),
        ["ACK→core", "BYE→core"],
        "ACK first, then BYE"
    );
    let bye = one(&sent, "BYE", |s| s.is_request("BYE"));
    assert_eq!(bye.call_id(), at_core.call_id());
    assert_eq!(
        bye.to_tag().as_deref(),
        Some("c1"),
        "the dialog the 2xx made"
    );

    rig.core_sends(&reply(&bye, 200, "c1", CORE));
    rig.alice_sends(&alice.ack_failure(&invite, &terminated));
    assert!(rig.sent().is_empty());
    assert_eq!(rig.calls(), 0, "no leg left");
    rig.run_for(Duration::from_secs(40)).await;
    assert_eq!(rig.transactions(), 0, "every transaction ended");
}
