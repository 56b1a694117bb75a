//! Message framing on stream transports (RFC 3261 section 18.3): the header
//! section ends at the first blank line and Content-Length gives the body size.

use super::message::{header_end, name_is};
use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FramingError {
    #[error("message exceeds {0} bytes")]
    TooLarge(usize),
    #[error("stream message without a valid Content-Length")]
    NoContentLength,
}

/// Accumulates stream bytes and yields complete messages.
#[derive(Debug)]
pub struct Framer {
    buf: BytesMut,
    max_message: usize,
}

impl Framer {
    pub fn new(max_message: usize) -> Self {
        Self {
            buf: BytesMut::with_capacity(4096),
            max_message,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete message, if the buffer holds one. After an error the
    /// stream cannot be resynchronised and the connection should be closed.
    pub fn next_message(&mut self) -> Result<Option<Bytes>, FramingError> {
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
        let head = std::str::from_utf8(&self.buf[..head_len])
            .map_err(|_| FramingError::NoContentLength)?;
        let body_len = content_length(head).ok_or(FramingError::NoContentLength)?;
        let total = head_len
            .checked_add(body_len)
            .ok_or(FramingError::TooLarge(self.max_message))?;
        if total > self.max_message {
            return Err(FramingError::TooLarge(self.max_message));
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        Ok(Some(self.buf.split_to(total).freeze()))
    }
}

fn content_length(head: &str) -> Option<usize> {
    head.split('\n').skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name_is(name.trim(), "Content-Length").then(|| value.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_and_coalesced_messages() {
        let one = "OPTIONS sip:a SIP/2.0\r\nl: 3\r\n\r\nabc";
        let two = "OPTIONS sip:b SIP/2.0\r\nContent-Length: 0\r\n\r\n";
        let mut f = Framer::new(1000);
        f.push(b"\r\n\r\n");
        f.push(&one.as_bytes()[..10]);
        assert_eq!(f.next_message(), Ok(None));
        f.push(&one.as_bytes()[10..]);
        f.push(two.as_bytes());
        assert_eq!(f.next_message().unwrap().unwrap(), one.as_bytes());
        assert_eq!(f.next_message().unwrap().unwrap(), two.as_bytes());
        assert_eq!(f.next_message(), Ok(None));
    }

    #[test]
    fn enforces_limits_and_content_length() {
        let mut f = Framer::new(64);
        f.push(b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 100\r\n\r\n");
        assert_eq!(f.next_message(), Err(FramingError::TooLarge(64)));
        let mut f = Framer::new(64);
        f.push(&[b'x'; 65]);
        assert_eq!(f.next_message(), Err(FramingError::TooLarge(64)));
        let mut f = Framer::new(1000);
        f.push(b"OPTIONS sip:a SIP/2.0\r\n\r\n");
        assert_eq!(f.next_message(), Err(FramingError::NoContentLength));
    }
}
