//! The edge forwards only what is well-formed. Each request below breaks
//! the grammar in one way a peer could read differently from the host (an
//! injected header, an ambiguous singular header, a signed length); the
//! host answers 400 with a well-formed Warning naming the problem and sends
//! nothing toward the core. A repeated singular header with the same value
//! is merged and the request goes on.

mod support;
use support::*;

const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKgram{n}\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.com>;tag=a1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: gram{n}@alice\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@127.0.0.1:5061>\r\n\
{extra}Content-Length: 0\r\n\r\n";

fn invite(n: usize, extra: &str) -> Vec<u8> {
    INVITE
        .replace("{n}", &n.to_string())
        .replace("{extra}", extra)
        .into_bytes()
}

/// A Warning that is one well-formed `399 agent "text"`.
fn well_formed_warning(w: &str) -> bool {
    let Some(text) = w
        .strip_prefix("399 escalator \"")
        .and_then(|t| t.strip_suffix('"'))
    else {
        return false;
    };
    !text.contains('"') && !text.chars().any(char::is_control)
}

#[tokio::test(start_paused = true)]
async fn malformed_requests_get_400_with_a_clear_warning_and_go_nowhere() {
    let mut rig = Rig::new();
    let cases: &[(&str, &str, &str)] = &[
        (
            "bare CR in a value",
            "X-A: ok\rInjected: yes\r\n",
            "CR or LF",
        ),
        (
            "bare LF in a value",
            "X-A: ok\nInjected: yes\r\n",
            "CR or LF",
        ),
        ("NUL in a value", "X-A: a\0b\r\n", "control character"),
        ("ESC in a value", "X-A: \u{1b}[2J\r\n", "control character"),
        ("BEL in a value", "X-A: \u{7}\r\n", "control character"),
        ("DEL in a value", "X-A: \u{7f}\r\n", "control character"),
        (
            "two lengths",
            "Content-Length: 13\r\n",
            "Content-Length appears more than once",
        ),
        (
            "two Call-IDs",
            "i: other@alice\r\n",
            "Call-ID appears more than once",
        ),
        (
            "two CSeqs",
            "CSeq: 2 INVITE\r\n",
            "CSeq appears more than once",
        ),
        (
            "two Froms",
            "f: <sip:eve@example.com>;tag=e\r\n",
            "From appears more than once",
        ),
        (
            "two Content-Types",
            "Content-Type: a/b\r\nc: c/d\r\n",
            "Content-Type appears more than once",
        ),
    ];
    for (n, (what, extra, says)) in cases.iter().enumerate() {
        rig.alice_sends_raw(&invite(n, extra));
        let sent = rig.sent();
        assert_eq!(
            lines(&sent),
            ["400/INVITE→alice"],
            "{what}: refused, nothing to the core"
        );
        let w = sent[0]
            .msg
            .header("Warning")
            .unwrap_or_default()
            .to_string();
        assert!(w.contains(says), "{what}: {w}");
        assert!(well_formed_warning(&w), "{what}: {w}");
    }
    assert_eq!(rig.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn content_length_is_digits_only() {
    let mut rig = Rig::new();
    for (n, value) in ["+0", "-999", "0x0", "1 2"].iter().enumerate() {
        let bytes = String::from_utf8(invite(100 + n, ""))
            .unwrap()
            .replace("Content-Length: 0", &format!("Content-Length: {value}"));
        rig.alice_sends_raw(bytes.as_bytes());
        let sent = rig.sent();
        assert_eq!(lines(&sent), ["400/INVITE→alice"], "{value:?}");
        let w = sent[0]
            .msg
            .header("Warning")
            .unwrap_or_default()
            .to_string();
        assert!(well_formed_warning(&w), "{value:?}: {w}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_repeated_singular_header_with_the_same_value_is_merged() {
    let mut rig = Rig::new();
    rig.alice_sends_raw(&invite(
        200,
        "Call-ID: gram200@alice\r\nMax-Forwards: 70\r\n",
    ));
    let sent = rig.sent();
    assert_eq!(lines(&sent), ["100/INVITE→alice", "INVITE→core"]);
    assert_eq!(sent[1].msg.header_values("Call-ID").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn start_lines_and_request_uris_get_the_status_rfc_3261_names() {
    let mut rig = Rig::new();
    let start = "INVITE sip:bob@example.com SIP/2.0";
    let cases: &[(&str, &str, &str)] = &[
        ("INVITE <sip:bob@example.com> SIP/2.0", "", "400"),
        (
            "INVITE sip:bob@example.com?Route=%3Csip:evil%3E SIP/2.0",
            "",
            "400",
        ),
        ("INVITE foo:bob SIP/2.0", "", "416"),
        ("INVITE sip:bob@example.com SIP/7.0", "", "505"),
        ("INVITE  sip:bob@example.com SIP/2.0", "", "400"),
        ("INVITE sip:bob@example.com SIP/2.0 ", "", "400"),
        (start, "Contact: *\r\n", "400"),
    ];
    for (n, (line, extra, status)) in cases.iter().enumerate() {
        let bytes = String::from_utf8(invite(300 + n, extra))
            .unwrap()
            .replacen(start, line, 1);
        rig.alice_sends_raw(bytes.as_bytes());
        let sent = rig.sent();
        assert_eq!(
            lines(&sent),
            [format!("{status}/INVITE→alice")],
            "{line:?} {extra:?}"
        );
    }
    assert_eq!(rig.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn too_many_headers_and_bytes_that_are_not_utf8_get_400() {
    let mut rig = Rig::new();
    let many: String = (0..300).map(|i| format!("X-N{i}: {i}\r\n")).collect();
    rig.alice_sends_raw(&invite(400, &many));
    assert_eq!(
        lines(&rig.sent()),
        ["400/INVITE→alice"],
        "more than max_headers"
    );
    let mut bytes = invite(401, "X-Name: caf\u{e9}\r\n");
    let at = bytes
        .windows(4)
        .position(|w| w == "caf\u{e9}".as_bytes().get(..4).unwrap_or_default())
        .expect("the value");
    bytes[at + 3] = 0xff; // a byte that is no UTF-8
    rig.alice_sends_raw(&bytes);
    assert_eq!(lines(&rig.sent()), ["400/INVITE→alice"], "not UTF-8");
}

#[tokio::test(start_paused = true)]
async fn each_refusal_is_counted_by_its_reason() {
    use metrics_util::debugging::DebuggingRecorder;
    let recorder = DebuggingRecorder::new();
    let snapshots = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let mut rig = Rig::new();
    rig.alice_sends_raw(&invite(500, "X-A: ok\rInjected: yes\r\n"));
    rig.alice_sends_raw(&invite(501, "Content-Length: 13\r\n"));
    let scheme = String::from_utf8(invite(502, "")).unwrap().replacen(
        "sip:bob@example.com SIP",
        "foo:bob SIP",
        1,
    );
    rig.alice_sends_raw(scheme.as_bytes());
    rig.sent();
    let reasons = counted_by(&snapshots, "escalator_sip_parse_errors_total", "reason");
    assert_eq!(
        reasons,
        [
            ("bare-line-break".to_string(), 1),
            ("duplicate-header".to_string(), 1),
            ("uri-scheme".to_string(), 1)
        ]
    );
}
