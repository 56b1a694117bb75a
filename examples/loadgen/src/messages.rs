//! The messages of one load call, as SIPp's `uac.xml` and `core-uas.xml`
//! send them: INVITE with an MSRP offer and an `X-Call` header, 200 with an
//! answer, ACK, BYE, 200. Pure functions; the sockets are elsewhere.

use escalator_sip::message::{name_is, ParseLimits};
use escalator_sip::SipMessage;
use std::net::SocketAddr;

/// The SDP of each side, kept small like the scenarios'.
fn body(user: &str, addr: SocketAddr, port: u16, session: &str) -> String {
    let ip = addr.ip();
    format!(
        "v=0\r\no={user} 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=message {port} TCP/MSRP *\r\na=accept-types:text/plain\r\n\
         a=path:msrp://{ip}:{port}/{session};tcp\r\n"
    )
}

/// The client's identity for one run: where it sends and from where.
#[derive(Debug, Clone)]
pub struct Client {
    pub local: SocketAddr,
    pub target: SocketAddr,
    /// Distinguishes the Call-IDs of runs that share a target.
    pub run: u32,
}

impl Client {
    fn call_id(&self, call: usize) -> String {
        format!("lg{call}-{}@{}", self.run, self.local.ip())
    }

    fn request(&self, method: &str, branch: &str) -> SipMessage {
        let mut m = SipMessage::request(method, &format!("sip:service@{}", self.target));
        m.push_header(
            "Via",
            format!("SIP/2.0/UDP {};branch=z9hG4bK-{branch}", self.local),
        );
        m
    }

    fn finish(&self, m: &mut SipMessage) {
        m.push_header(
            "Contact",
            format!("<sip:load@{};transport=udp>", self.local),
        );
        m.push_header("Max-Forwards", "70");
    }

    pub fn invite(&self, call: usize) -> Vec<u8> {
        let mut m = self.request("INVITE", &format!("{}i{call}", self.run));
        m.push_header("From", format!("<sip:load{call}@example.com>;tag=lg{call}"));
        m.push_header("To", "<sip:service@example.com>");
        m.push_header("Call-ID", self.call_id(call));
        m.push_header("CSeq", "1 INVITE");
        self.finish(&mut m);
        m.push_header("X-Call", call.to_string());
        m.push_header("User-Agent", "escalator-loadgen");
        m.push_header("Content-Type", "application/sdp");
        m.set_body(body("load", self.local, 7654, &format!("l{call}")).into());
        m.to_bytes().to_vec()
    }

    /// A request in `call`'s dialog carrying the To (and tag) of `answer`:
    /// ACK (`seq` 1), BYE (`seq` 2), or any other with its own `seq`.
    pub fn in_dialog(
        &self,
        method: &str,
        seq: u32,
        call: usize,
        answer: &SipMessage,
        branch: &str,
    ) -> Vec<u8> {
        let mut m = self.request(method, branch);
        m.push_header("From", format!("<sip:load{call}@example.com>;tag=lg{call}"));
        m.push_header(
            "To",
            answer.header("To").unwrap_or("<sip:service@example.com>"),
        );
        m.push_header("Call-ID", self.call_id(call));
        m.push_header("CSeq", format!("{seq} {method}"));
        self.finish(&mut m);
        m.push_header("Content-Length", "0");
        m.to_bytes().to_vec()
    }

    /// The ACK of a 2xx: a new transaction.
    pub fn ack(&self, call: usize, ok: &SipMessage) -> Vec<u8> {
        self.in_dialog("ACK", 1, call, ok, &format!("{}a{call}", self.run))
    }

    /// The ACK of a final error response: part of the INVITE transaction,
    /// so it has the INVITE's branch (RFC 3261 section 17.1.1.3).
    pub fn ack_error(&self, call: usize, error: &SipMessage) -> Vec<u8> {
        self.in_dialog("ACK", 1, call, error, &format!("{}i{call}", self.run))
    }

    pub fn bye(&self, call: usize, ok: &SipMessage) -> Vec<u8> {
        self.in_dialog("BYE", 2, call, ok, &format!("{}b{call}", self.run))
    }

    /// The call number of a response to one of this run's requests.
    pub fn call_of(&self, msg: &SipMessage) -> Option<usize> {
        let id = msg.call_id()?;
        let (head, rest) = id.strip_prefix("lg")?.split_once('-')?;
        let (run, _) = rest.split_once('@')?;
        (run.parse::<u32>().ok()? == self.run).then_some(())?;
        head.parse().ok()
    }
}

/// What the client makes of a response.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// A provisional response to the INVITE.
    Trying,
    /// A final response to the INVITE (status).
    InviteFinal(u16),
    /// A final response to the BYE (status).
    ByeFinal(u16),
    /// Anything else (e.g. a 100 to the BYE): ignored.
    Other,
}

pub fn classify(msg: &SipMessage) -> Answer {
    let (Some(status), Some((_, method))) = (msg.status(), msg.cseq()) else {
        return Answer::Other;
    };
    match (method.as_str(), status) {
        ("INVITE", 100..=199) => Answer::Trying,
        ("INVITE", s) => Answer::InviteFinal(s),
        ("BYE", 200..=699) => Answer::ByeFinal(status),
        _ => Answer::Other,
    }
}

pub fn parse(datagram: &[u8]) -> Option<SipMessage> {
    SipMessage::parse(datagram, ParseLimits::default()).ok()
}

