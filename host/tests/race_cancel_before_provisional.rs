//! Race: a CANCEL that arrives before the core said anything.
//!
//! Wire order: alice → host INVITE; host → core INVITE; alice → host
//! CANCEL (no provisional from the core yet). RFC 3261 §9.1: a CANCEL may
//! not be sent before a provisional response, so the host answers alice
//! (200 to the CANCEL, 487 to the INVITE) and holds its own CANCEL; core →
//! host 180; only now host → core CANCEL; core → host 200 (CANCEL), 487
//! (INVITE); host → core ACK. No call is left.

mod support;
use std::time::Duration;
use support::*;

#[tokio::test(start_paused = true)]
async fn cancel_before_any_provisional_is_held_until_one_arrives() {
    let mut rig = Rig::new();
    let mut alice = Alice::new("cancel-early");
    let (invite, at_core) = invite_through(&mut rig, &mut alice);

    rig.alice_sends(&alice.cancel(&invite));
    let sent = rig.sent();
    assert_eq!(
        lines(&sent),
        ["200/CANCEL→alice", "487/INVITE→alice"],
        "no CANCEL toward the core before a provisional"
    );
    let terminated = one(&sent, "487", |s| s.is_response(487, "INVITE"));
    rig.alice_sends(&alice.ack_failure(&invite, &terminated));
    assert!(rig.sent().is_empty());

    // Still nothing from the core after a while: INVITE retransmissions only.
    rig.run_for(Duration::from_millis(600)).await;
    assert_eq!(lines(&rig.sent()), ["INVITE→core"], "Timer A, no CANCEL");

    rig.core_sends(&reply(&at_core, 180, "c1", CORE));
    let sent = rig.sent();
    assert_eq!(
        lines(&sent),
        ["CANCEL→core"],
        "the held CANCEL, and no 180 to alice"
    );
    let cancel = one(&sent, "CANCEL", |s| s.is_request("CANCEL"));

    rig.core_sends(&reply(&cancel, 200, "c1", CORE));
    rig.core_sends(&reply(&at_core, 487, "c1", CORE));
    let sent = rig.sent();
    assert_eq!(lines(&sent), ["ACK→core"], "the 487 is acknowledged");
    assert_eq!(rig.calls(), 0);
    rig.run_for(Duration::from_secs(40)).await;
    assert_eq!(rig.transactions(), 0, "every transaction ended");
}
