//! multipart/mixed bodies (RFC 2046 section 5.1): the conference INVITE's
//! SDP + resource-list, and multi-target REFER bodies. The CRLF before each
//! delimiter belongs to the delimiter, so every part's content is kept
//! byte for byte.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Part {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MultipartError {
    #[error("Content-Type has no boundary parameter")]
    NoBoundary,
    #[error("no closing delimiter")]
    Unterminated,
    #[error("malformed part headers")]
    BadPart,
}

pub fn build(parts: &[Part], boundary: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        for (n, v) in &p.headers {
            out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&p.body);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

/// The `boundary` parameter of a multipart Content-Type.
pub fn boundary_of(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

pub fn split(body: &[u8], content_type: &str) -> Result<Vec<Part>, MultipartError> {
    let boundary = boundary_of(content_type).ok_or(MultipartError::NoBoundary)?;
    let first = format!("--{boundary}");
    let delim = format!("\r\n--{boundary}");
    let mut pos = if body.starts_with(first.as_bytes()) {
        first.len()
    } else {
        find(body, delim.as_bytes(), 0).ok_or(MultipartError::Unterminated)? + delim.len()
    };
    let mut parts = Vec::new();
    loop {
        if body[pos..].starts_with(b"--") {
            return Ok(parts);
        }
        // Skip transport padding and the CRLF after the delimiter.
        let line_end = find(body, b"\r\n", pos).ok_or(MultipartError::Unterminated)?;
        let start = line_end + 2;
        let end = find(body, delim.as_bytes(), start).ok_or(MultipartError::Unterminated)?;
        parts.push(parse_part(&body[start..end])?);
        pos = end + delim.len();
    }
}

fn parse_part(raw: &[u8]) -> Result<Part, MultipartError> {
    let (head, body) = match find(raw, b"\r\n\r\n", 0) {
        Some(i) => (&raw[..i], &raw[i + 4..]),
        None if raw.starts_with(b"\r\n") => (&raw[..0], &raw[2..]),
        None => (raw, &raw[raw.len()..]),
    };
    let head = std::str::from_utf8(head).map_err(|_| MultipartError::BadPart)?;
    let mut headers = Vec::new();
    for line in head.split("\r\n").filter(|l| !l.is_empty()) {
        let (n, v) = line.split_once(':').ok_or(MultipartError::BadPart)?;
        headers.push((n.trim().to_string(), v.trim().to_string()));
    }
    Ok(Part {
        headers,
        body: body.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_then_split_keeps_parts_byte_for_byte() {
        let parts = vec![
            Part {
                headers: vec![("Content-Type".into(), "application/sdp".into())],
                body: b"v=0\r\nm=message 1 TCP/MSRP *\r\n".to_vec(),
            },
            Part {
                headers: vec![
                    (
                        "Content-Type".into(),
                        "application/resource-lists+xml".into(),
                    ),
                    ("Content-Disposition".into(), "recipient-list".into()),
                ],
                body: b"<resource-lists/>".to_vec(),
            },
        ];
        let body = build(&parts, "b1");
        assert!(body.starts_with(b"--b1\r\nContent-Type: application/sdp\r\n\r\nv=0"));
        assert!(body.ends_with(b"<resource-lists/>\r\n--b1--\r\n"));
        assert_eq!(
            split(&body, "multipart/mixed;boundary=\"b1\"").unwrap(),
            parts
        );
    }

    #[test]
    fn preamble_and_errors() {
        let body = b"preamble\r\n--x\r\nContent-Type: text/plain\r\n\r\nhi\r\n--x--";
        let p = split(body, "multipart/mixed; boundary=x").unwrap();
        assert_eq!(p[0].body, b"hi");
        assert_eq!(p[0].header("content-type"), Some("text/plain"));
        assert_eq!(
            split(body, "multipart/mixed"),
            Err(MultipartError::NoBoundary)
        );
        assert_eq!(
            split(b"--x\r\nA: b\r\n\r\nno end", "multipart/mixed;boundary=x"),
            Err(MultipartError::Unterminated)
        );
    }
}
