//! Torture messages in the spirit of RFC 4475 at the parser and validation
//! level: what must be refused with a clear reason (never a panic). The
//! whole RFC 4475 §3 table, over UDP and TCP through a running host, is
//! `tests/torture.rs`.

use escalator_host::forward::validate_request;
use escalator_host::transport::{parse_inbound, InboundError, Limits};

fn crlf(s: &str) -> String {
    s.replace('\n', "\r\n")
}

const BASE: &str = "OPTIONS sip:user@example.com SIP/2.0
Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw
Max-Forwards: 70
From: <sip:caller@example.net>;tag=3
To: <sip:user@example.com>
Call-ID: torture@example.net
CSeq: 8 OPTIONS
Content-Length: 0

";

#[test]
fn invalid_messages_are_refused_with_a_reason() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "scalar02 (CSeq overflow)",
            "CSeq: 8 OPTIONS",
            "CSeq: 36893488147419103232 OPTIONS",
        ),
        ("insuf (no To)", "To: <sip:user@example.com>\n", ""),
        (
            "mismatch01 (CSeq method)",
            "CSeq: 8 OPTIONS",
            "CSeq: 8 INVITE",
        ),
        (
            "unterminated name-addr",
            "From: <sip:caller@example.net>;tag=3",
            "From: <sip:caller@example.net;tag=3",
        ),
        (
            "badbranch (the magic cookie alone)",
            ";branch=z9hG4bKkdjuw",
            ";branch=z9hG4bK",
        ),
    ];
    for (name, from, to) in cases {
        let raw = crlf(&BASE.replace(from, to));
        let m = parse_inbound(raw.as_bytes(), Limits::default()).expect("headers parse");
        assert!(validate_request(&m).is_err(), "{name} must be refused");
    }
}

#[test]
fn broken_framing_keeps_headers_for_a_400() {
    for (name, cl) in [("ncl (negative)", "-999"), ("clerr (too long)", "9999")] {
        let raw = crlf(&BASE.replace("Content-Length: 0", &format!("Content-Length: {cl}")));
        match parse_inbound(raw.as_bytes(), Limits::default()) {
            Err(InboundError::BadMessage { head, .. }) => {
                assert_eq!(head.call_id(), Some("torture@example.net"), "{name}")
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn broken_start_lines_are_answered_not_dropped() {
    // RFC 4475 §3.1.2.8 badvers: 505; lwsruri and a missing version: 400.
    for (name, line, want) in [
        ("badvers", "OPTIONS sip:t@example.com SIP/7.0", 505),
        ("lwsruri", "OPTIONS  sip:t@example.com SIP/2.0", 400),
        ("no version", "OPTIONS sip:t@example.com", 400),
    ] {
        let raw = crlf(&BASE.replace("OPTIONS sip:user@example.com SIP/2.0", line));
        match parse_inbound(raw.as_bytes(), Limits::default()) {
            Err(InboundError::BadMessage { status, head, .. }) => {
                assert_eq!(status, want, "{name}");
                assert_eq!(head.call_id(), Some("torture@example.net"), "{name}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn unknown_request_uri_scheme_gets_416() {
    // RFC 4475 §3.3.4 unkscm: RFC 3261 §8.2.2.1 wants 416.
    let raw = crlf(&BASE.replace(
        "sip:user@example.com SIP",
        "nobodyknowsthisscheme:totallyopaque SIP",
    ));
    let m = parse_inbound(raw.as_bytes(), Limits::default()).unwrap();
    assert_eq!(validate_request(&m).map_err(|r| r.status), Err(416));
}
