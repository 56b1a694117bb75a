//! Pure rewriting of messages between the two legs of a call.

use crate::sip::header::NameAddrRef;
use crate::sip::message::name_is;
use crate::sip::uri::{host_port, SipUriRef};
use crate::sip::{NameAddr, SipMessage, Via};
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
    /// For a 420: the options of the Require that the host does not
    /// support, for the answer's Unsupported (RFC 3261 §8.2.2.3).
    pub unsupported: Option<String>,
}

impl From<String> for Refused {
    fn from(problem: String) -> Self {
        Refused {
            status: 400,
            problem,
            unsupported: None,
        }
    }
}

/// The option tags a request may Require of the host: those it implements
/// (`replaces`, RFC 3891, across the B2BUA) and those it relays end to end
/// with their meaning intact, the far end answering for them: reliable
/// provisionals (`100rel`, PRACK in the dialog), session timers, refer
/// extensions (`norefersub`, `multiple-refer`, `tdialog`), resource lists
/// (`recipient-list-*`), registration through proxies (`path`, `outbound`,
/// `gruu`), preconditions, `histinfo`, `join`, `eventlist`.
pub const EXTENSIONS: &[&str] = &[
    "100rel",
    "timer",
    "replaces",
    "norefersub",
    "multiple-refer",
    "tdialog",
    "recipient-list-invite",
    "recipient-list-message",
    "recipient-list-subscribe",
    "path",
    "outbound",
    "gruu",
    "precondition",
    "histinfo",
    "join",
    "eventlist",
];

/// The headers [`validate_request`] reads beyond the envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Checked {
    Via,
    Contact,
    Route,
    RecordRoute,
    Require,
}

impl Checked {
    /// Which one `name` is (compact forms too): by length first, so the
    /// many headers that are none of them cost one comparison.
    fn of(name: &str) -> Option<Checked> {
        use Checked::*;
        let candidates: &[(&str, Checked)] = match name.len() {
            1 => &[("Via", Via), ("Contact", Contact)],
            3 => &[("Via", Via)],
            5 => &[("Route", Route)],
            7 => &[("Contact", Contact), ("Require", Require)],
            12 => &[("Record-Route", RecordRoute)],
            _ => return None,
        };
        candidates
            .iter()
            .find(|(full, _)| name_is(name, full))
            .map(|&(_, c)| c)
    }
}

/// What one pass over a request's headers finds, kept apart so that
/// [`validate_request`] reports it in its own order.
struct Scan<'a> {
    /// The first malformed Via.
    via: Result<(), Refused>,
    /// A Contact that is `*`.
    star: bool,
    /// The first malformed Contact, Route or Record-Route.
    address: Result<(), Refused>,
    /// Options of a Require the host does not know (RFC 3261 §8.2.2.3);
    /// none for ACK and CANCEL, which are never refused so.
    unknown: Vec<&'a str>,
}

fn scan(m: &SipMessage) -> Scan<'_> {
    let require_binds = !matches!(m.method(), Some("ACK" | "CANCEL"));
    let mut s = Scan {
        via: Ok(()),
        star: false,
        address: Ok(()),
        unknown: Vec::new(),
    };
    for h in &m.headers {
        let (checked, value) = match Checked::of(&h.name) {
            Some(c) => (c, h.value.as_str()),
            None => continue,
        };
        match checked {
            Checked::Via if s.via.is_ok() => s.via = check_via(value),
            Checked::Contact => {
                s.star |= value.trim() == "*";
                if s.address.is_ok() {
                    s.address = check_addresses("Contact", value);
                }
            }
            Checked::Route if s.address.is_ok() => s.address = check_addresses("Route", value),
            Checked::RecordRoute if s.address.is_ok() => {
                s.address = check_addresses("Record-Route", value)
            }
            Checked::Require if require_binds => s.unknown.extend(
                crate::sip::header::split_list(value)
                    .into_iter()
                    .filter(|o| !EXTENSIONS.iter().any(|e| e.eq_ignore_ascii_case(o))),
            ),
            _ => {}
        }
    }
    s
}

/// A Via header's value (RFC 3261 §20.42): each element a sent-protocol
/// and sent-by, then parameters none of which is empty; no empty element.
fn check_via(value: &str) -> Result<(), Refused> {
    for element in value.split(',') {
        let well_formed = Via::parse(element).is_some()
            && element.split(';').skip(1).all(|p| !p.trim().is_empty());
        if !well_formed {
            return Err("malformed Via".into());
        }
    }
    Ok(())
}

