//! Race-free but order-sensitive: a session between two parties that are
//! both behind the host crosses it twice, joined by the core. Requests of
//! that session leave the host on one leg and come back through the core
//! for the other, carrying the host's own Via and a Request-URI the host
//! sent: a spiral, to be matched to its dialog, not answered 482.
//!
//! Wire order: alice → host INVITE; host → core INVITE (leg 1); core →
//! host INVITE for bob's contact (the same Call-ID, the core's Via on top);
//! host → bob INVITE (leg 2); bob → host 200; host → core 200; core → host
//! 200 (leg 1); host → alice 200; alice → host ACK; host → core ACK; core →
//! host ACK; host → bob ACK; then alice's MESSAGE takes the same way round
//! and reaches bob, and bob's 200 comes back to her.

mod support;
use support::*;

#[tokio::test(start_paused = true)]
async fn an_in_dialog_request_spiralling_through_the_core_reaches_the_other_party() {
    let mut rig = Rig::new();
    let mut alice = Alice::new("spiral");
    let (_invite, leg1_invite) = invite_through(&mut rig, &mut alice);

    // The core routes it back to bob, registered through the host.
    let mut to_bob = proxied(&leg1_invite, "core1");
    if let escalator_host::sip::StartLine::Request { uri, .. } = &mut to_bob.start {
        *uri = format!("sip:bob@{BOB}");
    }
    rig.core_sends(&to_bob);
    let sent = rig.sent();
    assert_eq!(
        lines(&sent),
        ["100/INVITE→core", "INVITE→bob"],
        "a spiral, not a loop"
    );
    let at_bob = sent[1].msg.clone();

    rig.bob_sends(&reply(&at_bob, 200, "b1", BOB));
    let ok_to_core = one(&rig.sent(), "200 to the core", |s| {
        s.is_response(200, "INVITE")
    });
    rig.core_sends(&unproxied(&ok_to_core));
    let ok = one(&rig.sent(), "200 to alice", |s| {
        s.is_response(200, "INVITE")
    });
    alice.remote_tag = ok.to_tag();

    rig.alice_sends(&alice.request("ACK", "ack1"));
    let ack = one(&rig.sent(), "ACK to the core", |s| s.is_request("ACK"));
    rig.core_sends(&proxied(&ack, "core-ack"));
    assert_eq!(lines(&rig.sent()), ["ACK→bob"]);

    let message = alice.request("MESSAGE", "m1");
    rig.alice_sends(&message);
    let out = one(&rig.sent(), "MESSAGE to the core", |s| {
        s.is_request("MESSAGE")
    });
    rig.core_sends(&proxied(&out, "core-m1"));
    let sent = rig.sent();
    assert_eq!(
        lines(&sent),
        ["MESSAGE→bob"],
        "matched to its dialog before any loop check"
    );
    rig.bob_sends(&reply(&sent[0].msg, 200, "b1", BOB));
    let back = one(&rig.sent(), "200 to the core", |s| {
        s.is_response(200, "MESSAGE")
    });
    rig.core_sends(&unproxied(&back));
    assert_eq!(lines(&rig.sent()), ["200/MESSAGE→alice"]);
    assert_eq!(rig.calls(), 2, "two calls: alice–core and core–bob");
}
