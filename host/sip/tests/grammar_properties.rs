//! Properties of the one grammar, over generated messages with hostile
//! parts (bare CR/LF, control bytes, folds, compact and repeated headers,
//! signed or spaced lengths), bounded so `cargo test` stays quick:
//!
//! - framer and parser agree: whatever the stream framer cuts, the parser
//!   reads to the same boundary (body exactly the declared length), and
//!   the next message starts right after it, however the bytes arrive;
//! - whatever parses re-serializes to bytes that parse to the same message
//!   (what the host forwards re-parses under the same grammar) and carry
//!   no CR, LF or control byte inside a line.

use escalator_sip::framing::{Framed, Framer};
use escalator_sip::message::{ParseLimits, SipMessage};
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("Content-Length".to_string()),
        Just("l".to_string()),
        Just("Call-ID".to_string()),
        Just("i".to_string()),
        Just("From".to_string()),
        Just("Via".to_string()),
        Just("X-Any".to_string()),
        Just("Subject".to_string()),
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9 ;=@.:<>]{0,12}",
        Just("3".to_string()),
        Just("+3".to_string()),
        Just("0".to_string()),
        Just("ok\rInjected: yes".to_string()),
        Just("ok\nInjected: yes".to_string()),
        Just("a\u{0}b".to_string()),
        Just("\u{1b}[2J".to_string()),
        Just("x\r\n y".to_string()), // a fold
        Just("466\r\n l: 0".to_string()),
    ]
}

fn message() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec((name(), value()), 0..6),
        "[a-z]{0,8}",
        prop::option::of(0usize..12),
    )
        .prop_map(|(headers, body, length)| {
            let mut m = String::from("MESSAGE sip:a@example.com SIP/2.0\r\n");
            for (n, v) in headers {
                m.push_str(&format!("{n}: {v}\r\n"));
            }
            if let Some(l) = length {
                m.push_str(&format!("Content-Length: {l}\r\n"));
            }
            m.push_str("\r\n");
            m.push_str(&body);
            m.into_bytes()
        })
}

const NEXT: &[u8] = b"OPTIONS sip:next@example.com SIP/2.0\r\nContent-Length: 0\r\n\r\n";

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn framer_and_parser_agree_on_every_boundary(msg in message(), cut in 0usize..200) {
        let mut stream = msg.clone();
        stream.extend_from_slice(NEXT);
        let cut = cut.min(stream.len());
        let mut f = Framer::new(64 * 1024, ParseLimits::default());
        f.push(&stream[..cut]);
        let mut first = f.next_message();
        f.push(&stream[cut..]);
        if let Ok(None) = first {
            first = f.next_message();
        }
        if let Ok(Some(Framed { raw: framed, message })) = first {
            let parsed = SipMessage::parse(&framed, ParseLimits::default());
            prop_assert!(parsed.is_ok(), "framed but unparseable: {:?}", parsed);
            let parsed = parsed.unwrap();
            prop_assert_eq!(&message, &parsed, "the framer's reading is the parser's");
            let declared = parsed.content_length().unwrap().unwrap();
            prop_assert_eq!(parsed.body.len(), declared, "the parser reads what was framed");
            let head_len = framed.len() - declared;
            prop_assert_eq!(&stream[..framed.len()], &framed[..], "framed from the start");
            prop_assert!(head_len > 0);
            // The rest of the stream is the rest of the stream: what the
            // framer hands on next starts where this one ended.
            let rest = &stream[framed.len()..];
            if rest.starts_with(b"OPTIONS") {
                let next = f.next_message();
                prop_assert!(matches!(&next, Ok(Some(n)) if n.raw.starts_with(b"OPTIONS sip:next")), "{:?}", next);
            }
        }
    }

    #[test]
    fn what_parses_reparses_the_same_and_carries_no_stray_bytes(msg in message()) {
        if let Ok(parsed) = SipMessage::parse(&msg, ParseLimits::default()) {
            let out = parsed.to_bytes();
            let again = SipMessage::parse(&out, ParseLimits::default());
            prop_assert!(again.is_ok(), "forwarded bytes do not reparse: {:?}", again);
            let again = again.unwrap();
            prop_assert_eq!(&again.headers, &parsed.headers);
            prop_assert_eq!(&again.body, &parsed.body);
            let head_end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
            for line in out[..head_end].split(|b| *b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                prop_assert!(
                    !line.iter().any(|b| (*b < 0x20 && *b != b'\t') || *b == 0x7f),
                    "stray byte in {:?}", String::from_utf8_lossy(line)
                );
            }
        }
    }
}
