//! Pure rewriting of messages between the two legs of a call.

use crate::sip::message::name_is;
use crate::sip::uri::host_port;
use crate::sip::{NameAddr, SipMessage, SipUri, Via};
use crate::transport::Proto;
use std::net::SocketAddr;

/// Headers each leg owns; they are built per leg and never copied across.
const PER_LEG: &[&str] = &[
    "Via",
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Contact",
    "Record-Route",
    "Route",
    "Max-Forwards",
    "Content-Length",
    // Names a dialog of one hop: translated per leg (RFC 3891 §3), never
    // passed through as it came.
    "Replaces",
];

/// Methods whose requests and 1xx/2xx responses carry our Contact (they set
/// or refresh the remote target). For others a Contact passes through.
pub fn sets_target(method: &str) -> bool {
    crate::sip::Method::parse(method).sets_target()
}

/// Copy end-to-end headers and the body byte for byte. `keep_contact` copies
/// the Contact too (REGISTER bindings, 3xx targets).
pub fn copy_end_to_end(from: &SipMessage, to: &mut SipMessage, keep_contact: bool) {
    for h in &from.headers {
        let owned = PER_LEG.iter().any(|n| name_is(&h.name, n));
        if !owned || (keep_contact && name_is(&h.name, "Contact")) {
            to.headers.push(h.clone());
        }
    }
    to.set_body(from.body.clone());
}

/// Whether `msg` lists `option` (e.g. `replaces`) in Supported (or its
/// compact form `k`).
pub fn supports(msg: &SipMessage, option: &str) -> bool {
    msg.headers
        .iter()
        .filter(|h| name_is(&h.name, "Supported"))
        .flat_map(|h| h.value.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case(option))
}

/// Max-Forwards for the forwarded request; `None` when it reached zero.
pub fn next_max_forwards(req: &SipMessage) -> Option<u32> {
    match req.header("Max-Forwards") {
        None => Some(70),
        Some(v) => match v.trim().parse::<u32>() {
            Ok(0) => None,
            Ok(n) => Some(n - 1),
            Err(_) => Some(70),
        },
    }
}

pub fn via_value(proto: Proto, local: SocketAddr, branch: &str) -> String {
    format!(
        "SIP/2.0/{} {};branch={branch};rport",
        proto.via_name(),
        host_port(local)
    )
}

pub fn contact_value(proto: Proto, local: SocketAddr) -> String {
    match proto {
        Proto::Udp => format!("<sip:{}>", host_port(local)),
        Proto::Tcp => format!("<sip:{};transport=tcp>", host_port(local)),
    }
}

pub use crate::sip::response::response_to;
pub use crate::sip::status::reason;

/// Why a request is refused before anything is done with it: the status
/// RFC 3261 names and the problem for the Warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub status: u16,
    pub problem: String,
}

impl From<String> for Refused {
    fn from(problem: String) -> Self {
        Refused {
            status: 400,
            problem,
        }
    }
}

impl From<&str> for Refused {
    fn from(problem: &str) -> Self {
        problem.to_string().into()
    }
}

/// The Request-URI rules (RFC 3261 §8.2.2.1, §19.1.1): an absolute URI,
/// no angle brackets, no headers (`?`) in a SIP URI; a scheme the host
/// does not handle is 416.
fn validate_request_uri(uri: &str) -> Result<(), Refused> {
    if uri.contains(['<', '>']) {
        return Err("Request-URI in angle brackets".into());
    }
    let scheme = uri.split_once(':').map_or("", |(s, _)| s);
    let is = |name: &str| scheme.eq_ignore_ascii_case(name);
    if is("sip") || is("sips") {
        if uri.contains('?') {
            return Err("Request-URI with headers".into());
        }
        SipUri::parse(uri).ok_or("malformed Request-URI")?;
        Ok(())
    } else if is("tel") {
        Ok(())
    } else {
        Err(Refused {
            status: 416,
            problem: format!("unsupported URI scheme in {uri}"),
        })
    }
}

/// Check what a request must carry before a transaction can be made of it.
pub fn validate_request(m: &SipMessage) -> Result<(), Refused> {
    let method = m.method().ok_or("not a request")?;
    let via = m.top_via().ok_or("missing or malformed Via")?;
    if via.branch().is_none_or(str::is_empty) {
        return Err("Via without branch".into());
    }
    validate_common(m)?;
    let (_, cseq_method) = m.cseq().ok_or("malformed CSeq")?;
    if cseq_method != method {
        return Err("CSeq method does not match the request".into());
    }
    if let Some(mf) = m.header("Max-Forwards") {
        mf.trim()
            .parse::<u32>()
            .map_err(|_| "malformed Max-Forwards".to_string())?;
    }
    if let Some(uri) = m.request_uri() {
        validate_request_uri(uri)?;
    }
    let star = m
        .headers
        .iter()
        .any(|h| name_is(&h.name, "Contact") && h.value.trim() == "*");
    if star && method != "REGISTER" {
        return Err("Contact: * outside REGISTER".into());
    }
    Ok(())
}

