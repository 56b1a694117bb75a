use super::*;
use crate::policy::{Domain, MediaMode};
use crate::trigger::{Trigger, TriggerKind};

const OFFER: &str = "v=0\r\no=alice 1 2 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=message 7654 TCP/MSRP *\r\na=accept-types:text/plain\r\na=path:msrp://192.0.2.1:7654/fresh;tcp\r\n";
const CONF: &str = "v=0\r\no=focus 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\nm=message 9000 TCP/MSRP *\r\na=accept-types:text/plain\r\na=path:msrp://192.0.2.9:9000/conf;tcp\r\n";
const PEER_SDP: &str = "v=0\r\no=bob 1 1 IN IP4 192.0.2.2\r\ns=-\r\nc=IN IP4 192.0.2.2\r\nt=0 0\r\nm=message 7655 TCP/MSRP *\r\na=accept-types:text/plain\r\na=path:msrp://192.0.2.2:7655/b;tcp\r\n";

fn setup(media: MediaMode, subscription: bool, targets: usize, max: usize) -> Setup {
    Setup {
        call: 1,
        client_leg: 10,
        peer_leg: 11,
        transaction: 99,
        refer_cseq: 4,
        trigger: Trigger {
            kind: TriggerKind::Refer,
            targets: (0..targets)
                .map(|i| format!("sip:user{i}@example.com"))
                .collect(),
            subscription,
        },
        domain: Domain {
            factory_uri: "sip:factory@ims.example.com".into(),
            max_group_size: max,
            media,
            notify_user: false,
        },
        from: "<sip:alice@example.com>".into(),
        peer: PeerDialog {
            uri: "<sip:bob@example.com>".into(),
            call_id: "leg-b@escalator".into(),
            peer_tag: "bobtag".into(),
            our_tag: "hosttag".into(),
        },
        client_sdp: Some(OFFER.as_bytes().to_vec()),
        peer_sdp: Some(PEER_SDP.as_bytes().to_vec()),
        boundary: "b-1".into(),
        answer_timeout_ms: 20_000,
        host_made_call_id: false,
        report: None,
    }
}

fn counter() -> impl FnMut() -> u64 {
    let mut n = 100;
    move || {
        n += 1;
        n
    }
}

