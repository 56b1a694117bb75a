//! The SIP message envelope: start line, headers in order, body bytes.

use bytes::Bytes;
use std::fmt::Write as _;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("message has no end of header section")]
    NoHeaderEnd,
    #[error("header section is not valid UTF-8")]
    NotUtf8,
    #[error("malformed start line: {0:?}")]
    StartLine(String),
    #[error("malformed header line: {0:?}")]
    HeaderLine(String),
    #[error("too many headers (limit {0})")]
    TooManyHeaders(usize),
    #[error("invalid Content-Length: {0:?}")]
    ContentLength(String),
    #[error("body shorter than Content-Length ({have} < {want})")]
    ShortBody { have: usize, want: usize },
    #[error("CR or LF outside a CRLF line end")]
    BareLineBreak,
    #[error("control character in {0}")]
    ControlCharacter(String),
    #[error("{0} appears more than once")]
    DuplicateHeader(String),
    #[error("SIP version {0:?} not supported")]
    Version(String),
}

impl ParseError {
    /// A short, fixed name of the problem (a metric label).
    pub fn label(&self) -> &'static str {
        match self {
            ParseError::NoHeaderEnd => "no-header-end",
            ParseError::NotUtf8 => "not-utf8",
            ParseError::StartLine(_) => "start-line",
            ParseError::HeaderLine(_) => "header-line",
            ParseError::TooManyHeaders(_) => "too-many-headers",
            ParseError::ContentLength(_) => "content-length",
            ParseError::ShortBody { .. } => "short-body",
            ParseError::BareLineBreak => "bare-line-break",
            ParseError::ControlCharacter(_) => "control-character",
            ParseError::DuplicateHeader(_) => "duplicate-header",
            ParseError::Version(_) => "version",
        }
    }
}

/// Headers a message carries at most once (RFC 3261 §7.3.1, §20); a
/// duplicate that repeats the same value is merged, one that differs makes
/// the message ambiguous.
const SINGULAR: &[&str] = &[
    "Call-ID",
    "CSeq",
    "From",
    "To",
    "Max-Forwards",
    "Content-Length",
    "Content-Type",
];

/// Which of [`SINGULAR`] header name `name` denotes (full or compact form).
fn singular_index(name: &str) -> Option<usize> {
    // Lengths of the full names, and the compact forms (i, f, t, l, c).
    if !matches!(name.len(), 1 | 2 | 4 | 7 | 12 | 14) {
        return None;
    }
    SINGULAR.iter().position(|s| name_is(name, s))
}

/// A control character other than HTAB (CR and LF included: inside a value
/// they are never a line end). Without an early exit, so the compiler can
/// run it over many bytes at once: lines are short and almost always clean.
fn has_control(s: &str) -> bool {
    s.bytes().fold(false, |bad, b| {
        bad | ((b < 0x20) & (b != b'\t')) | (b == 0x7f)
    })
}

/// Whether every control character of `line` is the escaped half of a
/// quoted-pair inside a quoted-string (RFC 3261 §25.1 allows `\` before
/// any byte but CR and LF there: RFC 4475 §3.1.1.2). The slow path of
/// [`has_control`], taken only when that found one.
fn controls_only_in_quoted_pairs(line: &str) -> bool {
    let mut quoted = false;
    let mut bytes = line.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'"' => quoted = !quoted,
            b'\\' if quoted => match bytes.next() {
                Some(b'\r' | b'\n') | None => return false,
                Some(_) => {}
            },
            b'\t' => {}
            b if b < 0x20 || b == 0x7f => return false,
            _ => {}
        }
    }
    true
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request { method: String, uri: String },
    Response { status: u16, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipMessage {
    pub start: StartLine,
    pub headers: Vec<Header>,
    pub body: Bytes,
}

/// Compact forms (RFC 3261 section 7.3.3 and later RFCs) and their full names.
const COMPACT: &[(&str, &str)] = &[
    ("i", "Call-ID"),
    ("m", "Contact"),
    ("e", "Content-Encoding"),
    ("l", "Content-Length"),
    ("c", "Content-Type"),
    ("f", "From"),
    ("s", "Subject"),
    ("k", "Supported"),
    ("t", "To"),
    ("v", "Via"),
    ("r", "Refer-To"),
    ("b", "Referred-By"),
    ("o", "Event"),
    ("u", "Allow-Events"),
    ("x", "Session-Expires"),
    ("a", "Accept-Contact"),
    ("j", "Reject-Contact"),
    ("d", "Request-Disposition"),
    ("y", "Identity"),
];

/// Whether header name `a` (as received) denotes header `full`.
pub fn name_is(a: &str, full: &str) -> bool {
    if a.len() == 1 {
        return a.eq_ignore_ascii_case(full)
            || COMPACT
                .iter()
                .any(|(c, f)| c.eq_ignore_ascii_case(a) && f.eq_ignore_ascii_case(full));
    }
    a.len() == full.len() && a.eq_ignore_ascii_case(full)
}

/// Limits applied while parsing input from the network.
#[derive(Debug, Clone, Copy)]
pub struct ParseLimits {
    pub max_headers: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        Self { max_headers: 256 }
    }
}