pub fn validate_response(m: &SipMessage) -> Result<(), String> {
    m.top_via()
        .and_then(|v: Via| v.branch().map(str::to_string))
        .ok_or("missing Via branch")?;
    validate_common(m)?;
    m.cseq().ok_or("malformed CSeq")?;
    Ok(())
}

fn validate_common(m: &SipMessage) -> Result<(), String> {
    for name in ["From", "To"] {
        let v = m.header(name).ok_or(format!("missing {name}"))?;
        NameAddr::parse(v).ok_or(format!("malformed {name}"))?;
    }
    if m.call_id().is_none_or(|c| c.trim().is_empty()) {
        return Err("missing Call-ID".into());
    }
    Ok(())
}

/// Strip the tag from a From/To value: the leg's address without its dialog id.
pub fn without_tag(value: &str) -> Option<NameAddr> {
    let mut na = NameAddr::parse(value)?;
    na.remove_param("tag");
    Some(na)
}

/// URI of the first Contact, if any.
pub fn contact_uri(m: &SipMessage) -> Option<String> {
    m.header_values("Contact")
        .first()
        .and_then(|c| NameAddr::parse(c))
        .map(|n| n.uri)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::ParseLimits;

    fn msg(s: &str) -> SipMessage {
        SipMessage::parse(s.as_bytes(), ParseLimits::default()).unwrap()
    }

    const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKa, SIP/2.0/UDP 10.0.0.0;branch=z9hG4bKb\r\n\
        Max-Forwards: 5\r\n\
        From: <sip:alice@example.com>;tag=fa\r\n\
        To: <sip:bob@example.com>\r\n\
        Call-ID: c@10.0.0.1\r\n\
        CSeq: 1 INVITE\r\n\
        Contact: <sip:alice@10.0.0.1>\r\n\
        Record-Route: <sip:p;lr>\r\n\
        User-Agent: Old/1.0\r\n\
        Accept-Contact: *;+g.oma.sip-im\r\n\
        Content-Type: application/sdp\r\n\
        Content-Length: 3\r\n\r\nv=0";

    #[test]
    fn copies_end_to_end_headers_and_body_only() {
        let src = msg(INVITE);
        let mut out = SipMessage::request("INVITE", "sip:bob@example.com");
        copy_end_to_end(&src, &mut out, false);
        let names: Vec<_> = out.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "User-Agent",
                "Accept-Contact",
                "Content-Type",
                "Content-Length"
            ]
        );
        assert_eq!(&out.body[..], b"v=0");
        let mut out = SipMessage::request("REGISTER", "sip:r");
        copy_end_to_end(&src, &mut out, true);
        assert_eq!(out.header("Contact"), Some("<sip:alice@10.0.0.1>"));
    }

    #[test]
    fn max_forwards_decrements_and_stops_at_zero() {
        assert_eq!(next_max_forwards(&msg(INVITE)), Some(4));
        let zero = INVITE.replace("Max-Forwards: 5", "Max-Forwards: 0");
        assert_eq!(next_max_forwards(&msg(&zero)), None);
    }

    #[test]
    fn response_echoes_vias_and_adds_to_tag() {
        let r = response_to(&msg(INVITE), 486, "Busy Here", Some("tt"));
        assert_eq!(r.header_values("Via").len(), 2);
        assert_eq!(r.to_tag().as_deref(), Some("tt"));
        assert_eq!(r.cseq(), Some((1, "INVITE".into())));
        let trying = response_to(&msg(INVITE), 100, "Trying", Some("tt"));
        assert_eq!(trying.to_tag(), None, "100 carries no tag");
    }

    #[test]
    fn validation_names_the_problem() {
        assert!(validate_request(&msg(INVITE)).is_ok());
        let no_callid = INVITE.replace("Call-ID: c@10.0.0.1\r\n", "");
        assert_eq!(
            validate_request(&msg(&no_callid)),
            Err("missing Call-ID".into())
        );
        let bad_cseq = INVITE.replace("CSeq: 1 INVITE", "CSeq: 1 BYE");
        assert!(validate_request(&msg(&bad_cseq))
            .unwrap_err()
            .problem
            .contains("CSeq"));
        let no_branch = INVITE.replace(";branch=z9hG4bKa", "");
        assert_eq!(
            validate_request(&msg(&no_branch)),
            Err("Via without branch".into())
        );
        let bad_mf = INVITE.replace("Max-Forwards: 5", "Max-Forwards: x");
        assert!(validate_request(&msg(&bad_mf)).is_err());
    }

    #[test]
    fn via_and_contact_forms() {
        let v6: SocketAddr = "[::1]:5060".parse().unwrap();
        assert_eq!(
            via_value(Proto::Tcp, v6, "z9hG4bKx"),
            "SIP/2.0/TCP [::1]:5060;branch=z9hG4bKx;rport"
        );
        assert_eq!(
            contact_value(Proto::Tcp, v6),
            "<sip:[::1]:5060;transport=tcp>"
        );
    }
}
