//! The host's message path without sockets: a typical INVITE from a client
//! is parsed, checked and rewritten into the core-side leg's INVITE, and the
//! 200 OK coming back is rewritten for the client. These are the pure steps
//! the core runs per message (`cargo bench -p escalator-host`).

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use escalator_host::dialog::{new_branch, new_call_id, new_tag, Dialog};
use escalator_host::forward::{
    contact_value, copy_end_to_end, next_max_forwards, response_to, validate_request, via_value,
    without_tag,
};
use escalator_host::transport::{parse_inbound, Limits, Proto, Target};
use std::hint::black_box;

const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:bob@example.com>\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@192.0.2.10\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@192.0.2.10:5060>;+g.oma.sip-im\r\n\
Accept-Contact: *;+g.oma.sip-im\r\n\
User-Agent: OldIM/1.2\r\n\
Supported: timer\r\n\
Allow: INVITE, ACK, CANCEL, BYE, MESSAGE, NOTIFY, REFER\r\n\
Content-Type: application/sdp\r\n";

const SDP: &str = "v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=message 7654 TCP/MSRP *\r\na=accept-types:text/plain\r\na=path:msrp://192.0.2.10:7654/jshA7we;tcp\r\n";

fn typical_invite() -> Vec<u8> {
    format!("{INVITE}Content-Length: {}\r\n\r\n{SDP}", SDP.len()).into_bytes()
}

fn forward_invite(raw: &[u8]) -> Bytes {
    let req = parse_inbound(raw, Limits::default()).expect("valid");
    validate_request(&req).expect("valid");
    let mf = next_max_forwards(&req).unwrap_or(70);
    let core = Target {
        proto: Proto::Udp,
        addr: "10.0.0.3:5060".parse().unwrap(),
        conn: None,
    };
    let local = "10.0.0.2:5060".parse().unwrap();
    let mut leg_b = Dialog {
        call_id: new_call_id(0),
        local_tag: new_tag(),
        remote_tag: None,
        local_uri: req
            .header("From")
            .and_then(without_tag)
            .unwrap()
            .to_string(),
        remote_uri: req.header("To").and_then(without_tag).unwrap().to_string(),
        local_cseq: 0,
        remote_cseq: None,
        remote_target: req.request_uri().unwrap().to_string(),
        route_set: vec![],
        dest: core,
        last_offer: None,
        last_answer: None,
        peer_supports_replaces: false,
    };
    let mut out = leg_b.new_request(&escalator_host::sip::Method::Invite);
    copy_end_to_end(&req, &mut out, false);
    leg_b.record_sdp(&out);
    out.headers.insert(
        0,
        escalator_host::sip::Header {
            name: "Via".into(),
            value: via_value(Proto::Udp, local, &new_branch()),
        },
    );
    out.push_header("Max-Forwards", mf.to_string());
    out.push_header("Contact", contact_value(Proto::Udp, local));
    out.to_bytes()
}

fn relay_ok(invite: &escalator_host::sip::SipMessage, raw_ok: &[u8]) -> Bytes {
    let ok = parse_inbound(raw_ok, Limits::default()).expect("valid");
    let mut out = response_to(invite, 200, "OK", Some("a-tag"));
    out.push_header("Contact", "<sip:10.0.0.2:5060>");
    copy_end_to_end(&ok, &mut out, false);
    out.to_bytes()
}

fn bench(c: &mut Criterion) {
    let invite_bytes = typical_invite();
    let raw = &invite_bytes[..];
    c.bench_function("parse + forward INVITE (client -> core leg)", |b| {
        b.iter(|| forward_invite(black_box(raw)))
    });
    let forwarded = forward_invite(raw);
    let invite = parse_inbound(raw, Limits::default()).unwrap();
    let fwd = parse_inbound(&forwarded, Limits::default()).unwrap();
    let mut ok = response_to(&fwd, 200, "OK", Some("bob-tag"));
    ok.push_header("Contact", "<sip:bob@10.0.0.9>");
    ok.push_header("Content-Type", "application/sdp");
    ok.set_body(invite.body.clone());
    let raw_ok = ok.to_bytes();
    c.bench_function("parse + relay 200 OK (core leg -> client)", |b| {
        b.iter(|| relay_ok(black_box(&invite), black_box(&raw_ok)))
    });
    c.bench_function("parse INVITE only", |b| {
        b.iter(|| parse_inbound(black_box(raw), Limits::default()).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