/// Whether `s` may stand in a header value, a reason phrase or a start
/// line as the host writes them: no control byte but HTAB (so never CR or
/// LF, which would end the line and start another). Stricter than what the
/// parser accepts (quoted-pairs may escape controls): for what the host
/// builds from fields it was given (a plugin's actions), not for parsing.
pub fn is_field_text(s: &str) -> bool {
    !has_control(s)
}

/// A header field the host may write: a token for a name (RFC 3261 §25.1)
/// and [`is_field_text`] for a value.
pub fn is_header_field(name: &str, value: &str) -> bool {
    is_token(name) && is_field_text(value)
}

pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

/// Offset of the first byte after the blank line ending the header section
/// (CRLF or bare LF line ends).
pub fn header_end(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(p) = buf[from..].iter().position(|&b| b == b'\n') {
        let nl = from + p;
        match (buf.get(nl + 1), buf.get(nl + 2)) {
            (Some(b'\n'), _) => return Some(nl + 2),
            (Some(b'\r'), Some(b'\n')) => return Some(nl + 3),
            _ => from = nl + 1,
        }
    }
    None
}

/// The lines of `head`, start line first, folded continuation
/// lines joined to theirs with one space (RFC 3261 section 7.3.1). Borrowed
/// unless a header is folded.
fn header_lines(head: &str) -> Result<Vec<std::borrow::Cow<'_, str>>, ParseError> {
    use std::borrow::Cow;
    let mut lines: Vec<Cow<'_, str>> = Vec::with_capacity(16);
    for raw in head.split('\n') {
        // Every line ends with CRLF; a CR anywhere else, or an LF without
        // its CR, is a bare line break (an injected header, or a line end a
        // peer reads otherwise). One pass over the bytes also refuses the
        // other control characters (HTAB is allowed).
        let Some(line) = raw.strip_suffix('\r') else {
            if raw.is_empty() {
                continue; // after the final CRLF
            }
            return Err(ParseError::BareLineBreak);
        };
        if has_control(line) && !controls_only_in_quoted_pairs(line) {
            let b = line
                .bytes()
                .find(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
                .unwrap_or_default();
            return Err(if b == b'\r' {
                ParseError::BareLineBreak
            } else {
                let name = line.split(':').next().unwrap_or_default();
                ParseError::ControlCharacter(name.chars().take(40).collect())
            });
        }
        if line.is_empty() {
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            match lines.last_mut() {
                Some(prev) => {
                    let joined = prev.to_mut();
                    joined.push(' ');
                    joined.push_str(line.trim());
                }
                None => return Err(ParseError::HeaderLine(line.to_string())),
            }
            continue;
        }
        lines.push(Cow::Borrowed(line));
    }
    Ok(lines)
}

impl SipMessage {
    /// Parse one complete message (datagram or framed stream message).
    /// Bytes beyond Content-Length are discarded (RFC 3261 section 18.3).
    pub fn parse(buf: &[u8], limits: ParseLimits) -> Result<Self, ParseError> {
        let (mut msg, end) = Self::parse_head(buf, limits)?;
        let rest = &buf[end..];
        let body_len = msg.content_length()?.unwrap_or(rest.len());
        if rest.len() < body_len {
            return Err(ParseError::ShortBody {
                have: rest.len(),
                want: body_len,
            });
        }
        msg.body = Bytes::copy_from_slice(&rest[..body_len]);
        Ok(msg)
    }

