//! Typed views of the header values a B2BUA must understand.

use super::uri::split_host_port;

/// Characters of `s` outside quoted strings, with their byte offsets
/// (backslash escapes inside quotes honoured).
fn unquoted_chars(s: &str) -> impl Iterator<Item = (usize, char)> + '_ {
    let (mut quoted, mut escaped) = (false, false);
    s.char_indices().filter(move |&(_, c)| {
        if escaped {
            escaped = false;
            return false;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            _ => return !quoted,
        }
        false
    })
}

/// Split a comma-separated header value, ignoring commas inside quotes and `<>`.
pub fn split_list(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in unquoted_chars(value) {
        match c {
            '<' => depth += 1,
            '>' => depth -= 1,
            ',' if depth <= 0 => {
                out.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(value[start..].trim());
    out.retain(|s| !s.is_empty());
    out
}

/// Look up a `;name[=value]` parameter case-insensitively: `Some(None)` when
/// present without a value.
pub fn find_param<'a>(
    params: &'a [(String, Option<String>)],
    name: &str,
) -> Option<Option<&'a str>> {
    params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_deref())
}

/// The `tag` parameter of a name-addr or addr-spec value (From, To),
/// read in place: parameters after the `>` of a name-addr, after the first
/// `;` of an addr-spec, as [`NameAddr::parse`] splits them, but without
/// building one or checking the rest (for the edge, which looks at every
/// message's To before anything else does).
pub fn tag_param(value: &str) -> Option<&str> {
    let v = value.trim();
    let params = match find_unquoted(v, '<') {
        Some(lt) => &v[lt + v[lt..].find('>')? + 1..],
        None => v.split_once(';')?.1,
    };
    params.split(';').find_map(|p| {
        let (name, tag) = p.split_once('=')?;
        name.trim().eq_ignore_ascii_case("tag").then(|| tag.trim())
    })
}

fn parse_params(s: &str) -> Vec<(String, Option<String>)> {
    s.split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.trim().to_string(), Some(v.trim().to_string())),
            None => (p.to_string(), None),
        })
        .collect()
}

fn write_params(out: &mut String, params: &[(String, Option<String>)]) {
    for (k, v) in params {
        out.push(';');
        out.push_str(k);
        if let Some(v) = v {
            out.push('=');
            out.push_str(v);
        }
    }
}

/// `name-addr` or `addr-spec` with header parameters (From, To, Contact, Route...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    pub display: Option<String>,
    /// The URI text, unparsed, exactly as received.
    pub uri: String,
    pub params: Vec<(String, Option<String>)>,
}

impl NameAddr {
    /// Reads a `name-addr` or `addr-spec` as RFC 3261 §25.1 and §20.10 write
    /// them: a display name is one quoted-string or tokens separated by
    /// white space (so never an unquoted comma); nothing but the URI inside
    /// the angle brackets (no white space); a URI holding `?`, `,` or `;`
    /// only inside angle brackets.
    pub fn parse(value: &str) -> Option<Self> {
        NameAddrRef::parse(value).map(|r| NameAddr {
            display: r.display.map(str::to_string),
            uri: r.uri.to_string(),
            params: parse_params(r.params),
        })
    }

    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }

    pub fn tag(&self) -> Option<String> {
        self.param("tag").flatten().map(str::to_string)
    }

    pub fn set_param(&mut self, name: &str, value: Option<&str>) {
        self.params.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.params
            .push((name.to_string(), value.map(str::to_string)));
    }

    pub fn remove_param(&mut self, name: &str) {
        self.params.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    }

    pub fn with_tag(mut self, tag: &str) -> Self {
        self.set_param("tag", Some(tag));
        self
    }
}

/// A [`NameAddr`] read in place: the same grammar, nothing copied (for
/// checks on the receive path that only need to know the value is
/// well-formed, and its URI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddrRef<'a> {
    pub display: Option<&'a str>,
    /// The URI text, as received.
    pub uri: &'a str,
    /// What follows the URI (`;name=value...`), unparsed.
    pub params: &'a str,
    /// Whether the URI was in angle brackets (a name-addr).
    pub bracketed: bool,
}

