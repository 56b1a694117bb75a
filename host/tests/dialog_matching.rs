//! Dialogs as RFC 3261 §12 defines them, on the client-facing leg: a request
//! is in a dialog when Call-ID, To tag *and* From tag match (§12.2.2), and
//! the response that sets a dialog up carries the request's Record-Route
//! (§12.1.1), which is then the route set of the host's requests.

mod support;
use bytes::Bytes;
use escalator_host::sip::SipMessage;
use metrics_util::debugging::DebuggingRecorder;
use support::*;

/// An established call alice → host → core; returns alice's side.
fn established(rig: &mut Rig, record_route: &[&str]) -> (Alice, SipMessage, SipMessage) {
    let mut alice = Alice::new("matching");
    let mut invite = alice.request("INVITE", "inv1");
    for rr in record_route {
        invite.push_header("Record-Route", *rr);
    }
    rig.alice_sends(&invite);
    let sent = rig.sent();
    assert_eq!(lines(&sent), ["100/INVITE→alice", "INVITE→core"]);
    let at_core = sent[1].msg.clone();
    assert!(
        at_core.header("Record-Route").is_none(),
        "alice's proxies stay on her side"
    );
    rig.core_sends(&reply(&at_core, 200, "c1", CORE));
    let ok = one(&rig.sent(), "200", |s| s.is_response(200, "INVITE"));
    alice.remote_tag = ok.to_tag();
    rig.alice_sends(&alice.request("ACK", "ack1"));
    assert_eq!(lines(&rig.sent()), ["ACK→core"]);
    (alice, ok, at_core)
}

#[tokio::test(start_paused = true)]
async fn a_request_with_another_from_tag_gets_481_and_never_reaches_the_core() {
    // The test runtime is current-thread: the Rig's core counts into this.
    let recorder = DebuggingRecorder::new();
    let snapshots = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let mut rig = Rig::new();
    let (mut alice, _, _) = established(&mut rig, &[]);
    for method in ["REFER", "MESSAGE", "BYE"] {
        // Someone who learnt alice's Call-ID and the host's tag.
        let mut forged = alice.request(method, &format!("forged-{method}"));
        forged.set_header("From", "<sip:mallory@example.com>;tag=x");
        if method == "REFER" {
            forged.push_header("Refer-To", "<sip:carol@example.com>");
        }
        forged.set_body(Bytes::new());
        rig.alice_sends(&forged);
        let sent = rig.sent();
        assert_eq!(
            lines(&sent),
            [format!("481/{method}→alice")],
            "{method}: refused, nothing toward the core"
        );
    }
    assert_eq!(rig.calls(), 1, "the call is untouched");
    assert_eq!(
        counted_by(&snapshots, "escalator_dialog_mismatches_total", "method"),
        [
            ("BYE".into(), 1),
            ("MESSAGE".into(), 1),
            ("REFER".into(), 1)
        ],
        "each refusal counted under its method"
    );
    // alice's own requests still pass.
    let m = alice.request("MESSAGE", "real");
    rig.alice_sends(&m);
    assert_eq!(lines(&rig.sent()), ["MESSAGE→core"]);
}

#[tokio::test(start_paused = true)]
async fn the_2xx_carries_the_record_route_and_the_host_routes_by_it() {
    let mut rig = Rig::new();
    let rr = ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"];
    let (_alice, ok, at_core) = established(&mut rig, &rr);
    assert_eq!(ok.header_values("Record-Route"), rr, "copied, in order");

    // A BYE from the core reaches alice along that route set (the UAS side
    // keeps it in the order received) and at her Contact.
    rig.core_sends(&core_request(&at_core, "c1", "BYE", 1));
    let sent = rig.sent();
    assert_eq!(lines(&sent), ["BYE→alice"]);
    assert_eq!(sent[0].msg.header_values("Route"), rr);
    assert_eq!(
        sent[0].msg.request_uri(),
        Some(format!("sip:alice@{ALICE}").as_str())
    );
}