    /// Parse the start line and headers only; the body is left empty. Used to
    /// answer 400 to a request whose body framing is wrong. Returns the message
    /// and the offset where the body starts.
    pub fn parse_head(buf: &[u8], limits: ParseLimits) -> Result<(Self, usize), ParseError> {
        let end = header_end(buf).ok_or(ParseError::NoHeaderEnd)?;
        let head = std::str::from_utf8(&buf[..end]).map_err(|_| ParseError::NotUtf8)?;
        let lines = header_lines(head)?;
        let mut it = lines.iter();
        let first = it.next().ok_or(ParseError::NoHeaderEnd)?;
        let start = parse_start_line(first)?;
        let mut headers = Vec::with_capacity((lines.len() - 1).min(limits.max_headers));
        let mut first_singular = [None; SINGULAR.len()];
        for line in it {
            if headers.len() >= limits.max_headers {
                return Err(ParseError::TooManyHeaders(limits.max_headers));
            }
            let bad = || ParseError::HeaderLine(line.to_string());
            let (name, value) = line.split_once(':').ok_or_else(bad)?;
            let name = name.trim_end();
            if !is_token(name) {
                return Err(bad());
            }
            let value = value.trim();
            if let Some(k) = singular_index(name) {
                match first_singular[k] {
                    Some(at) if headers.get(at).is_some_and(|h: &Header| h.value == value) => {
                        continue
                    }
                    Some(_) => return Err(ParseError::DuplicateHeader(SINGULAR[k].to_string())),
                    None => first_singular[k] = Some(headers.len()),
                }
            }
            headers.push(Header {
                name: name.to_string(),
                value: value.to_string(),
            });
        }
        let msg = SipMessage {
            start,
            headers,
            body: Bytes::new(),
        };
        Ok((msg, end))
    }

