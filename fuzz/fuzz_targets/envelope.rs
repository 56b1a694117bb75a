//! bytes -> `SipMessage::parse`; whatever parses must re-serialize
//! (`to_bytes`, what the host forwards) to bytes that parse again under the
//! same grammar to the same start line, headers and body, whose head has
//! CRLF line ends only and no control byte but HTAB inside a line, and
//! whose second serialization is byte-identical to the first.
#![no_main]

use escalator_sip::message::{header_end, ParseLimits, SipMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = ParseLimits::default();
    let Ok(msg) = SipMessage::parse(data, limits) else {
        return;
    };
    let out = msg.to_bytes();
    let again = match SipMessage::parse(&out, limits) {
        Ok(m) => m,
        Err(e) => panic!("forwarded bytes do not reparse: {e:?}\nforwarded: {out:?}"),
    };
    assert_eq!(again.headers, msg.headers, "headers change across to_bytes: {out:?}");
    assert_eq!(again.body, msg.body, "body changes across to_bytes: {out:?}");
    assert_eq!(again.start, msg.start, "start line changes across to_bytes: {out:?}");

    // The head is everything before the body; it must end where a reader
    // of the forwarded bytes ends it.
    let head_len = out.len() - msg.body.len();
    let head = &out[..head_len];
    assert!(head.ends_with(b"\r\n\r\n"), "head does not end with a blank line: {out:?}");
    assert_eq!(header_end(&out), Some(head_len), "forwarded head ends elsewhere: {out:?}");
    for line in head[..head_len - 2].split(|&b| b == b'\n') {
        if line.is_empty() {
            continue; // after the last CRLF
        }
        let line = line
            .strip_suffix(b"\r")
            .unwrap_or_else(|| panic!("bare LF in forwarded head: {out:?}"));
        assert!(
            !line.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f),
            "bare CR or control byte in forwarded line {:?}",
            String::from_utf8_lossy(line)
        );
    }
    assert_eq!(again.to_bytes(), out, "second serialization differs");
});