/// The server's answer to a request, if it sends one (not to ACK).
pub fn answer(request: &SipMessage, local: SocketAddr) -> Option<Vec<u8>> {
    let method = request.method()?;
    let (status, reason) = match method {
        "ACK" => return None,
        "INVITE" | "BYE" | "MESSAGE" => (200, "OK"),
        _ => (405, "Method Not Allowed"),
    };
    let mut m = SipMessage::response(status, reason);
    for h in request.headers.iter().filter(|h| name_is(&h.name, "Via")) {
        m.push_header("Via", h.value.clone());
    }
    m.push_header("From", request.header("From")?);
    let to = request.header("To")?;
    let call_id = request.call_id()?;
    if to.contains(";tag=") {
        m.push_header("To", to);
    } else {
        // Stable across retransmissions of the same INVITE.
        m.push_header("To", format!("{to};tag=c{:x}", fnv1a(call_id.as_bytes())));
    }
    m.push_header("Call-ID", call_id);
    m.push_header("CSeq", request.header("CSeq")?);
    if method == "INVITE" {
        m.push_header("Contact", format!("<sip:core@{local};transport=udp>"));
        m.push_header("Content-Type", "application/sdp");
        m.set_body(
            body(
                "core",
                local,
                9000,
                &format!("c{:x}", fnv1a(call_id.as_bytes())),
            )
            .into(),
        );
    } else {
        m.push_header("Content-Length", "0");
    }
    Some(m.to_bytes().to_vec())
}

/// The `X-Call` number of an INVITE sent by a client of this generator.
pub fn x_call(request: &SipMessage) -> Option<usize> {
    request.header("X-Call")?.trim().parse().ok()
}

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        Client {
            local: "127.0.0.1:5070".parse().unwrap(),
            target: "127.0.0.2:5060".parse().unwrap(),
            run: 9,
        }
    }

    #[test]
    fn invite_carries_the_call_number_and_an_msrp_offer() {
        let c = client();
        let inv = parse(&c.invite(42)).expect("parses");
        assert_eq!(inv.method(), Some("INVITE"));
        assert_eq!(inv.request_uri(), Some("sip:service@127.0.0.2:5060"));
        assert_eq!(x_call(&inv), Some(42));
        assert_eq!(c.call_of(&inv), Some(42));
        let body = std::str::from_utf8(&inv.body).unwrap();
        assert!(
            body.contains("a=path:msrp://127.0.0.1:7654/l42;tcp"),
            "{body}"
        );
        assert_eq!(
            inv.header("Content-Length"),
            Some(inv.body.len().to_string().as_str())
        );
    }

    #[test]
    fn server_answers_invite_with_a_stable_tag_and_copies_every_via() {
        let c = client();
        let mut inv = parse(&c.invite(3)).unwrap();
        inv.headers.insert(
            0,
            escalator_sip::Header {
                name: "Via".into(),
                value: "SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bKproxy".into(),
            },
        );
        let uas: SocketAddr = "127.0.0.3:5080".parse().unwrap();
        let ok = parse(&answer(&inv, uas).unwrap()).unwrap();
        assert_eq!(ok.status(), Some(200));
        assert_eq!(ok.header_values("Via").len(), 2);
        assert!(ok.header_values("Via")[0].contains("z9hG4bKproxy"));
        assert!(ok.to_tag().is_some());
        assert_eq!(
            answer(&inv, uas),
            answer(&inv, uas),
            "same tag on a retransmission"
        );
        assert_eq!(classify(&ok), Answer::InviteFinal(200));
        assert_eq!(c.call_of(&ok), Some(3));
    }

    #[test]
    fn ack_and_bye_use_the_dialog_of_the_200() {
        let c = client();
        let inv = parse(&c.invite(5)).unwrap();
        let ok = parse(&answer(&inv, "127.0.0.3:5080".parse().unwrap()).unwrap()).unwrap();
        let ack = parse(&c.ack(5, &ok)).unwrap();
        let bye = parse(&c.bye(5, &ok)).unwrap();
        assert_eq!(ack.to_tag(), ok.to_tag());
        assert_eq!(bye.to_tag(), ok.to_tag());
        assert_eq!(bye.cseq(), Some((2, "BYE".into())));
        assert_ne!(
            ack.top_via().unwrap().branch(),
            inv.top_via().unwrap().branch()
        );
        assert!(answer(&ack, "127.0.0.3:5080".parse().unwrap()).is_none());
        let ack_error = parse(&c.ack_error(5, &ok)).unwrap();
        assert_eq!(
            ack_error.top_via().unwrap().branch(),
            inv.top_via().unwrap().branch()
        );
        let bye_ok = parse(&answer(&bye, "127.0.0.3:5080".parse().unwrap()).unwrap()).unwrap();
        assert_eq!(classify(&bye_ok), Answer::ByeFinal(200));
    }

    #[test]
    fn responses_of_another_run_are_not_ours() {
        let c = client();
        let other = Client {
            run: 10,
            ..client()
        };
        let inv = parse(&other.invite(1)).unwrap();
        assert_eq!(c.call_of(&inv), None);
        let trying = SipMessage::parse(
            b"SIP/2.0 100 Trying\r\nCSeq: 1 INVITE\r\nCall-ID: x\r\n\r\n",
            ParseLimits::default(),
        )
        .unwrap();
        assert_eq!(classify(&trying), Answer::Trying);
    }
}
