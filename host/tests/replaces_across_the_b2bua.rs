//! INVITEs with Replaces across the B2BUA (RFC 3891 §3). bob is behind the
//! host: the core delivered him a call (Call-ID `c9@esc`, the caller's tag
//! `h-33`), which crosses the host as core-leg' (the host answers with its
//! tag T) and bob's leg (the host's Call-ID x5, its tag H, bob's tag
//! `b-88`). A focus then sends, through the core, an INVITE whose Replaces
//! names core-leg' as the host sees it: `c9@esc;to-tag=T;from-tag=h-33`.
//!
//! - bob supports Replaces: he gets a new INVITE whose Replaces names *his*
//!   dialog, `x5;to-tag=b-88;from-tag=H`, and ends the old one himself.
//! - bob does not: he gets a re-INVITE in his dialog with the focus's offer;
//!   his answer answers the focus, and the host hangs up core-leg'.
//! - Refusals: no such dialog 481, from a client 403, `early-only` on a
//!   confirmed dialog 486, two Replaces 400.

mod support;
use bytes::Bytes;
use escalator_host::sip::SipMessage;
use support::*;

const FOCUS_SDP: &[u8] = b"v=0\r\no=focus 1 1 IN IP4 127.0.0.9\r\ns=-\r\nc=IN IP4 127.0.0.9\r\nt=0 0\r\nm=message 9000 TCP/MSRP *\r\na=path:msrp://127.0.0.9:9000/conf;tcp\r\n";
const BOB_SDP: &[u8] = b"v=0\r\no=bob 1 2 IN IP4 127.0.0.4\r\ns=-\r\nc=IN IP4 127.0.0.4\r\nt=0 0\r\nm=message 7000 TCP/MSRP *\r\na=path:msrp://127.0.0.4:7000/b;tcp\r\n";

/// An initial INVITE from the core for bob (as a proxy delivers it).
fn from_core(call_id: &str, from: &str, replaces: &[&str], body: &[u8]) -> SipMessage {
    let mut m = SipMessage::request("INVITE", &format!("sip:bob@{BOB}"));
    m.push_header(
        "Via",
        format!(
            "SIP/2.0/UDP {CORE};branch=z9hG4bK{}",
            call_id.replace('@', ".")
        ),
    );
    m.push_header("Max-Forwards", "69");
    m.push_header("From", from);
    m.push_header("To", "<sip:bob@example.com>");
    m.push_header("Call-ID", call_id);
    m.push_header("CSeq", "1 INVITE");
    m.push_header("Contact", format!("<sip:peer@{CORE}>"));
    for r in replaces {
        m.push_header("Replaces", *r);
    }
    m.push_header("Content-Type", "application/sdp");
    m.set_body(Bytes::copy_from_slice(body));
    m
}

/// A request from `from_addr` in the dialog of `invite` (which it
/// received), its own tag `tag`.
fn request_in(
    invite: &SipMessage,
    tag: &str,
    from_addr: &str,
    method: &str,
    cseq: u32,
) -> SipMessage {
    let mut m = SipMessage::request(method, &format!("sip:escalator@{HOST}"));
    m.push_header(
        "Via",
        format!("SIP/2.0/UDP {from_addr};branch=z9hG4bK{tag}{method}{cseq}"),
    );
    m.push_header("Max-Forwards", "70");
    m.push_header(
        "From",
        format!("{};tag={tag}", invite.header("To").unwrap_or_default()),
    );
    m.push_header("To", invite.header("From").unwrap_or_default());
    m.push_header("Call-ID", invite.call_id().unwrap_or_default());
    m.push_header("CSeq", format!("{cseq} {method}"));
    m.set_body(Bytes::new());
    m
}