impl<'a> NameAddrRef<'a> {
    /// See [`NameAddr::parse`]: the grammar lives here.
    pub fn parse(value: &'a str) -> Option<Self> {
        let v = value.trim();
        if let Some(lt) = find_unquoted(v, '<') {
            let gt = lt + v[lt..].find('>')?;
            let display = v[..lt].trim();
            let uri = &v[lt + 1..gt];
            if !display_name_ok(display) || uri.is_empty() || uri.contains(char::is_whitespace) {
                return None;
            }
            Some(NameAddrRef {
                display: (!display.is_empty()).then_some(display),
                uri,
                params: &v[gt + 1..],
                bracketed: true,
            })
        } else {
            // addr-spec: parameters after the URI belong to the header (RFC 3261 section 20.10).
            let (uri, params) = v.split_once(';').unwrap_or((v, ""));
            let uri = uri.trim();
            if uri.is_empty() || uri.contains(|c: char| c.is_whitespace() || c == '?' || c == ',') {
                return None;
            }
            Some(NameAddrRef {
                display: None,
                uri,
                params,
                bracketed: false,
            })
        }
    }
}

impl std::fmt::Display for NameAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = String::new();
        if let Some(d) = &self.display {
            s.push_str(d);
            s.push(' ');
        }
        s.push('<');
        s.push_str(&self.uri);
        s.push('>');
        write_params(&mut s, &self.params);
        f.write_str(&s)
    }
}

/// `display-name = *(token LWS) / quoted-string` (RFC 3261 §25.1).
fn display_name_ok(d: &str) -> bool {
    if let Some(rest) = d.strip_prefix('"') {
        // One quoted-string, its end the end of the name.
        let mut escaped = false;
        for (i, c) in rest.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => return rest[i + 1..].trim().is_empty(),
                _ => {}
            }
        }
        return false;
    }
    d.split_whitespace().all(crate::message::is_token)
}

fn find_unquoted(s: &str, needle: char) -> Option<usize> {
    unquoted_chars(s)
        .find(|&(_, c)| c == needle)
        .map(|(i, _)| i)
}

/// One Via value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    pub transport: String,
    pub host: String,
    pub port: Option<u16>,
    pub params: Vec<(String, Option<String>)>,
}

impl Via {
    pub fn parse(value: &str) -> Option<Self> {
        // sent-protocol may have LWS around each "/" (RFC 3261 section 25.1).
        let v = value.trim();
        let mut proto = String::new();
        let mut rest = v;
        for _ in 0..3 {
            rest = rest.trim_start();
            let end = rest
                .find(|c: char| c == '/' || c.is_whitespace())
                .unwrap_or(rest.len());
            proto.push_str(&rest[..end]);
            rest = rest[end..].trim_start();
            if proto.matches('/').count() < 2 {
                rest = rest.strip_prefix('/')?;
                proto.push('/');
            }
        }
        let mut p = proto.split('/');
        let (Some(name), Some(ver), Some(transport), None) =
            (p.next(), p.next(), p.next(), p.next())
        else {
            return None;
        };
        if !name.eq_ignore_ascii_case("SIP") || ver != "2.0" {
            return None;
        }
        let rest = rest.trim_start();
        let (sent_by, params) = rest.split_once(';').unwrap_or((rest, ""));
        let (host, port) = split_host_port(sent_by.trim())?;
        Some(Via {
            transport: transport.to_ascii_uppercase(),
            host,
            port,
            params: parse_params(params),
        })
    }

    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }

    pub fn branch(&self) -> Option<&str> {
        self.param("branch").flatten()
    }

    pub fn sent_by(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{}", self.host, p),
            None => self.host.clone(),
        }
    }
}

