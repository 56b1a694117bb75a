//! SIP URI (RFC 3261 section 19.1), enough to route on and to rewrite safely.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    pub scheme: String,
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    /// `;name[=value]` parameters in order.
    pub params: Vec<(String, Option<String>)>,
    /// `?name=value&...` headers embedded in the URI, raw (still escaped).
    pub headers: Vec<(String, String)>,
}

/// A [`SipUri`] read in place: the same grammar, nothing copied (for the
/// checks on the receive path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipUriRef<'a> {
    /// As written (`sip` or `sips`, any case).
    pub scheme: &'a str,
    pub user: Option<&'a str>,
    /// A host name, IPv4 address or bracketed IPv6 reference.
    pub host: &'a str,
    pub port: Option<u16>,
    /// `name[=value]` parameters, `;`-separated, unparsed (no leading `;`).
    pub params: &'a str,
    /// The headers after `?`, `&`-separated, raw; empty when none.
    pub headers: &'a str,
}

impl<'a> SipUriRef<'a> {
    /// See [`SipUri::parse`]: the grammar lives here.
    pub fn parse(s: &'a str) -> Option<Self> {
        let s = s.trim();
        // Only the characters RFC 3261 §25.1 lets a SIP URI hold (escaped
        // as %XX otherwise): never white space, a control byte, `<`, `>`
        // or `"`, which would end or break the header the URI is put in.
        if !s.bytes().all(is_uri_byte) {
            return None;
        }
        let (scheme, rest) = s.split_once(':')?;
        if !(scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips")) {
            return None;
        }
        // The user part may hold `?` (RFC 3261 §25.1 user-unreserved), the
        // headers no unescaped `@`: the user ends at the last `@`, headers
        // start at the first `?` after it.
        let (user, after_user) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (hostpart, headers) = match after_user.split_once('?') {
            Some((_, "")) => return None, // `?` opens at least one header
            Some(split) => split,
            None => (after_user, ""),
        };
        let (hostport, params) = hostpart.split_once(';').unwrap_or((hostpart, ""));
        let (host, port) = split_host_port_ref(hostport)?;
        Some(SipUriRef {
            scheme,
            user,
            host,
            port,
            params,
            headers,
        })
    }
}

impl SipUri {
    pub fn parse(s: &str) -> Option<Self> {
        let r = SipUriRef::parse(s)?;
        let params = r
            .params
            .split(';')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (p.to_string(), None),
            })
            .collect();
        let headers = r
            .headers
            .split('&')
            .filter(|h| !h.is_empty())
            .map(|h| match h.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (h.to_string(), String::new()),
            })
            .collect();
        Some(SipUri {
            scheme: r.scheme.to_ascii_lowercase(),
            user: r.user.map(str::to_string),
            host: r.host.to_string(),
            port: r.port,
            params,
            headers,
        })
    }

    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        super::header::find_param(&self.params, name)
    }

    /// The `transport` parameter, lower-cased.
    pub fn transport(&self) -> Option<String> {
        self.param("transport")
            .flatten()
            .map(str::to_ascii_lowercase)
    }

    /// The host as an IP address when it is a literal (IPv6 without brackets).
    pub fn ip(&self) -> Option<IpAddr> {
        self.host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()
    }

    /// Socket address when the host is an IP literal; default port 5060.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        Some(SocketAddr::new(self.ip()?, self.port.unwrap_or(5060)))
    }

    /// The same URI with its embedded headers removed.
    pub fn without_headers(&self) -> SipUri {
        SipUri {
            headers: Vec::new(),
            ..self.clone()
        }
    }
}

/// Split `host[:port]`, where host may be `[v6]`.
pub fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    split_host_port_ref(s).map(|(host, port)| (host.to_string(), port))
}

/// [`split_host_port`] without a copy: the host as written (an IPv6
/// reference with its brackets).
pub fn split_host_port_ref(s: &str) -> Option<(&str, Option<u16>)> {
    if s.is_empty() {
        return None;
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        v6.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?.parse().ok()?),
        };
        return Some((&s[..v6.len() + 2], port));
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p.parse().ok()?)),
        Some(_) => return None, // bare IPv6 without brackets is not allowed in SIP
        None => (s, None),
    };
    // A host name or IPv4 address: letters, digits, `-`, `.` (and `_`,
    // which names in the wild use).
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    host_ok.then_some((host, port))
}

