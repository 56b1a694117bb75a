//! Race: a 2xx that alice never acknowledges.
//!
//! Wire order: alice → host INVITE; host → core INVITE; core → host 200;
//! host → alice 200, retransmitted (T1, 2T1, … capped at T2) while no ACK
//! comes; after 64*T1 the host gives up: RFC 3261 §13.3.1.4, the dialog
//! ends, on both legs: BYE → alice and BYE → core. Both answered, no call
//! is left.

mod support;
use std::time::Duration;
use support::*;

#[tokio::test(start_paused = true)]
async fn a_2xx_never_acked_ends_both_legs_with_bye_after_64_t1() {
    let mut rig = Rig::new();
    let mut alice = Alice::new("no-ack");
    let (_invite, at_core) = invite_through(&mut rig, &mut alice);
    rig.core_sends(&reply(&at_core, 200, "c1", CORE));
    let sent = rig.sent();
    assert_eq!(lines(&sent), ["200/INVITE→alice"]);

    // 31.5 s: only retransmissions of the 200 to alice.
    rig.run_for(Duration::from_millis(31_500)).await;
    let sent = rig.sent();
    assert!(sent.len() >= 8, "{:?}", lines(&sent));
    assert!(
        sent.iter().all(|s| s.is_response(200, "INVITE")),
        "{:?}",
        lines(&sent)
    );
    assert_eq!(rig.calls(), 1);

    // 64*T1 = 32 s: BYE on both legs.
    rig.run_for(Duration::from_millis(600)).await;
    let sent = rig.sent();
    let byes: Vec<String> = lines(&sent)
        .into_iter()
        .filter(|l| l.starts_with("BYE"))
        .collect();
    assert_eq!(byes, ["BYE→alice", "BYE→core"], "{:?}", lines(&sent));
    let to_alice = one(&sent, "BYE to alice", |s| {
        s.is_request("BYE") && s.to.to_string() == ALICE
    });
    let to_core = one(&sent, "BYE to core", |s| {
        s.is_request("BYE") && s.to.to_string() == CORE
    });
    assert_eq!(to_alice.call_id(), Some(alice.call_id.as_str()));
    assert_eq!(to_core.call_id(), at_core.call_id());

    rig.alice_sends(&reply(&to_alice, 200, "a1", ALICE));
    rig.core_sends(&reply(&to_core, 200, "c1", CORE));
    assert_eq!(rig.calls(), 0, "both legs released");
    rig.run_for(Duration::from_secs(40)).await;
    assert_eq!(rig.transactions(), 0);
}
