//! Where an initial request goes: requests from the core go to their
//! Request-URI (the client's contact); all others go to the core next hop.

use crate::config::SourceMatch;
use crate::sip::SipUri;
use crate::transport::{Proto, Target};

#[derive(Debug, PartialEq, Eq)]
pub enum RouteError {
    /// 416: not a SIP URI.
    UnsupportedScheme,
    /// 502: we do not resolve host names yet (RFC 3263 is future work).
    Unresolvable(String),
}

#[derive(Clone)]
pub struct Router {
    pub core: Target,
    pub sources: Vec<SourceMatch>,
}

impl Router {
    pub fn from_core(&self, source: &Target) -> bool {
        self.sources.iter().any(|s| s.matches(source.addr))
    }

    pub fn route(&self, source: &Target, request_uri: &str) -> Result<Target, RouteError> {
        if !self.from_core(source) {
            return Ok(self.core.clone());
        }
        let uri = SipUri::parse(request_uri).ok_or(RouteError::UnsupportedScheme)?;
        let addr = uri
            .socket_addr()
            .ok_or_else(|| RouteError::Unresolvable(uri.host.clone()))?;
        let proto = uri
            .transport()
            .and_then(|t| Proto::from_name(&t))
            .unwrap_or(Proto::Udp);
        Ok(Target {
            proto,
            addr,
            conn: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        Router {
            core: Target {
                proto: Proto::Udp,
                addr: "10.0.0.3:5060".parse().unwrap(),
                conn: None,
            },
            sources: vec![SourceMatch::Ip("10.0.0.3".parse().unwrap())],
        }
    }

    fn from(addr: &str) -> Target {
        Target {
            proto: Proto::Udp,
            addr: addr.parse().unwrap(),
            conn: None,
        }
    }

    #[test]
    fn client_requests_go_to_the_core() {
        let t = router()
            .route(&from("10.0.0.1:5060"), "sip:bob@example.com")
            .unwrap();
        assert_eq!(t, router().core);
    }

    #[test]
    fn core_requests_go_to_the_request_uri() {
        let t = router()
            .route(
                &from("10.0.0.3:40000"),
                "sip:alice@10.0.0.7:5062;transport=tcp",
            )
            .unwrap();
        assert_eq!(t.addr, "10.0.0.7:5062".parse().unwrap());
        assert_eq!(t.proto, Proto::Tcp);
        assert_eq!(
            router().route(&from("10.0.0.3:1"), "tel:+331"),
            Err(RouteError::UnsupportedScheme)
        );
        assert_eq!(
            router().route(&from("10.0.0.3:1"), "sip:a@host.example"),
            Err(RouteError::Unresolvable("host.example".into()))
        );
    }
}