/// A Contact (but `*`), Route or Record-Route value: each element a
/// name-addr or addr-spec whose SIP URI parses; Route and Record-Route in
/// angle brackets.
fn check_addresses(name: &str, value: &str) -> Result<(), Refused> {
    for element in crate::sip::header::split_list(value) {
        if name == "Contact" && element == "*" {
            continue;
        }
        // Read in place: only whether it is well-formed matters here.
        let na = NameAddrRef::parse(element).ok_or(format!("malformed {name}"))?;
        if name != "Contact" && !na.bracketed {
            return Err(format!("{name} without angle brackets").into());
        }
        let scheme = na.uri.split_once(':').map_or("", |(s, _)| s);
        let sip = scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips");
        if sip && SipUriRef::parse(na.uri).is_none() {
            return Err(format!("malformed URI in {name}").into());
        }
    }
    Ok(())
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
        // SipUri tells a `?` of the user part (RFC 3261 §25.1) from one
        // that starts headers.
        let parsed = SipUriRef::parse(uri).ok_or("malformed Request-URI")?;
        if !parsed.headers.is_empty() {
            return Err("Request-URI with headers".into());
        }
        Ok(())
    } else if is("tel") {
        Ok(())
    } else {
        Err(Refused {
            status: 416,
            problem: format!("unsupported URI scheme in {uri}"),
            unsupported: None,
        })
    }
}

/// Check what a request must carry before a transaction can be made of it.
pub fn validate_request(m: &SipMessage) -> Result<(), Refused> {
    let method = m.method().ok_or("not a request")?;
    let via = m.top_via().ok_or("missing or malformed Via")?;
    // Without a branch (an RFC 2543 peer) the transaction is matched as
    // RFC 3261 §17.2.3 says (`entities/table.rs`); the magic cookie alone
    // names no transaction at all (RFC 4475 §3.2.1).
    if via
        .branch()
        .is_some_and(|b| b.eq_ignore_ascii_case("z9hG4bK"))
    {
        return Err("Via branch is the magic cookie alone".into());
    }
    // The headers below are read in one pass (a request has many).
    let found = scan(m);
    found.via?;
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
    if found.star && method != "REGISTER" {
        return Err("Contact: * outside REGISTER".into());
    }
    found.address?;
    if !found.unknown.is_empty() {
        let list = found.unknown.join(", ");
        return Err(Refused {
            status: 420,
            problem: format!("unsupported option in Require: {list}"),
            unsupported: Some(list),
        });
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
        NameAddrRef::parse(v).ok_or(format!("malformed {name}"))?;
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
    #[test]
    fn an_unknown_required_option_is_refused_420_naming_it() {
        let with = |require: &str| {
            INVITE.replace(
                "Max-Forwards: 5\r\n",
                &format!("Max-Forwards: 5\r\nRequire: {require}\r\n"),
            )
        };
        assert_eq!(validate_request(&msg(&with("100rel, replaces"))), Ok(()));
        let refused = validate_request(&msg(&with("100rel, nothingSupportedHere, x-y")))
            .expect_err("unknown options");
        assert_eq!(refused.status, 420);
        assert_eq!(
            refused.unsupported.as_deref(),
            Some("nothingSupportedHere, x-y")
        );
        // ACK and CANCEL are never refused for their Require.
        let cancel = with("nothingSupportedHere")
            .replace("INVITE sip:", "CANCEL sip:")
            .replace("1 INVITE", "1 CANCEL");
        assert_eq!(validate_request(&msg(&cancel)), Ok(()));
    }

    #[test]
    fn vias_routes_and_contacts_must_be_well_formed() {
        let bad = [
            INVITE.replace("branch=z9hG4bKa,", "branch=z9hG4bKa;;,"),
            INVITE.replace("branch=z9hG4bKa,", "branch=z9hG4bKa,,"),
            INVITE.replace(
                "Max-Forwards: 5\r\n",
                "Max-Forwards: 5\r\nRoute: sip:p@x;lr\r\n",
            ),
            INVITE.replace(
                "Max-Forwards: 5\r\n",
                "Max-Forwards: 5\r\nContact: sip:a@b?Route=x\r\n",
            ),
            INVITE.replace(
                "Max-Forwards: 5\r\n",
                "Max-Forwards: 5\r\nRecord-Route: <sip:[::1>\r\n",
            ),
        ];
        for m in bad {
            assert_eq!(
                validate_request(&msg(&m)).map_err(|r| r.status),
                Err(400),
                "{m}"
            );
        }
    }

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
        // An RFC 2543 peer's request (no branch) is matched otherwise.
        let no_branch = INVITE.replace(";branch=z9hG4bKa", "");
        assert_eq!(validate_request(&msg(&no_branch)), Ok(()));
        let cookie_alone = INVITE.replace(";branch=z9hG4bKa", ";branch=z9hG4bK");
        assert_eq!(
            validate_request(&msg(&cookie_alone)),
            Err("Via branch is the magic cookie alone".into())
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
