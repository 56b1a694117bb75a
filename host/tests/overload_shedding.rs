//! Overload: a new request that waited longer than `shed_after` (200 ms
//! in the rig) in the host's queue is answered 503 with Retry-After and not
//! handled; what belongs to a dialog (an in-dialog request, an ACK, a
//! CANCEL, a response) is always handled, however long it waited.

mod support;
use escalator_host::sip::SipMessage;
use escalator_host::transport::{Proto, Target};
use std::time::Duration;
use support::*;

fn from_alice() -> Target {
    Target {
        proto: Proto::Udp,
        addr: addr(ALICE),
        conn: None,
    }
}

fn waited(rig: &mut Rig, msg: &SipMessage, ms: u64) {
    let parsed = SipMessage::parse(&msg.to_bytes(), Default::default()).expect("parses");
    rig.logic
        .handle_inbound_waited(from_alice(), Ok(parsed), Duration::from_millis(ms));
}

#[tokio::test(start_paused = true)]
async fn a_new_call_that_waited_too_long_is_shed_with_503() {
    let mut rig = Rig::new();
    let mut alice = Alice::new("late");
    waited(&mut rig, &alice.request("INVITE", "late1"), 350);
    let sent = rig.sent();
    assert_eq!(
        lines(&sent),
        ["503/INVITE→alice"],
        "shed, nothing to the core"
    );
    assert_eq!(sent[0].msg.header("Retry-After"), Some("2"));
    assert_eq!(rig.calls(), 0);

    // One that waited less goes on.
    let mut bob_side = Alice::new("early");
    waited(&mut rig, &bob_side.request("INVITE", "early1"), 50);
    assert_eq!(lines(&rig.sent()), ["100/INVITE→alice", "INVITE→core"]);
}

#[tokio::test(start_paused = true)]
async fn what_belongs_to_a_dialog_is_never_shed() {
    let mut rig = Rig::new();
    let (mut alice, _) = established_call(&mut rig, "kept");
    let message = alice.request("MESSAGE", "m1");
    waited(&mut rig, &message, 5_000);
    assert_eq!(lines(&rig.sent()), ["MESSAGE→core"], "in a dialog: handled");
    let bye = alice.request("BYE", "b1");
    waited(&mut rig, &bye, 5_000);
    assert_eq!(lines(&rig.sent()), ["BYE→core"]);
}