/// The ACK of a 2xx to an INVITE from the core (`from` with its tag;
/// `host_tag` on the To).
fn ack_from_core(call_id: &str, from: &str, host_tag: &str) -> SipMessage {
    let mut ack = SipMessage::request("ACK", &format!("sip:escalator@{HOST}"));
    ack.push_header(
        "Via",
        format!("SIP/2.0/UDP {CORE};branch=z9hG4bKack{host_tag}"),
    );
    ack.push_header("Max-Forwards", "70");
    ack.push_header("From", from);
    ack.push_header("To", format!("<sip:bob@example.com>;tag={host_tag}"));
    ack.push_header("Call-ID", call_id);
    ack.push_header("CSeq", "1 ACK");
    ack.set_body(Bytes::new());
    ack
}

/// bob's call through the host, confirmed.
struct BobCall {
    /// The host's tag on core-leg' (its To tag toward the core).
    core_leg_tag: String,
    /// The INVITE bob received (his dialog with the host: x5, H).
    at_bob: SipMessage,
}

fn bob_called(rig: &mut Rig, bob_supports_replaces: bool) -> BobCall {
    rig.core_sends(&from_core(
        "c9@esc",
        "<sip:alice@example.com>;tag=h-33",
        &[],
        b"v=0\r\n",
    ));
    let sent = rig.sent();
    assert_eq!(lines(&sent), ["100/INVITE→core", "INVITE→bob"]);
    let at_bob = sent[1].msg.clone();
    let mut ok = reply(&at_bob, 200, "b-88", BOB);
    if bob_supports_replaces {
        ok.push_header("Supported", "timer, replaces");
    }
    rig.bob_sends(&ok);
    let ok = one(&rig.sent(), "200 to the core", |s| {
        s.is_response(200, "INVITE")
    });
    let core_leg_tag = ok.to_tag().expect("the host's tag");
    rig.core_sends(&ack_from_core(
        "c9@esc",
        "<sip:alice@example.com>;tag=h-33",
        &core_leg_tag,
    ));
    assert_eq!(lines(&rig.sent()), ["ACK→bob"]);
    BobCall {
        core_leg_tag,
        at_bob,
    }
}

fn focus_invite(call: &BobCall) -> SipMessage {
    from_core(
        "f1@focus",
        "<sip:conference@example.com>;tag=f-1",
        &[&format!(
            "c9@esc;to-tag={};from-tag=h-33",
            call.core_leg_tag
        )],
        FOCUS_SDP,
    )
}

#[tokio::test(start_paused = true)]
async fn a_client_that_supports_replaces_gets_it_for_its_own_dialog() {
    let mut rig = Rig::new();
    let call = bob_called(&mut rig, true);
    rig.core_sends(&focus_invite(&call));
    let sent = rig.sent();
    assert_eq!(lines(&sent), ["100/INVITE→core", "INVITE→bob"]);
    let join = &sent[1].msg;
    let x5 = call.at_bob.call_id().unwrap_or_default();
    assert_ne!(join.call_id(), Some(x5), "a new dialog for bob");
    assert_eq!(
        join.header("Replaces"),
        Some(
            format!(
                "{x5};to-tag=b-88;from-tag={}",
                call.at_bob.from_tag().unwrap_or_default()
            )
            .as_str()
        ),
        "bob's own dialog: his tag as to-tag, the host's as from-tag"
    );
    assert_eq!(&join.body[..], FOCUS_SDP, "the focus's offer");

    rig.bob_sends(&reply(join, 200, "b-99", BOB));
    let ok = one(&rig.sent(), "200 to the focus", |s| {
        s.is_response(200, "INVITE")
    });
    assert_eq!(ok.call_id(), Some("f1@focus"));

    // bob ends the replaced dialog: it goes on to the core as core-leg's BYE.
    rig.bob_sends(&request_in(&call.at_bob, "b-88", BOB, "BYE", 1));
    let bye = one(&rig.sent(), "BYE to the core", |s| s.is_request("BYE"));
    assert_eq!(bye.call_id(), Some("c9@esc"));
    assert_eq!(bye.to_tag().as_deref(), Some("h-33"));
}

