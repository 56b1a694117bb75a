//! Race: a BYE crossing a re-INVITE.
//!
//! Wire order (established call): alice → host re-INVITE; host → core
//! re-INVITE; core → host BYE (sent before it saw the re-INVITE); host →
//! alice BYE; alice → host 200 (BYE); host → core 200 (BYE); core → host
//! 487 (re-INVITE, its dialog is gone); host → core ACK; host → alice 487;
//! alice → host ACK. Every transaction answered, no call left.

mod support;
use std::time::Duration;
use support::*;

#[tokio::test(start_paused = true)]
async fn bye_crossing_a_reinvite_ends_the_call_and_answers_the_reinvite() {
    let mut rig = Rig::new();
    let mut alice = Alice::new("bye-reinvite");
    let (_invite, at_core) = invite_through(&mut rig, &mut alice);
    rig.core_sends(&reply(&at_core, 200, "c1", CORE));
    let ok = one(&rig.sent(), "200", |s| s.is_response(200, "INVITE"));
    alice.remote_tag = ok.to_tag();
    let ack = alice.request("ACK", "ack1");
    rig.alice_sends(&ack);
    assert_eq!(lines(&rig.sent()), ["ACK→core"]);

    let reinvite = alice.request("INVITE", "reinv");
    rig.alice_sends(&reinvite);
    let sent = rig.sent();
    assert_eq!(lines(&sent), ["100/INVITE→alice", "INVITE→core"]);
    let reinvite_at_core = sent[1].msg.clone();

    let bye = core_request(&at_core, "c1", "BYE", 1);
    rig.core_sends(&bye);
    let sent = rig.sent();
    assert_eq!(lines(&sent), ["BYE→alice"]);
    let bye_at_alice = sent[0].msg.clone();
    assert_eq!(bye_at_alice.call_id(), Some(alice.call_id.as_str()));

    rig.alice_sends(&reply(&bye_at_alice, 200, "a1", ALICE));
    assert_eq!(lines(&rig.sent()), ["200/BYE→core"]);

    rig.core_sends(&reply(&reinvite_at_core, 487, "c1", CORE));
    let sent = rig.sent();
    assert_eq!(lines(&sent), ["ACK→core", "487/INVITE→alice"]);
    rig.alice_sends(&alice.ack_failure(&reinvite, &sent[1].msg));
    assert!(rig.sent().is_empty());
    assert_eq!(rig.calls(), 0, "both legs released");
    rig.run_for(Duration::from_secs(40)).await;
    assert_eq!(rig.transactions(), 0);
}