/// unreserved, reserved, `%` of an escape, and the brackets of an IPv6
/// reference (RFC 3261 §25.1).
fn is_uri_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()%;/?:@&=+$,[]".contains(&b)
}

/// `host:port` text for an address, with brackets for IPv6.
pub fn host_port(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.scheme)?;
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        f.write_str(&self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        for (k, v) in &self.params {
            match v {
                Some(v) => write!(f, ";{k}={v}")?,
                None => write!(f, ";{k}")?,
            }
        }
        for (i, (k, v)) in self.headers.iter().enumerate() {
            write!(f, "{}{k}={v}", if i == 0 { '?' } else { '&' })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_reading_in_place_is_the_owned_one() {
        use super::{SipUri, SipUriRef};
        for s in [
            "sip:alice@example.com",
            "SIPS:a%20b@[2001:db8::1]:5061;transport=tcp;lr?Replaces=x%40y&Subject=hi",
            "sip:user?odd@host.example;maddr=10.0.0.1",
            "sip:10.0.0.1:5060",
            "sip:host;;lr;",
            "sip:a@[2001:db8::1",
            "sip:a@host?",
            "sip:a b@host",
            "tel:+123",
            "sip:a@ho st",
        ] {
            let (owned, borrowed) = (SipUri::parse(s), SipUriRef::parse(s));
            assert_eq!(owned.is_some(), borrowed.is_some(), "{s}");
            let (Some(o), Some(b)) = (owned, borrowed) else {
                continue;
            };
            assert_eq!(o.scheme, b.scheme.to_ascii_lowercase(), "{s}");
            assert_eq!(o.user.as_deref(), b.user, "{s}");
            assert_eq!((o.host.as_str(), o.port), (b.host, b.port), "{s}");
            assert_eq!(o.headers.is_empty(), b.headers.is_empty(), "{s}");
        }
    }

    #[test]
    fn only_uri_characters_and_host_names() {
        for bad in [
            "sip:a b@example.com",
            "sip:a@exa mple.com",
            "sip:<@e",
            "sip:evil>@example.com",
            "sip:a\r@example.com",
            "sip:a\u{0}@example.com",
            "sip:\"q\"@example.com",
            "sip:a@",
            "sip:a@ex%41mple.com",
            "sip:a@example.com?",
        ] {
            assert_eq!(SipUri::parse(bad), None, "{bad:?}");
        }
        // RFC 4475 §3.1.1.2 intmeth's user part: odd, but every byte allowed.
        let odd = "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com";
        let u = SipUri::parse(odd).expect("legal");
        assert_eq!(u.host, "example.com");
        assert!(u.headers.is_empty(), "the ? is the user's");
    }

    use super::*;

    #[test]
    fn parses_ipv4_ipv6_and_domains() {
        let u = SipUri::parse("sip:alice@10.1.2.3:5070;transport=TCP;lr").unwrap();
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.socket_addr(), Some("10.1.2.3:5070".parse().unwrap()));
        assert_eq!(u.transport().as_deref(), Some("tcp"));
        assert_eq!(u.param("lr"), Some(None));
        let u = SipUri::parse("sip:b@[::1]:5080").unwrap();
        assert_eq!(u.socket_addr(), Some("[::1]:5080".parse().unwrap()));
        let u = SipUri::parse("sips:conf-factory@ims.example.net").unwrap();
        assert_eq!(u.ip(), None);
        assert_eq!(u.to_string(), "sips:conf-factory@ims.example.net");
        assert!(SipUri::parse("tel:+123").is_none());
        assert!(SipUri::parse("sip:a@::1").is_none());
    }

    #[test]
    fn embedded_headers_are_parsed_and_removable() {
        let u =
            SipUri::parse("sip:carol@example.com?Replaces=abc%40h%3Bto-tag%3D1&Require=replaces")
                .unwrap();
        assert_eq!(u.headers.len(), 2);
        assert_eq!(u.without_headers().to_string(), "sip:carol@example.com");
        assert_eq!(
            u.to_string(),
            "sip:carol@example.com?Replaces=abc%40h%3Bto-tag%3D1&Require=replaces"
        );
    }
}