#[tokio::test(start_paused = true)]
async fn a_legacy_client_sees_a_re_invite_and_the_host_ends_the_old_dialog() {
    let mut rig = Rig::new();
    let call = bob_called(&mut rig, false);
    let x5 = call.at_bob.call_id().unwrap_or_default().to_string();
    rig.core_sends(&focus_invite(&call));
    let sent = rig.sent();
    assert_eq!(lines(&sent), ["100/INVITE→core", "INVITE→bob"]);
    let reinvite = &sent[1].msg;
    assert_eq!(reinvite.call_id(), Some(x5.as_str()), "in bob's dialog");
    assert_eq!(reinvite.to_tag().as_deref(), Some("b-88"));
    assert_eq!(
        reinvite.header("Replaces"),
        None,
        "bob does not know Replaces"
    );
    assert_eq!(&reinvite.body[..], FOCUS_SDP, "the focus's offer");

    let mut ok = reply(reinvite, 200, "b-88", BOB);
    ok.push_header("Content-Type", "application/sdp");
    ok.set_body(Bytes::from_static(BOB_SDP));
    rig.bob_sends(&ok);
    let sent = rig.sent();
    assert_eq!(lines(&sent), ["200/INVITE→core", "BYE→core"]);
    assert_eq!(sent[0].msg.call_id(), Some("f1@focus"));
    assert_eq!(
        &sent[0].msg.body[..],
        BOB_SDP,
        "bob's answer answers the focus"
    );
    assert_eq!(sent[1].msg.call_id(), Some("c9@esc"), "core-leg' hung up");
    rig.core_sends(&unproxied_reply(&sent[1].msg, 200));

    // The focus ACKs: bob's re-INVITE is ACKed.
    let focus_tag = sent[0]
        .msg
        .to_tag()
        .expect("the host's tag toward the focus");
    rig.core_sends(&ack_from_core(
        "f1@focus",
        "<sip:conference@example.com>;tag=f-1",
        &focus_tag,
    ));
    let ack = one(&rig.sent(), "ACK to bob", |s| s.is_request("ACK"));
    assert_eq!(ack.call_id(), Some(x5.as_str()));

    // bob's chat now leads to the focus.
    rig.bob_sends(&request_in(&call.at_bob, "b-88", BOB, "MESSAGE", 1));
    let m = one(&rig.sent(), "MESSAGE to the focus", |s| {
        s.is_request("MESSAGE")
    });
    assert_eq!(m.call_id(), Some("f1@focus"));
    assert_eq!(rig.calls(), 1, "one call: bob and the focus");
}

#[tokio::test(start_paused = true)]
async fn a_legacy_client_that_refuses_keeps_its_old_dialog() {
    let mut rig = Rig::new();
    let call = bob_called(&mut rig, false);
    rig.core_sends(&focus_invite(&call));
    let reinvite = one(&rig.sent(), "re-INVITE to bob", |s| s.is_request("INVITE"));
    rig.bob_sends(&reply(&reinvite, 488, "b-88", BOB));
    let sent = rig.sent();
    assert_eq!(
        lines(&sent),
        ["ACK→bob", "488/INVITE→core"],
        "the focus hears the refusal; core-leg' stays"
    );
    assert_eq!(sent[1].msg.call_id(), Some("f1@focus"));
    rig.bob_sends(&request_in(&call.at_bob, "b-88", BOB, "MESSAGE", 1));
    let m = one(&rig.sent(), "MESSAGE to the core", |s| {
        s.is_request("MESSAGE")
    });
    assert_eq!(m.call_id(), Some("c9@esc"), "still the 1-to-1");
}

