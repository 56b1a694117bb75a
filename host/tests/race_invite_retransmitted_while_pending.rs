//! Race: alice retransmits her INVITE while the host's relay of it is
//! still unanswered.
//!
//! Wire order: alice → host INVITE; host → core INVITE; (T1 passes) alice →
//! host INVITE again (same branch); the host absorbs it: alice gets the
//! 100 Trying again and the core no second INVITE of a new transaction;
//! core → host 200; host → alice 200, once.

mod support;
use std::time::Duration;
use support::*;

#[tokio::test(start_paused = true)]
async fn a_retransmitted_invite_is_absorbed_while_the_relay_is_pending() {
    let mut rig = Rig::new();
    let mut alice = Alice::new("retransmit");
    let (invite, at_core) = invite_through(&mut rig, &mut alice);

    rig.run_for(Duration::from_millis(400)).await;
    rig.alice_sends(&invite);
    let sent = rig.sent();
    assert_eq!(lines(&sent), ["100/INVITE→alice"], "absorbed, 100 again");

    // The host's own retransmission toward the core keeps its branch.
    rig.run_for(Duration::from_millis(200)).await;
    let sent = rig.sent();
    assert_eq!(lines(&sent), ["INVITE→core"]);
    assert_eq!(
        sent[0].msg.top_via(),
        at_core.top_via(),
        "Timer A, same transaction"
    );

    rig.core_sends(&reply(&at_core, 200, "c1", CORE));
    assert_eq!(lines(&rig.sent()), ["200/INVITE→alice"]);
    assert_eq!(rig.calls(), 1);
}