    /// What a refused request still lets the host answer with: its start
    /// line and the headers a response copies (Via, From, To, Call-ID,
    /// CSeq), read leniently from a message the grammar refused. Only for
    /// building the error response; never forwarded. `None` when those
    /// are not there intact (no control characters) or it is no request.
    pub fn answerable_head(buf: &[u8]) -> Option<SipMessage> {
        let end = header_end(buf).unwrap_or(buf.len());
        let text = String::from_utf8_lossy(&buf[..end]);
        let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
        // Loosely: a method token first, whatever follows (extra spaces, a
        // bad Request-URI or version are what is being refused).
        let first = lines.next()?;
        let method = first.split_whitespace().next()?;
        if !is_token(method) || method.starts_with("SIP/") || has_control(method) {
            return None;
        }
        let start = StartLine::Request {
            method: method.to_string(),
            uri: String::new(),
        };
        let wanted = ["Via", "From", "To", "Call-ID", "CSeq"];
        let mut headers = Vec::new();
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let (name, value) = (name.trim(), value.trim());
            let Some(full) = wanted.iter().find(|w| name_is(name, w)) else {
                continue;
            };
            if !is_token(name) || has_control(value) || value.contains('\u{fffd}') {
                continue;
            }
            let singular = *full != "Via";
            if singular && headers.iter().any(|h: &Header| name_is(&h.name, full)) {
                continue;
            }
            headers.push(Header {
                name: full.to_string(),
                value: value.to_string(),
            });
        }
        Some(SipMessage {
            start,
            headers,
            body: Bytes::new(),
        })
    }

    /// The body size Content-Length declares: digits only (no sign, no
    /// space inside); `None` without the header. The stream framer reads
    /// it through this too, so framer and parser agree on every boundary.
    pub fn content_length(&self) -> Result<Option<usize>, ParseError> {
        let Some(v) = self.header("Content-Length") else {
            return Ok(None);
        };
        let digits = v.trim();
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::ContentLength(digits.to_string()));
        }
        digits
            .parse::<usize>()
            .map(Some)
            .map_err(|_| ParseError::ContentLength(digits.to_string()))
    }

    pub fn request(method: &str, uri: &str) -> Self {
        SipMessage {
            start: StartLine::Request {
                method: method.to_string(),
                uri: uri.to_string(),
            },
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    pub fn response(status: u16, reason: &str) -> Self {
        SipMessage {
            start: StartLine::Response {
                status,
                reason: reason.to_string(),
            },
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    pub fn method(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The method of a request, typed.
    pub fn request_method(&self) -> Option<crate::Method> {
        self.method().map(crate::Method::parse)
    }

    pub fn request_uri(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { status, .. } => Some(*status),
            StartLine::Request { .. } => None,
        }
    }

    /// First value of a header (full or compact name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| name_is(&h.name, name))
            .map(|h| h.value.as_str())
    }

    /// Every value of a header, comma-separated lists split into their elements.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|h| name_is(&h.name, name))
            .flat_map(|h| crate::header::split_list(&h.value))
            .collect()
    }

    pub fn push_header(&mut self, name: &str, value: impl Into<String>) {
        self.headers.push(Header {
            name: name.to_string(),
            value: value.into(),
        });
    }

    pub fn remove_header(&mut self, name: &str) {
        self.headers.retain(|h| !name_is(&h.name, name));
    }

    /// Replace all occurrences of a header with one value (appended if absent).
    pub fn set_header(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        if let Some(pos) = self.headers.iter().position(|h| name_is(&h.name, name)) {
            self.headers[pos] = Header {
                name: name.to_string(),
                value,
            };
            let mut i = 0;
            self.headers.retain(|h| {
                i += 1;
                i - 1 == pos || !name_is(&h.name, name)
            });
        } else {
            self.push_header(name, value);
        }
    }

    /// Set the body and a matching Content-Length.
    pub fn set_body(&mut self, body: Bytes) {
        self.set_header("Content-Length", body.len().to_string());
        self.body = body;
    }

    pub fn call_id(&self) -> Option<&str> {
        self.header("Call-ID")
    }

    pub fn cseq(&self) -> Option<(u32, String)> {
        crate::header::parse_cseq(self.header("CSeq")?)
    }

    /// The method named in CSeq, typed (a response's request method).
    pub fn cseq_method(&self) -> Option<crate::Method> {
        self.cseq().map(|(_, m)| crate::Method::parse(&m))
    }

    pub fn top_via(&self) -> Option<crate::Via> {
        crate::Via::parse(self.header_values("Via").first()?)
    }

    pub fn from_tag(&self) -> Option<String> {
        crate::NameAddr::parse(self.header("From")?)?.tag()
    }

    pub fn to_tag(&self) -> Option<String> {
        crate::NameAddr::parse(self.header("To")?)?.tag()
    }

    /// The To tag read in place (see [`crate::header::tag_param`]): no
    /// allocation, and no check of the rest of the To.
    pub fn to_tag_param(&self) -> Option<&str> {
        crate::header::tag_param(self.header("To")?)
    }

    pub fn content_type(&self) -> Option<&str> {
        self.header("Content-Type")
    }

    /// The wire form. Content-Length is written as stored; builders keep it
    /// right through [`SipMessage::set_body`].
    pub fn to_bytes(&self) -> Bytes {
        let mut s = String::with_capacity(256 + self.headers.len() * 48);
        match &self.start {
            StartLine::Request { method, uri } => {
                let _ = write!(s, "{method} {uri} SIP/2.0\r\n");
            }
            StartLine::Response { status, reason } => {
                let _ = write!(s, "SIP/2.0 {status} {reason}\r\n");
            }
        }
        for h in &self.headers {
            s.push_str(&h.name);
            s.push_str(": ");
            s.push_str(&h.value);
            s.push_str("\r\n");
        }
        s.push_str("\r\n");
        let mut out = Vec::with_capacity(s.len() + self.body.len());
        out.extend_from_slice(s.as_bytes());
        out.extend_from_slice(&self.body);
        Bytes::from(out)
    }

    /// A short description for logs: method or status, and CSeq.
    pub fn summary(&self) -> String {
        let cseq = self.header("CSeq").unwrap_or("-");
        match &self.start {
            StartLine::Request { method, uri } => format!("{method} {uri} (CSeq {cseq})"),
            StartLine::Response { status, reason } => format!("{status} {reason} (CSeq {cseq})"),
        }
    }
}

fn parse_start_line(line: &str) -> Result<StartLine, ParseError> {
    let bad = || ParseError::StartLine(line.chars().take(120).collect());
    if let Some(rest) = line.strip_prefix("SIP/2.0 ") {
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        if code.len() != 3 {
            return Err(bad());
        }
        let status: u16 = code.parse().map_err(|_| bad())?;
        if !(100..=699).contains(&status) {
            return Err(bad());
        }
        return Ok(StartLine::Response {
            status,
            reason: reason.to_string(),
        });
    }
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if !is_token(method) || uri.is_empty() {
        return Err(bad());
    }
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        return Err(match version.strip_prefix("SIP/") {
            Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b == b'.') => {
                ParseError::Version(version.to_string())
            }
            _ => bad(),
        });
    }
    Ok(StartLine::Request {
        method: method.to_string(),
        uri: uri.to_string(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_bytes_pass_only_as_quoted_pairs() {
        // RFC 4475 §3.1.1.2 intmeth: escaped NUL, BEL and DEL in a display name.
        assert!(controls_only_in_quoted_pairs(
            "To: \"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f\" <sip:a@b>"
        ));
        assert!(!controls_only_in_quoted_pairs("X-A: raw \x07 bell"));
        assert!(
            !controls_only_in_quoted_pairs("To: \"\x07\" <sip:a@b>"),
            "unescaped in quotes"
        );
        assert!(!controls_only_in_quoted_pairs("X-A: \\\x07 outside quotes"));
        assert!(
            !controls_only_in_quoted_pairs("To: \"a\\\r\" <sip:a@b>"),
            "never CR"
        );
    }

    use super::*;

    const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
        v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1, SIP/2.0/TCP 10.0.0.2;branch=z9hG4bK2\r\n\
        Via: SIP/2.0/UDP 10.0.0.3;branch=z9hG4bK3\r\n\
        f: \"Alice\" <sip:alice@example.com>;tag=a1\r\n\
        t: <sip:bob@example.com>\r\n\
        i: call-1@10.0.0.1\r\n\
        CSeq: 7 INVITE\r\n\
        Subject: I know you're there,\r\n   pick up the phone\r\n\
        X-Unknown: kept , as is\r\n\
        l: 4\r\n\r\nabcdEXTRA";

    fn parse(s: &str) -> Result<SipMessage, ParseError> {
        SipMessage::parse(s.as_bytes(), ParseLimits::default())
    }

    #[test]
    fn parses_compact_forms_folding_and_lists() {
        let m = parse(INVITE).unwrap();
        assert_eq!(m.method(), Some("INVITE"));
        assert_eq!(m.call_id(), Some("call-1@10.0.0.1"));
        assert_eq!(m.header_values("Via").len(), 3);
        assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bK1"));
        assert_eq!(m.from_tag().as_deref(), Some("a1"));
        assert_eq!(m.to_tag(), None);
        assert_eq!(m.cseq(), Some((7, "INVITE".to_string())));
        assert_eq!(
            m.header("Subject"),
            Some("I know you're there, pick up the phone")
        );
        assert_eq!(m.header("X-Unknown"), Some("kept , as is"));
        assert_eq!(&m.body[..], b"abcd", "bytes beyond Content-Length dropped");
    }

    #[test]
    fn header_section_ends_at_the_first_blank_line() {
        assert_eq!(header_end(b"A\r\nB: 1\r\n\r\nbody\r\n\r\n"), Some(11));
        assert_eq!(header_end(b"A\nB: 1\n\nbody"), Some(8));
        assert_eq!(
            header_end(b"A\nB: 1\n\r\nbody"),
            Some(9),
            "bare LF, then CRLF"
        );
        assert_eq!(header_end(b"A\r\nB: 1\r\n"), None);
        assert_eq!(header_end(b""), None);
    }

    #[test]
    fn extension_method_is_a_request() {
        let m = parse("ADDUSER sip:x@y SIP/2.0\r\nCall-ID: 1\r\n\r\n").unwrap();
        assert_eq!(m.method(), Some("ADDUSER"));
    }

    #[test]
    fn round_trip_keeps_unknown_headers() {
        let m = parse(INVITE).unwrap();
        let again = SipMessage::parse(&m.to_bytes(), ParseLimits::default()).unwrap();
        assert_eq!(m, again);
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(
            parse("INVITE sip:x SIP/2.0\r\n"),
            Err(ParseError::NoHeaderEnd)
        );
        assert!(matches!(
            parse("INVITE  sip:x SIP/2.0\r\n\r\n"),
            Err(ParseError::StartLine(_))
        ));
        assert!(matches!(
            parse("SIP/2.0 99 Low\r\n\r\n"),
            Err(ParseError::StartLine(_))
        ));
        assert!(matches!(
            parse("INVITE sip:x SIP/2.0\r\nNoColon\r\n\r\n"),
            Err(ParseError::HeaderLine(_))
        ));
        assert!(matches!(
            parse("INVITE sip:x SIP/2.0\r\nContent-Length: -1\r\n\r\n"),
            Err(ParseError::ContentLength(_))
        ));
        assert_eq!(
            parse("INVITE sip:x SIP/2.0\r\nContent-Length: 10\r\n\r\nabc"),
            Err(ParseError::ShortBody { have: 3, want: 10 })
        );
        let many: String = (0..5).map(|i| format!("X-{i}: 1\r\n")).collect();
        let limits = ParseLimits { max_headers: 4 };
        assert_eq!(
            SipMessage::parse(
                format!("OPTIONS sip:x SIP/2.0\r\n{many}\r\n").as_bytes(),
                limits
            ),
            Err(ParseError::TooManyHeaders(4))
        );
    }

    #[test]
    fn set_header_replaces_every_occurrence_once() {
        let mut m = parse(INVITE).unwrap();
        m.set_header("Via", "SIP/2.0/UDP 1.1.1.1;branch=z9hG4bKnew");
        assert_eq!(m.header_values("Via").len(), 1);
        m.set_body(Bytes::from_static(b"hello"));
        assert_eq!(m.header("Content-Length"), Some("5"));
    }
}