#[tokio::test(start_paused = true)]
async fn replaces_that_cannot_be_honoured_are_refused() {
    let mut rig = Rig::new();
    let call = bob_called(&mut rig, true);
    let t = call.core_leg_tag.clone();
    let cases: [(&str, Vec<String>, u16); 4] = [
        (
            "no such dialog",
            vec!["c9@esc;to-tag=nope;from-tag=h-33".into()],
            481,
        ),
        (
            "wrong remote tag",
            vec![format!("c9@esc;to-tag={t};from-tag=mallory")],
            481,
        ),
        (
            "early-only on a confirmed dialog",
            vec![format!("c9@esc;to-tag={t};from-tag=h-33;early-only")],
            486,
        ),
        (
            "two Replaces",
            vec![
                format!("c9@esc;to-tag={t};from-tag=h-33"),
                format!("c9@esc;to-tag={t};from-tag=h-33"),
            ],
            400,
        ),
    ];
    for (i, (what, replaces, status)) in cases.iter().enumerate() {
        let refs: Vec<&str> = replaces.iter().map(String::as_str).collect();
        let inv = from_core(
            &format!("bad{i}@focus"),
            "<sip:conference@example.com>;tag=f-1",
            &refs,
            FOCUS_SDP,
        );
        rig.core_sends(&inv);
        assert_eq!(
            lines(&rig.sent()),
            [
                "100/INVITE→core".to_string(),
                format!("{status}/INVITE→core")
            ],
            "{what}"
        );
    }
    // From the client side, by default: 403.
    let mut from_alice = from_core(
        "client@alice",
        "<sip:alice@example.com>;tag=a-1",
        &[&format!("c9@esc;to-tag={t};from-tag=h-33")],
        FOCUS_SDP,
    );
    from_alice.set_header("Via", format!("SIP/2.0/UDP {ALICE};branch=z9hG4bKa"));
    rig.alice_sends(&from_alice);
    assert_eq!(lines(&rig.sent()), ["100/INVITE→alice", "403/INVITE→alice"]);
    assert_eq!(rig.calls(), 1, "bob's call untouched");
}

/// A response as the core relays it to the host.
fn unproxied_reply(req: &SipMessage, status: u16) -> SipMessage {
    reply(req, status, "h-33", CORE)
}

/// A focus INVITE without an offer (RFC 3725 style): the legacy client
/// gets an offerless re-INVITE, its 200 carries the offer to the focus,
/// and the focus's ACK brings the answer back to it.
#[tokio::test(start_paused = true)]
async fn an_offerless_replacing_invite_becomes_an_offerless_re_invite() {
    let mut rig = Rig::new();
    let call = bob_called(&mut rig, false);
    let mut invite = focus_invite(&call);
    invite.remove_header("Content-Type");
    invite.set_body(Bytes::new());
    rig.core_sends(&invite);
    let reinvite = one(&rig.sent(), "re-INVITE to bob", |s| s.is_request("INVITE"));
    assert!(reinvite.body.is_empty(), "asks bob for an offer");
    let mut ok = reply(&reinvite, 200, "b-88", BOB);
    ok.push_header("Content-Type", "application/sdp");
    ok.set_body(Bytes::from_static(BOB_SDP));
    rig.bob_sends(&ok);
    let sent = rig.sent();
    assert_eq!(lines(&sent), ["200/INVITE→core", "BYE→core"]);
    let to_focus = sent[0].msg.clone();
    assert_eq!(&to_focus.body[..], BOB_SDP, "bob's offer");
    rig.core_sends(&unproxied_reply(&sent[1].msg, 200));
    let mut ack = ack_from_core(
        "f1@focus",
        "<sip:conference@example.com>;tag=f-1",
        &to_focus.to_tag().unwrap_or_default(),
    );
    ack.push_header("Content-Type", "application/sdp");
    ack.set_body(Bytes::from_static(FOCUS_SDP));
    rig.core_sends(&ack);
    let at_bob = one(&rig.sent(), "ACK to bob", |s| s.is_request("ACK"));
    assert_eq!(&at_bob.body[..], FOCUS_SDP, "the focus's answer");
}
