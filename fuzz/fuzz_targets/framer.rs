//! bytes as a TCP stream -> `framing::Framer`, fed in two chunks split at a
//! position taken from the first two input bytes. Asserts that framer and
//! parser agree on every boundary:
//! - every framed message is what `SipMessage::parse` reads from the same
//!   raw bytes, with a body of exactly the declared Content-Length;
//! - the framed raw bytes are a prefix of what remains of the stream (after
//!   CRLF keep-alives), so the next message starts right after it;
//! - a header section the framer refuses as malformed, the parser refuses too;
//! - feeding in two chunks frames the same messages as feeding at once.
#![no_main]

use escalator_sip::framing::{Framed, Framer, FramingError};
use escalator_sip::message::{ParseLimits, SipMessage};
use libfuzzer_sys::fuzz_target;

/// Small enough that `TooLarge` is reachable with fuzzer-sized inputs.
const MAX_MESSAGE: usize = 1024;

/// What one feeding produced: the messages cut, and how it ended.
struct Run {
    framed: Vec<Framed>,
    error: Option<FramingError>,
}

fn drain(f: &mut Framer, run: &mut Run) -> bool {
    loop {
        match f.next_message() {
            Ok(Some(m)) => run.framed.push(m),
            Ok(None) => return true,
            Err(e) => {
                run.error = Some(e);
                return false;
            }
        }
    }
}

fn feed(chunks: &[&[u8]]) -> Run {
    let limits = ParseLimits::default();
    let mut f = Framer::new(MAX_MESSAGE, limits);
    let mut run = Run { framed: Vec::new(), error: None };
    for c in chunks {
        f.push(c);
        if !drain(&mut f, &mut run) {
            break;
        }
    }
    run
}

fn skip_keepalives(mut s: &[u8]) -> &[u8] {
    while let Some(rest) = s.strip_prefix(b"\r\n") {
        s = rest;
    }
    s
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let stream = &data[2..];
    let cut = usize::from(u16::from_le_bytes([data[0], data[1]])) % (stream.len() + 1);
    let limits = ParseLimits::default();

    let split = feed(&[&stream[..cut], &stream[cut..]]);
    let mut rest = stream;
    for Framed { raw, message } in &split.framed {
        rest = skip_keepalives(rest);
        assert!(
            rest.starts_with(raw),
            "framed bytes are not the next bytes of the stream\nframed: {raw:?}\nstream: {rest:?}"
        );
        let parsed = SipMessage::parse(raw, limits)
            .unwrap_or_else(|e| panic!("framed but unparseable ({e:?}): {raw:?}"));
        assert_eq!(message, &parsed, "the framer's reading is not the parser's: {raw:?}");
        let declared = parsed.content_length().unwrap().expect("framed without Content-Length");
        assert_eq!(parsed.body.len(), declared, "body is not the declared length: {raw:?}");
        rest = &rest[raw.len()..];
    }
    if let Some(FramingError::Malformed(e)) = &split.error {
        let rest = skip_keepalives(rest);
        assert!(
            SipMessage::parse(rest, limits).is_err(),
            "framer refuses the head ({e:?}) but the parser reads it: {rest:?}"
        );
    }

    let whole = feed(&[stream]);
    let raws = |r: &Run| r.framed.iter().map(|m| m.raw.clone()).collect::<Vec<_>>();
    assert_eq!(raws(&split), raws(&whole), "framing depends on where the stream was cut (at {cut})");
    assert_eq!(
        split.error.is_some(),
        whole.error.is_some(),
        "cut at {cut}: {:?} vs at once: {:?}",
        split.error,
        whole.error
    );
});