fn response(status: u16, sdp: Option<&str>) -> Vec<u8> {
    let body = sdp.unwrap_or("");
    let ct = if sdp.is_some() {
        "Content-Type: application/sdp\r\n"
    } else {
        ""
    };
    format!(
        "SIP/2.0 {status} Whatever\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn token_of(actions: &[Action], method: &str) -> u64 {
    actions
        .iter()
        .find_map(|a| match a {
            Action::SendRequest {
                method: m, token, ..
            } if m == method => Some(*token),
            Action::CreateLeg { token, .. } if method == "CREATE" => Some(*token),
            _ => None,
        })
        .expect("action present")
}

fn notify_line(a: &Action) -> Option<String> {
    match a {
        Action::SendRequest {
            method,
            body: Some(b),
            ..
        } if method == "NOTIFY" => Some(String::from_utf8_lossy(&b.bytes).trim_end().to_string()),
        _ => None,
    }
}

fn kinds(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .map(|a| match a {
            Action::Respond { status, .. } => format!("respond {status}"),
            Action::SendRequest { method, body, .. } if method == "NOTIFY" => {
                format!(
                    "notify {}",
                    notify_line(a)
                        .unwrap_or_default()
                        .trim_start_matches("SIP/2.0 ")
                )
            }
            Action::SendRequest { method, body, .. } => {
                format!("{method}{}", if body.is_some() { " with body" } else { "" })
            }
            Action::CreateLeg { .. } => "create-leg".into(),
            Action::Pair { a, b } => format!("pair {a} {b}"),
            Action::Release { leg, send_bye } => format!("release {leg} bye={send_bye}"),
            Action::SetTimer { .. } => "timer".into(),
            other => format!("{other:?}"),
        })
        .collect()
}

#[test]
fn fresh_offer_success_reanchors_and_repairs() {
    let mut t = counter();
    let (mut flow, a, outcome) = Flow::start(setup(MediaMode::FreshOffer, true, 1, 10), &mut t);
    assert_eq!(outcome, None);
    assert_eq!(
        kinds(&a),
        ["respond 202", "notify 100 Trying", "INVITE", "timer"]
    );
    let offer_token = token_of(&a, "INVITE");
    let (a, o) = flow.on_event(
        &Event::Response {
            token: offer_token,
            leg: 10,
            status: 200,
            message: response(200, Some(OFFER)),
        },
        &mut t,
    );
    assert_eq!(o, None);
    assert_eq!(kinds(&a), ["create-leg"]);
    let Action::CreateLeg {
        request, target, ..
    } = &a[0]
    else {
        unreachable!()
    };
    assert_eq!(*target, None, "step 10: toward the core next hop");
    let text = request.describe("INVITE");
    assert!(
        text.contains("a=path:msrp://192.0.2.1:7654/fresh;tcp"),
        "step 8: the fresh offer"
    );
    let conf_token = token_of(&a, "CREATE");
    let (a, o) = flow.on_event(
        &Event::Response {
            token: conf_token,
            leg: 20,
            status: 200,
            message: response(200, Some(CONF)),
        },
        &mut t,
    );
    assert_eq!(o, Some(Outcome::Escalated));
    assert_eq!(
        kinds(&a),
        ["ACK with body", "pair 10 20", "timer", "notify 200 OK"]
    );
    let Action::SendRequest { body: Some(b), .. } = &a[0] else {
        unreachable!()
    };
    assert_eq!(
        b.bytes,
        CONF.as_bytes(),
        "the client gets the conference's answer"
    );
    assert!(flow.is_done());
}

#[test]
fn fresh_offer_conference_refusal_rolls_back_with_the_peers_answer() {
    let mut t = counter();
    let (mut flow, a, _) = Flow::start(setup(MediaMode::FreshOffer, true, 1, 10), &mut t);
    let offer_token = token_of(&a, "INVITE");
    let (a, _) = flow.on_event(
        &Event::Response {
            token: offer_token,
            leg: 10,
            status: 200,
            message: response(200, Some(OFFER)),
        },
        &mut t,
    );
    let conf_token = token_of(&a, "CREATE");
    let (a, o) = flow.on_event(
        &Event::Response {
            token: conf_token,
            leg: 20,
            status: 486,
            message: response(486, None),
        },
        &mut t,
    );
    assert!(matches!(
        o,
        Some(Outcome::Failed {
            label: "conference-refused",
            ..
        })
    ));
    assert_eq!(kinds(&a), ["ACK with body", "notify 486 Whatever"]);
    let Action::SendRequest { body: Some(b), .. } = &a[0] else {
        unreachable!()
    };
    assert_eq!(b.bytes, PEER_SDP.as_bytes(), "media stays with the peer");
}

#[test]
fn fresh_offer_failures_before_the_conference() {
    let mut t = counter();
    let (mut flow, a, _) = Flow::start(setup(MediaMode::FreshOffer, true, 1, 10), &mut t);
    let offer_token = token_of(&a, "INVITE");
    let (a, o) = flow.on_event(
        &Event::Response {
            token: offer_token,
            leg: 10,
            status: 488,
            message: response(488, None),
        },
        &mut t,
    );
    assert!(matches!(
        o,
        Some(Outcome::Failed {
            label: "client-refused-offer",
            ..
        })
    ));
    assert_eq!(
        kinds(&a),
        ["notify 488 Whatever"],
        "no ACK for a non-2xx: the host's transaction sends it"
    );

    let (mut flow, a, _) = Flow::start(setup(MediaMode::FreshOffer, true, 1, 10), &mut t);
    let offer_token = token_of(&a, "INVITE");
    let (a, o) = flow.on_event(
        &Event::Response {
            token: offer_token,
            leg: 10,
            status: 200,
            message: response(200, None),
        },
        &mut t,
    );
    assert!(matches!(
        o,
        Some(Outcome::Failed {
            label: "no-msrp-offer",
            ..
        })
    ));
    assert_eq!(
        kinds(&a),
        ["ACK with body", "notify 488 Not Acceptable Here"]
    );
}

#[test]
fn guard_timer_cancels_a_slow_conference_and_answers_the_client() {
    let mut t = counter();
    let (mut flow, a, _) = Flow::start(setup(MediaMode::FreshOffer, true, 1, 10), &mut t);
    let guard = a
        .iter()
        .find_map(|x| match x {
            Action::SetTimer { token, .. } => Some(*token),
            _ => None,
        })
        .unwrap();
    let offer_token = token_of(&a, "INVITE");
    let (a, _) = flow.on_event(
        &Event::Response {
            token: offer_token,
            leg: 10,
            status: 200,
            message: response(200, Some(OFFER)),
        },
        &mut t,
    );
    let conf_token = token_of(&a, "CREATE");
    flow.on_event(
        &Event::Response {
            token: conf_token,
            leg: 20,
            status: 180,
            message: response(180, None),
        },
        &mut t,
    );
    let (a, o) = flow.on_event(&Event::Timer { token: guard }, &mut t);
    assert!(matches!(
        o,
        Some(Outcome::Failed {
            label: "conference-timeout",
            ..
        })
    ));
    assert_eq!(
        kinds(&a),
        [
            "release 20 bye=true",
            "ACK with body",
            "notify 408 Request Timeout"
        ]
    );
}

#[test]
fn reuse_offer_success_and_refused_reanchor() {
    let mut t = counter();
    let (mut flow, a, _) = Flow::start(setup(MediaMode::ReuseOffer, true, 2, 10), &mut t);
    assert_eq!(
        kinds(&a),
        ["respond 202", "notify 100 Trying", "create-leg"]
    );
    let conf_token = token_of(&a, "CREATE");
    let (a, _) = flow.on_event(
        &Event::Response {
            token: conf_token,
            leg: 20,
            status: 200,
            message: response(200, Some(CONF)),
        },
        &mut t,
    );
    assert_eq!(kinds(&a), ["INVITE with body"]);
    let reanchor = token_of(&a, "INVITE");
    let (a, o) = flow.on_event(
        &Event::Response {
            token: reanchor,
            leg: 10,
            status: 200,
            message: response(200, Some(OFFER)),
        },
        &mut t,
    );
    assert_eq!(o, Some(Outcome::Escalated));
    assert_eq!(kinds(&a), ["pair 10 20", "timer", "notify 200 OK"]);

    let (mut flow, a, _) = Flow::start(setup(MediaMode::ReuseOffer, true, 2, 10), &mut t);
    let conf_token = token_of(&a, "CREATE");
    let (a, _) = flow.on_event(
        &Event::Response {
            token: conf_token,
            leg: 21,
            status: 200,
            message: response(200, Some(CONF)),
        },
        &mut t,
    );
    let reanchor = token_of(&a, "INVITE");
    let (a, o) = flow.on_event(
        &Event::Response {
            token: reanchor,
            leg: 10,
            status: 488,
            message: response(488, None),
        },
        &mut t,
    );
    assert!(matches!(
        o,
        Some(Outcome::Failed {
            label: "client-refused-reanchor",
            ..
        })
    ));
    assert_eq!(kinds(&a), ["release 21 bye=true", "notify 488 Whatever"]);
}

#[test]
fn conference_timeout_and_transport_error() {
    for (event, label) in [
        (Event::Timeout { token: 0, leg: 20 }, "conference-timeout"),
        (
            Event::TransportError { token: 0, leg: 20 },
            "conference-unreachable",
        ),
    ] {
        let mut t = counter();
        let (mut flow, a, _) = Flow::start(setup(MediaMode::ReuseOffer, true, 1, 10), &mut t);
        let conf_token = token_of(&a, "CREATE");
        let event = match event {
            Event::Timeout { leg, .. } => Event::Timeout {
                token: conf_token,
                leg,
            },
            Event::TransportError { leg, .. } => Event::TransportError {
                token: conf_token,
                leg,
            },
            e => e,
        };
        let (_, o) = flow.on_event(&event, &mut t);
        assert!(matches!(o, Some(Outcome::Failed { label: l, .. }) if l == label));
    }
}

#[test]
fn step6_too_large_a_group_is_refused_before_anything_is_sent() {
    // 3 invitees + the peer = 4 users on the list.
    let s = setup(MediaMode::FreshOffer, true, 3, 3);
    let r = precheck(&s).unwrap_err();
    assert_eq!((r.status, r.label), (403, "group-too-large"));
    assert!(r.text.contains("maximum is 3"), "{}", r.text);
    assert!(precheck(&setup(MediaMode::FreshOffer, true, 2, 3)).is_ok());

    let a = refusal_actions(&s, &r, 1, 2);
    assert_eq!(kinds(&a), ["respond 202", "notify 403 Group Too Large"]);
    let mut quiet = setup(MediaMode::FreshOffer, false, 3, 3);
    quiet.domain.notify_user = true;
    let a = refusal_actions(&quiet, &r, 1, 2);
    assert_eq!(kinds(&a), ["respond 403", "MESSAGE with body"]);
    let Action::SendRequest { body: Some(b), .. } = &a[1] else {
        unreachable!()
    };
    assert!(String::from_utf8_lossy(&b.bytes).contains("maximum is 3"));
}

#[test]
fn refer_sub_false_means_no_notify() {
    let mut t = counter();
    let (mut flow, a, _) = Flow::start(setup(MediaMode::ReuseOffer, false, 1, 10), &mut t);
    assert_eq!(kinds(&a), ["respond 202", "create-leg"]);
    let Action::Respond { headers, .. } = &a[0] else {
        unreachable!()
    };
    assert_eq!(headers, &[("Refer-Sub".to_string(), "false".to_string())]);
    let conf_token = token_of(&a, "CREATE");
    let (a, _) = flow.on_event(
        &Event::Response {
            token: conf_token,
            leg: 20,
            status: 603,
            message: response(603, None),
        },
        &mut t,
    );
    assert!(a.is_empty(), "{a:?}");
}

#[test]
fn reuse_mode_without_an_msrp_offer_is_refused() {
    let mut s = setup(MediaMode::ReuseOffer, true, 1, 10);
    s.client_sdp = None;
    assert_eq!(precheck(&s).unwrap_err().label, "no-msrp-offer");
}

#[test]
fn notify_event_carries_the_refer_id() {
    let mut t = counter();
    let (_, a, _) = Flow::start(setup(MediaMode::FreshOffer, true, 1, 10), &mut t);
    let Action::SendRequest { headers, .. } = &a[1] else {
        unreachable!()
    };
    assert!(headers.contains(&("Event".to_string(), "refer;id=4".to_string())));
    assert!(headers.contains(&(
        "Subscription-State".to_string(),
        "active;expires=60".to_string()
    )));
}

/// The response `status` (with `sdp`) on `leg` to the request of `token`.
fn answer(
    flow: &mut Flow,
    token: u64,
    leg: u64,
    status: u16,
    sdp: Option<&str>,
    t: &mut dyn FnMut() -> u64,
) -> (Vec<Action>, Option<Outcome>) {
    flow.on_event(
        &Event::Response {
            token,
            leg,
            status,
            message: response(status, sdp),
        },
        t,
    )
}

/// A fresh-offer flow with the conference INVITE sent; its tokens
/// (offer, conference).
fn pending_conference(t: &mut dyn FnMut() -> u64) -> (Flow, u64) {
    let (mut flow, a, _) = Flow::start(setup(MediaMode::FreshOffer, true, 1, 10), t);
    let (a, _) = answer(&mut flow, token_of(&a, "INVITE"), 10, 200, Some(OFFER), t);
    (flow, token_of(&a, "CREATE"))
}

#[test]
fn peer_bye_before_the_conference_invite_abandons_and_is_relayed() {
    let mut t = counter();
    let (mut flow, _, _) = Flow::start(setup(MediaMode::FreshOffer, true, 1, 10), &mut t);
    let (a, o, taken) = flow.on_peer_bye(77, &mut t);
    assert!(!taken, "the BYE goes on to the client");
    assert_eq!(kinds(&a), ["notify 487 Request Terminated"]);
    assert!(matches!(
        o,
        Some(Outcome::Failed {
            label: "peer-left",
            ..
        })
    ));
}

#[test]
fn peer_bye_while_the_conference_is_pending_is_absorbed_then_success() {
    let mut t = counter();
    let (mut flow, conf) = pending_conference(&mut t);
    let (a, o, taken) = flow.on_peer_bye(77, &mut t);
    assert!(taken, "answered here, not relayed to the client");
    assert_eq!(o, None);
    assert_eq!(kinds(&a), ["respond 200", "release 11 bye=false"]);
    let (a, o) = answer(&mut flow, conf, 20, 200, Some(CONF), &mut t);
    assert_eq!(o, Some(Outcome::Escalated));
    assert_eq!(
        kinds(&a),
        ["ACK with body", "pair 10 20", "notify 200 OK"],
        "no stale-leg timer: the peer's leg is gone already"
    );
}

#[test]
fn peer_bye_while_pending_then_conference_failure_tells_and_hangs_up_the_client() {
    let mut t = counter();
    let (mut flow, conf) = pending_conference(&mut t);
    let (_, _, taken) = flow.on_peer_bye(77, &mut t);
    assert!(taken);
    let (a, o) = answer(&mut flow, conf, 20, 486, None, &mut t);
    assert!(matches!(o, Some(Outcome::Failed { .. })));
    assert_eq!(
        kinds(&a),
        [
            "ACK with body",
            "notify 486 Whatever",
            "release 10 bye=true"
        ],
        "no 1-to-1 to go back to: the client is told, then hung up"
    );
}

#[test]
fn peer_bye_after_the_flow_ended_is_not_the_flows() {
    let mut t = counter();
    let (mut flow, conf) = pending_conference(&mut t);
    answer(&mut flow, conf, 20, 200, Some(CONF), &mut t);
    let (a, o, taken) = flow.on_peer_bye(77, &mut t);
    assert_eq!((a.len(), o, taken), (0, None, false));
}

#[test]
fn client_bye_while_waiting_for_its_offer_drops_the_escalation_and_is_relayed() {
    let mut t = counter();
    let (mut flow, a, _) = Flow::start(setup(MediaMode::FreshOffer, true, 1, 10), &mut t);
    let offer = token_of(&a, "INVITE");
    let (a, o, taken) = flow.on_client_bye(77);
    assert!(!taken, "relayed to the peer as any hang-up");
    assert!(a.is_empty());
    assert!(matches!(
        o,
        Some(Outcome::Failed {
            label: "client-left",
            ..
        })
    ));
    let (a, o) = answer(&mut flow, offer, 10, 200, Some(OFFER), &mut t);
    assert_eq!(
        (a.len(), o),
        (0, None),
        "no conference after the client left"
    );
}

#[test]
fn client_bye_before_the_conference_answered_cancels_it_at_its_first_response() {
    let mut t = counter();
    let (mut flow, conf) = pending_conference(&mut t);
    let (a, o, taken) = flow.on_client_bye(77);
    assert!(taken);
    assert!(matches!(
        o,
        Some(Outcome::Failed {
            label: "client-left",
            ..
        })
    ));
    assert_eq!(
        kinds(&a),
        [
            "ACK with body",
            "respond 200",
            "release 10 bye=false",
            "release 11 bye=true"
        ],
        "the client's 200 ACKed, its BYE answered, both old legs end; \
         no CANCEL before the conference answered at all (RFC 3261 §9.1)"
    );
    let (a, _) = answer(&mut flow, conf, 20, 180, None, &mut t);
    assert_eq!(kinds(&a), ["release 20 bye=true"], "CANCEL now");
    let (a, _) = answer(&mut flow, conf, 20, 200, Some(CONF), &mut t);
    assert!(
        a.is_empty(),
        "a 2xx crossing the CANCEL is the host's to end"
    );
    assert!(flow.is_done());
}

#[test]
fn client_bye_after_a_provisional_cancels_at_once_and_a_late_2xx_is_hung_up() {
    let mut t = counter();
    let (mut flow, conf) = pending_conference(&mut t);
    answer(&mut flow, conf, 20, 180, None, &mut t);
    let (a, _, taken) = flow.on_client_bye(77);
    assert!(taken);
    assert_eq!(
        kinds(&a),
        [
            "ACK with body",
            "respond 200",
            "release 10 bye=false",
            "release 11 bye=true",
            "release 20 bye=true"
        ]
    );
    let (a, _) = answer(&mut flow, conf, 20, 487, None, &mut t);
    assert!(a.is_empty());
    assert!(flow.is_done());
}

#[test]
fn client_bye_then_no_answer_at_all_the_guard_ends_the_flow() {
    let mut t = counter();
    let (mut flow, a0, _) = Flow::start(setup(MediaMode::FreshOffer, true, 1, 10), &mut t);
    let guard = a0
        .iter()
        .find_map(|a| match a {
            Action::SetTimer { token, .. } => Some(*token),
            _ => None,
        })
        .expect("guard timer");
    let (a, _) = answer(
        &mut flow,
        token_of(&a0, "INVITE"),
        10,
        200,
        Some(OFFER),
        &mut t,
    );
    let _conf = token_of(&a, "CREATE");
    flow.on_client_bye(77);
    let (a, o) = flow.on_event(&Event::Timer { token: guard }, &mut t);
    assert_eq!((a.len(), o), (0, None), "no conference leg ever showed up");
    assert!(flow.is_done());
}

#[test]
fn client_bye_after_the_peer_left_leaves_the_peer_alone() {
    let mut t = counter();
    let (mut flow, _) = pending_conference(&mut t);
    flow.on_peer_bye(76, &mut t);
    let (a, _, taken) = flow.on_client_bye(77);
    assert!(taken);
    assert_eq!(
        kinds(&a),
        ["ACK with body", "respond 200", "release 10 bye=false"]
    );
}

#[test]
fn glare_waits_follow_who_made_the_call_id() {
    for spread in [0, 1, 1900, 1901, 2000, 2001, u64::MAX] {
        let host = glare_wait_ms(true, spread);
        assert!((2100..=4000).contains(&host), "{host}");
        let client = glare_wait_ms(false, spread);
        assert!(client <= 2000, "{client}");
    }
}

/// The timer a set of actions starts (the last one).
fn timer_of(actions: &[Action]) -> (u64, u64) {
    actions
        .iter()
        .rev()
        .find_map(|a| match a {
            Action::SetTimer { token, after_ms } => Some((*token, *after_ms)),
            _ => None,
        })
        .expect("a timer")
}

#[test]
fn a_491_to_the_offer_request_is_retried_after_a_random_wait() {
    let mut t = counter();
    let (mut flow, a, _) = Flow::start(setup(MediaMode::FreshOffer, true, 1, 10), &mut t);
    let first = token_of(&a, "INVITE");
    let (a, o) = answer(&mut flow, first, 10, 491, None, &mut t);
    assert_eq!(o, None, "glare is no failure");
    assert_eq!(kinds(&a), ["timer"]);
    let (retry, wait) = timer_of(&a);
    assert!(
        wait <= 2000,
        "the client made the Call-ID: 0–2 s, got {wait}"
    );
    let (a, o) = flow.on_event(&Event::Timer { token: retry }, &mut t);
    assert_eq!(o, None);
    assert_eq!(kinds(&a), ["INVITE"], "asked again, without an offer");
    let second = token_of(&a, "INVITE");
    assert_ne!(second, first);
    let (a, _) = answer(&mut flow, second, 10, 200, Some(OFFER), &mut t);
    assert_eq!(kinds(&a), ["create-leg"], "then the escalation goes on");
}

#[test]
fn glare_every_time_ends_in_491_after_the_last_retry() {
    let mut t = counter();
    let (mut flow, a, _) = Flow::start(setup(MediaMode::FreshOffer, true, 1, 10), &mut t);
    let mut offer = token_of(&a, "INVITE");
    for _ in 1..GLARE_RETRIES {
        let (a, _) = answer(&mut flow, offer, 10, 491, None, &mut t);
        let (retry, _) = timer_of(&a);
        let (a, _) = flow.on_event(&Event::Timer { token: retry }, &mut t);
        offer = token_of(&a, "INVITE");
    }
    let (a, o) = answer(&mut flow, offer, 10, 491, None, &mut t);
    assert!(matches!(
        o,
        Some(Outcome::Failed {
            label: "client-refused-offer",
            ..
        })
    ));
    assert_eq!(kinds(&a), ["notify 491 Whatever"]);
}

#[test]
fn a_challenge_to_the_conference_invite_restores_the_client_and_tells_it_403() {
    for (status, label) in [
        (401, "conference-challenged-401"),
        (407, "conference-challenged-407"),
    ] {
        let mut t = counter();
        let (mut flow, conf) = pending_conference(&mut t);
        let (a, o) = answer(&mut flow, conf, 20, status, None, &mut t);
        assert!(matches!(o, Some(Outcome::Failed { label: l, .. }) if l == label));
        assert_eq!(
            kinds(&a),
            ["ACK with body", "notify 403 Forbidden"],
            "the client cannot answer a challenge it never saw"
        );
    }
}

#[test]
fn reuse_offer_peer_bye_while_the_client_is_re_anchored_is_absorbed() {
    let mut t = counter();
    let (mut flow, a, _) = Flow::start(setup(MediaMode::ReuseOffer, true, 1, 10), &mut t);
    let (a, _) = answer(
        &mut flow,
        token_of(&a, "CREATE"),
        20,
        200,
        Some(CONF),
        &mut t,
    );
    let reanchor = token_of(&a, "INVITE");
    let (a, o, taken) = flow.on_peer_bye(77, &mut t);
    assert!(
        taken,
        "between the conference's 200 and the client's answer"
    );
    assert_eq!(o, None);
    assert_eq!(kinds(&a), ["respond 200", "release 11 bye=false"]);
    let (a, o) = answer(&mut flow, reanchor, 10, 200, Some(OFFER), &mut t);
    assert_eq!(o, Some(Outcome::Escalated));
    assert_eq!(kinds(&a), ["pair 10 20", "notify 200 OK"]);
}

#[test]
fn reuse_offer_client_bye_while_re_anchoring_hangs_up_the_conference() {
    let mut t = counter();
    let (mut flow, a, _) = Flow::start(setup(MediaMode::ReuseOffer, true, 1, 10), &mut t);
    answer(
        &mut flow,
        token_of(&a, "CREATE"),
        20,
        200,
        Some(CONF),
        &mut t,
    );
    let (a, o, taken) = flow.on_client_bye(77);
    assert!(taken);
    assert!(matches!(
        o,
        Some(Outcome::Failed {
            label: "client-left",
            ..
        })
    ));
    assert_eq!(
        kinds(&a),
        [
            "respond 200",
            "release 10 bye=false",
            "release 11 bye=true",
            "release 20 bye=true"
        ]
    );
    assert!(flow.is_done());
}

fn custom_setup(targets: usize) -> Setup {
    let mut s = setup(MediaMode::FreshOffer, false, targets, 10);
    s.trigger.kind = TriggerKind::Custom;
    s.report = Some(Report {
        added: crate::policy::default_added_message(),
        failed: crate::policy::default_failed_message(),
    });
    s
}

/// The text of the MESSAGE among `actions`.
fn message_text(actions: &[Action]) -> Option<String> {
    actions.iter().find_map(|a| match a {
        Action::SendRequest {
            method,
            body: Some(b),
            ..
        } if method == "MESSAGE" => Some(String::from_utf8_lossy(&b.bytes).into_owned()),
        _ => None,
    })
}

#[test]
fn names_read_as_a_sentence() {
    let t = |v: &[&str]| names(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert_eq!(t(&[]), "");
    assert_eq!(t(&["sip:carol@example.com"]), "carol@example.com");
    assert_eq!(
        t(&["sip:carol@example.com", "<sips:dave@example.net>"]),
        "carol@example.com and dave@example.net"
    );
    assert_eq!(t(&["sip:a@x", "sip:b@x", "sip:c@x"]), "a@x, b@x and c@x");
}

/// A fresh-offer flow of `setup` up to the conference's answer `status`
/// (with `sdp`): the actions of that answer and the outcome.
fn conference_answers(
    setup: Setup,
    status: u16,
    sdp: Option<&str>,
    t: &mut dyn FnMut() -> u64,
) -> (Vec<Action>, Option<Outcome>) {
    let (mut flow, a, _) = Flow::start(setup, t);
    let (a, _) = answer(&mut flow, token_of(&a, "INVITE"), 10, 200, Some(OFFER), t);
    answer(&mut flow, token_of(&a, "CREATE"), 20, status, sdp, t)
}

#[test]
fn the_custom_request_is_answered_200_and_told_the_outcome_by_message() {
    let mut t = counter();
    let (_, a, _) = Flow::start(custom_setup(2), &mut t);
    assert_eq!(kinds(&a), ["respond 200", "INVITE", "timer"], "no NOTIFY");
    let (a, o) = conference_answers(custom_setup(2), 200, Some(CONF), &mut t);
    assert_eq!(o, Some(Outcome::Escalated));
    assert_eq!(
        message_text(&a).as_deref(),
        Some("Added to the chat: user0@example.com and user1@example.com.")
    );
    let (a, _) = conference_answers(custom_setup(1), 486, None, &mut t);
    assert_eq!(
        message_text(&a).as_deref(),
        Some("Could not add user0@example.com to the chat: 486 Whatever.")
    );
}

#[test]
fn a_refused_custom_request_gets_403_and_a_message() {
    let mut t = counter();
    let s = custom_setup(12);
    let refusal = precheck(&s).expect_err("12 + the peer exceed 10");
    let a = refusal_actions(&s, &refusal, t(), t());
    assert_eq!(kinds(&a)[0], "respond 403");
    let text = message_text(&a).unwrap_or_default();
    assert!(
        text.starts_with("Could not add user0@example.com, "),
        "{text}"
    );
    assert!(text.contains("403 "), "{text}");
}
