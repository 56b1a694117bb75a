//! Torture messages in the spirit of RFC 4475: what must parse, and what must
//! be refused with a clear reason (never a panic).

use escalator_host::forward::{next_max_forwards, validate_request};
use escalator_host::transport::{parse_inbound, InboundError, Limits};

fn crlf(s: &str) -> String {
    s.replace('\n', "\r\n")
}

/// Whitespace, folding, odd capitalisation, compact forms (RFC 4475 3.1.1.1 "wsinv").
#[test]
fn wide_range_of_valid_whitespace_is_accepted() {
    let body = "v=0\r\no=mhandley 29739 7272939 IN IP4 192.0.2.3\r\ns=-\r\nc=IN IP4 192.0.2.4\r\nt=0 0\r\nm=audio 49217 RTP/AVP 0 12\r\n";
    let head = crlf(&format!(
        "INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0
TO :
 sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n
from   : \"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>
  ;
  tag = 98asjd8
MaX-fOrWaRdS: 0068
Call-ID: wsinv.ndaksdj@192.0.2.1
Content-Length   : {}
cseq: 0009
  INVITE
Via  : SIP  /   2.0
 /UDP
    192.0.2.2;branch=390skdjuw
s :
NewFangledHeader:   newfangled value
 continued newfangled value
UnknownHeaderWithUnusualValue: ;;,,;;,;
Content-Type: application/sdp
Route:
 <sip:services.example.com;lr;unknownwith=value;unknown-no-value>
v:  SIP  / 2.0  / TCP     spindle.example.com   ;
  branch  =   z9hG4bK9ikj8  ,
 SIP  /    2.0   / UDP  192.168.255.111   ; branch=
 z9hG4bK30239
m:\"Quoted string \\\"\\\"\" <sip:jdrosen@example.com> ; newparam =
      newvalue ;
  secondparam ; q = 0.33

",
        body.len()
    ));
    let raw = format!("{head}{body}");
    let m = parse_inbound(raw.as_bytes(), Limits::default()).expect("parses");
    validate_request(&m).expect("valid");
    assert_eq!(m.cseq(), Some((9, "INVITE".into())));
    assert_eq!(m.from_tag().as_deref(), Some("98asjd8"));
    assert_eq!(m.to_tag().as_deref(), Some("1918181833n"));
    assert_eq!(next_max_forwards(&m), Some(67));
    assert_eq!(m.header_values("Via").len(), 3);
    assert_eq!(m.top_via().unwrap().branch(), Some("390skdjuw"));
    assert_eq!(
        m.header("NewFangledHeader"),
        Some("newfangled value continued newfangled value")
    );
    assert_eq!(m.header("UnknownHeaderWithUnusualValue"), Some(";;,,;;,;"));
    assert_eq!(&m.body[..], body.as_bytes());
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
        ("Via without branch", ";branch=z9hG4bKkdjuw", ""),
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