/// `CSeq: 12 INVITE` → (12, "INVITE").
pub fn parse_cseq(value: &str) -> Option<(u32, String)> {
    let mut it = value.split_whitespace();
    let n = it.next()?.parse().ok()?;
    let m = it.next()?;
    if it.next().is_some() {
        return None;
    }
    Some((n, m.to_string()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_reading_in_place_is_the_owned_one() {
        use super::{NameAddr, NameAddrRef};
        for v in [
            "\"A, b\" <sip:a@h;lr>;tag=1",
            "Bob Smith <sip:b@h>",
            "sip:b@h;tag=2",
            "<sip:b@h?Subject=x>",
            "sip:b@h?Subject=x",
            "<sip:a b@h>",
            "a, b <sip:x@h>",
            "<sip:x@h",
            "",
        ] {
            let (owned, borrowed) = (NameAddr::parse(v), NameAddrRef::parse(v));
            assert_eq!(owned.is_some(), borrowed.is_some(), "{v}");
            let (Some(o), Some(b)) = (owned, borrowed) else {
                continue;
            };
            assert_eq!(
                (o.display.as_deref(), o.uri.as_str()),
                (b.display, b.uri),
                "{v}"
            );
            assert_eq!(b.bracketed, v.contains('<'), "{v}");
        }
    }

    #[test]
    fn the_tag_read_in_place_is_the_one_name_addr_reads() {
        for v in [
            "<sip:b@h>;tag=x1",
            "\"a;tag=no\" <sip:b@h;tag=uri>;foo ; TAG = x2",
            "sip:b@h;tag=x3",
            "<sip:b@h;tag=uri>",
            "sip:b@h",
            "<sip:b@h>;tag=",
        ] {
            assert_eq!(
                tag_param(v).map(str::to_string),
                NameAddr::parse(v).and_then(|n| n.tag()),
                "{v}"
            );
        }
    }

    #[test]
    fn name_addr_follows_rfc_3261_section_25() {
        // RFC 4475 §3.1.2.15 baddn, §3.1.2.14 badaspec, §3.1.2.13 regbadct.
        assert_eq!(
            NameAddr::parse("Bell, Alexander <sip:a.g.bell@example.com>;tag=43"),
            None
        );
        assert_eq!(
            NameAddr::parse("\"Watson, Thomas\" < sip:t.watson@example.org >"),
            None
        );
        assert_eq!(
            NameAddr::parse("sip:user@example.com?Route=%3Csip:x%3E"),
            None
        );
        assert_eq!(NameAddr::parse("\"unterminated <sip:a@b>"), None);
        assert_eq!(NameAddr::parse("\"quoted\" trailing <sip:a@b>"), None);
        for ok in [
            "\"Watson, Thomas\" <sip:t.watson@example.org>",
            "Alexander Graham Bell <sip:a.g.bell@example.com>;tag=43",
            "\"J Rosenberg \\\\\\\"\" <sip:jdrosen@example.com>",
            "<sip:user@example.com?Route=%3Csip:x%3E>",
            "sip:user@example.com;tag=1",
        ] {
            assert!(NameAddr::parse(ok).is_some(), "{ok}");
        }
    }

    use super::*;

    #[test]
    fn split_list_respects_quotes_and_brackets() {
        assert_eq!(
            split_list("\"Doe, John\" <sip:j@x;a=1,2>;tag=1, <sip:b@y>"),
            vec!["\"Doe, John\" <sip:j@x;a=1,2>;tag=1", "<sip:b@y>"]
        );
        assert_eq!(split_list("a,,b"), vec!["a", "b"]);
    }

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse("\"A <x>\" <sip:a@h;transport=tcp>;tag=9;x").unwrap();
        assert_eq!(n.display.as_deref(), Some("\"A <x>\""));
        assert_eq!(n.uri, "sip:a@h;transport=tcp");
        assert_eq!(n.tag().as_deref(), Some("9"));
        let n = NameAddr::parse("sip:a@h;tag=5").unwrap();
        assert_eq!(n.uri, "sip:a@h");
        assert_eq!(n.tag().as_deref(), Some("5"));
        assert_eq!(n.with_tag("6").to_string(), "<sip:a@h>;tag=6");
        assert!(NameAddr::parse("<sip:a@h").is_none());
    }

    #[test]
    fn via_forms() {
        let v =
            Via::parse("SIP/2.0/tcp [2001:db8::1]:5070 ;branch=z9hG4bKx;rport;received=1.2.3.4")
                .unwrap();
        assert_eq!(v.transport, "TCP");
        assert_eq!(v.host, "[2001:db8::1]");
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.branch(), Some("z9hG4bKx"));
        assert_eq!(v.param("rport"), Some(None));
        assert!(Via::parse("SIP/3.0/UDP h").is_none());
        let v = Via::parse("SIP  /   2.0 /  UDP 192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(
            (v.transport.as_str(), v.host.as_str()),
            ("UDP", "192.0.2.2")
        );
        let n =
            NameAddr::parse("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n").unwrap();
        assert_eq!(n.uri, "sip:vivekg@chair-dnrc.example.com");
        assert_eq!(n.tag().as_deref(), Some("1918181833n"));
        assert!(Via::parse("garbage").is_none());
    }

    #[test]
    fn cseq_forms() {
        assert_eq!(parse_cseq("12 INVITE"), Some((12, "INVITE".into())));
        assert_eq!(parse_cseq("x INVITE"), None);
        assert_eq!(parse_cseq("1 INVITE extra"), None);
    }
}
