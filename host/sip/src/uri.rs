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

impl SipUri {
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let (scheme, rest) = s.split_once(':')?;
        if !(scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips")) {
            return None;
        }
        let (rest, headers) = match rest.split_once('?') {
            Some((r, h)) => (r, h),
            None => (rest, ""),
        };
        let (user, hostpart) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u.to_string()), h),
            None => (None, rest),
        };
        let mut segs = hostpart.split(';');
        let hostport = segs.next()?;
        let (host, port) = split_host_port(hostport)?;
        let params = segs
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (p.to_string(), None),
            })
            .collect();
        let headers = headers
            .split('&')
            .filter(|h| !h.is_empty())
            .map(|h| match h.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (h.to_string(), String::new()),
            })
            .collect();
        Some(SipUri {
            scheme: scheme.to_ascii_lowercase(),
            user,
            host,
            port,
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
        return Some((format!("[{v6}]"), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h.to_string(), Some(p.parse().ok()?))),
        Some(_) => None, // bare IPv6 without brackets is not allowed in SIP
        None => Some((s.to_string(), None)),
    }
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
