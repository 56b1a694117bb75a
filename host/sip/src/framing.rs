//! Message framing on stream transports (RFC 3261 section 18.3): the header
//! section ends at the first blank line and Content-Length gives the body size.

use super::message::{header_end, ParseError, ParseLimits, SipMessage};
use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FramingError {
    #[error("message exceeds {0} bytes")]
    TooLarge(usize),
    #[error("stream message without a Content-Length")]
    NoContentLength,
    /// The header section does not parse: its end (and so the next
    /// message's start) cannot be trusted.
    #[error("malformed header section: {0}")]
    Malformed(#[from] ParseError),
}

/// Accumulates stream bytes and yields complete messages.
#[derive(Debug)]
pub struct Framer {
    buf: BytesMut,
    max_message: usize,
    limits: ParseLimits,
}

/// One message cut from the stream: its bytes, and the message the parser
/// read from them while cutting (no second parse needed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framed {
    pub raw: Bytes,
    pub message: SipMessage,
}

impl Framer {
    /// `limits`: the parser's, so that framer and parser refuse the same.
    pub fn new(max_message: usize, limits: ParseLimits) -> Self {
        Self {
            buf: BytesMut::with_capacity(4096),
            max_message,
            limits,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The bytes not framed yet (after an error: the message refused, for
    /// an answer before the connection closes).
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// The next complete message, if the buffer holds one. After an error the
    /// stream cannot be resynchronised and the connection should be closed.
    pub fn next_message(&mut self) -> Result<Option<Framed>, FramingError> {
        // CRLF keep-alives (RFC 5626 section 3.5.1) between messages.
        while self.buf.starts_with(b"\r\n") {
            self.buf.advance(2);
        }
        let Some(head_len) = header_end(&self.buf) else {
            if self.buf.len() > self.max_message {
                return Err(FramingError::TooLarge(self.max_message));
            }
            return Ok(None);
        };
        // The parser's own reading of the head (folding, compact forms, one
        // Content-Length, digits only): what the framer cuts is what the
        // parser reads.
        let (mut head, _) = SipMessage::parse_head(&self.buf[..head_len], self.limits)?;
        let body_len = head
            .content_length()?
            .ok_or(FramingError::NoContentLength)?;
        let total = head_len
            .checked_add(body_len)
            .ok_or(FramingError::TooLarge(self.max_message))?;
        if total > self.max_message {
            return Err(FramingError::TooLarge(self.max_message));
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        let raw = self.buf.split_to(total).freeze();
        head.body = raw.slice(head_len..);
        Ok(Some(Framed { raw, message: head }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_and_coalesced_messages() {
        let one = "OPTIONS sip:a SIP/2.0\r\nl: 3\r\n\r\nabc";
        let two = "OPTIONS sip:b SIP/2.0\r\nContent-Length: 0\r\n\r\n";
        let mut f = Framer::new(1000, ParseLimits::default());
        f.push(b"\r\n\r\n");
        f.push(&one.as_bytes()[..10]);
        assert_eq!(f.next_message(), Ok(None));
        f.push(&one.as_bytes()[10..]);
        f.push(two.as_bytes());
        assert_eq!(f.next_message().unwrap().unwrap().raw, one.as_bytes());
        assert_eq!(f.next_message().unwrap().unwrap().raw, two.as_bytes());
        assert_eq!(f.next_message(), Ok(None));
    }

    #[test]
    fn enforces_limits_and_content_length() {
        let mut f = Framer::new(64, ParseLimits::default());
        f.push(b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 100\r\n\r\n");
        assert_eq!(f.next_message(), Err(FramingError::TooLarge(64)));
        let mut f = Framer::new(64, ParseLimits::default());
        f.push(&[b'x'; 65]);
        assert_eq!(f.next_message(), Err(FramingError::TooLarge(64)));
        let mut f = Framer::new(1000, ParseLimits::default());
        f.push(b"OPTIONS sip:a SIP/2.0\r\n\r\n");
        assert_eq!(f.next_message(), Err(FramingError::NoContentLength));
    }

    #[test]
    fn a_folded_length_cannot_smuggle_a_second_request() {
        // The fold joins " l: 0" to Content-Length: the value is "466 l: 0",
        // not a length; the stream cannot be trusted after it.
        let smuggled = "INVITE sip:smuggled@example.com SIP/2.0\r\nContent-Length: 0\r\n\r\n";
        let outer = format!(
            "INVITE sip:a@example.com SIP/2.0\r\nContent-Length: 466\r\n l: 0\r\n\r\n{smuggled}"
        );
        let mut f = Framer::new(4096, ParseLimits::default());
        f.push(outer.as_bytes());
        assert!(matches!(
            f.next_message(),
            Err(FramingError::Malformed(ParseError::ContentLength(_)))
        ));
    }

    #[test]
    fn framer_and_parser_agree_on_the_length() {
        for (head, body) in [
            ("l: 3", "abc"),
            ("Content-Length:\r\n 3", "abc"),
            ("CONTENT-LENGTH: 3", "abc"),
        ] {
            let msg = format!("MESSAGE sip:a SIP/2.0\r\n{head}\r\n\r\n{body}NEXT");
            let mut f = Framer::new(4096, ParseLimits::default());
            f.push(msg.as_bytes());
            let Framed { raw, message } = f.next_message().unwrap().unwrap();
            let parsed = SipMessage::parse(&raw, ParseLimits::default()).unwrap();
            assert_eq!(&parsed.body[..], body.as_bytes(), "{head}");
            assert_eq!(
                message, parsed,
                "{head}: the framer's reading is the parser's"
            );
            assert_eq!(
                raw.len(),
                msg.len() - 4,
                "{head}: the next message starts at NEXT"
            );
        }
        for bad in ["l: +3", "l: 3\r\nContent-Length: 4", "l: 3 3"] {
            let mut f = Framer::new(4096, ParseLimits::default());
            f.push(format!("MESSAGE sip:a SIP/2.0\r\n{bad}\r\n\r\nabcd").as_bytes());
            assert!(
                matches!(f.next_message(), Err(FramingError::Malformed(_))),
                "{bad}"
            );
        }
    }
}
