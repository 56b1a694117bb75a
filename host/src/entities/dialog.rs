//! Dialog state of one leg (RFC 3261 section 12) and the requests built in
//! it. A plain value (serde), so it can be stored and loaded elsewhere.

use crate::sip::{Method, NameAddr, SipMessage};
use crate::transport::Target;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dialog {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: Option<String>,
    /// Our side's address (From in requests we send): the header value
    /// without its tag. Kept as text: the host only ever writes it out.
    pub local_uri: String,
    /// The far side's address, without tag.
    pub remote_uri: String,
    pub local_cseq: u32,
    pub remote_cseq: Option<u32>,
    /// The far side's Contact URI: Request-URI of requests we send.
    pub remote_target: String,
    /// Route headers for requests we send, in order.
    pub route_set: Vec<String>,
    /// Where requests on this leg are sent (the client's flow, or the next hop).
    pub dest: Target,
    /// Last SDP offer and answer exchanged on this leg.
    pub last_offer: Option<Bytes>,
    pub last_answer: Option<Bytes>,
    /// The far side listed `replaces` in Supported when the dialog was set
    /// up (RFC 3891): an INVITE with Replaces naming this dialog may be
    /// passed to it, translated; otherwise the host replaces on its behalf.
    #[serde(default)]
    pub peer_supports_replaces: bool,
}

impl Dialog {
    /// A dialog the host originates (a leg it sends the INVITE on) on core
    /// `shard`: new Call-ID and tag, CSeq starting at 1, no remote tag yet.
    pub fn originating(
        shard: usize,
        local_uri: NameAddr,
        remote_uri: NameAddr,
        remote_target: String,
        dest: Target,
    ) -> Dialog {
        Dialog {
            call_id: new_call_id(shard),
            local_tag: new_tag(),
            remote_tag: None,
            local_uri: local_uri.to_string(),
            remote_uri: remote_uri.to_string(),
            local_cseq: 0,
            remote_cseq: None,
            remote_target,
            route_set: Vec::new(),
            dest,
            last_offer: None,
            last_answer: None,
            peer_supports_replaces: false,
        }
    }

    /// Headers common to every request we originate in this dialog (no Via,
    /// Contact or Max-Forwards: the core adds those). Increments the CSeq.
    pub fn new_request(&mut self, method: &Method) -> SipMessage {
        self.local_cseq += 1;
        let cseq = self.local_cseq;
        self.request_with_cseq(method, cseq)
    }

    /// A request with a given CSeq number (ACK and CANCEL reuse the INVITE's).
    pub fn request_with_cseq(&self, method: &Method, cseq: u32) -> SipMessage {
        let mut m = SipMessage::request(method.as_str(), &self.remote_target);
        for r in &self.route_set {
            m.push_header("Route", r.as_str());
        }
        m.push_header("From", format!("{};tag={}", self.local_uri, self.local_tag));
        m.push_header(
            "To",
            match &self.remote_tag {
                Some(t) => format!("{};tag={t}", self.remote_uri),
                None => self.remote_uri.clone(),
            },
        );
        m.push_header("Call-ID", self.call_id.as_str());
        m.push_header("CSeq", format!("{cseq} {method}"));
        m
    }

    /// Check and record the CSeq of a request received in this dialog
    /// (RFC 3261 section 12.2.2). ACK and CANCEL carry the INVITE's number.
    pub fn accept_remote_cseq(&mut self, cseq: u32, method: &Method) -> bool {
        if matches!(method, Method::Ack | Method::Cancel) {
            return true;
        }
        match self.remote_cseq {
            Some(last) if cseq <= last => false,
            _ => {
                self.remote_cseq = Some(cseq);
                true
            }
        }
    }

    /// Record SDP carried by a message of this dialog.
    pub fn record_sdp(&mut self, msg: &SipMessage) {
        let is_sdp = msg
            .content_type()
            .is_some_and(|c| c.trim().to_ascii_lowercase().starts_with("application/sdp"));
        if !is_sdp || msg.body.is_empty() {
            return;
        }
        let answer_like = match msg.request_method() {
            Some(Method::Ack | Method::Prack) => true,
            Some(_) => false,
            // A response carries the answer to an offer we relayed, or (late offer) an offer.
            None => self.last_offer.is_some() && self.last_answer.is_none(),
        };
        if msg.request_method() == Some(Method::Invite) {
            self.last_answer = None;
        }
        if answer_like {
            self.last_answer = Some(msg.body.clone());
        } else {
            self.last_offer = Some(msg.body.clone());
            self.last_answer = None;
        }
    }
}

pub fn random_token(len: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

pub fn new_tag() -> String {
    random_token(12)
}

/// A fresh Call-ID for a dialog the host originates on core `shard`.
pub fn new_call_id(shard: usize) -> String {
    crate::shard::call_id_on_shard(&random_token(20), shard)
}

/// Branches we generate carry the RFC 3261 magic cookie.
pub fn new_branch() -> String {
    format!("z9hG4bK{}", random_token(20))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Proto;

    fn dialog() -> Dialog {
        Dialog {
            call_id: "c1".into(),
            local_tag: "lt".into(),
            remote_tag: Some("rt".into()),
            local_uri: NameAddr::parse("\"A\" <sip:a@x>").unwrap().to_string(),
            remote_uri: NameAddr::parse("<sip:b@y>").unwrap().to_string(),
            local_cseq: 10,
            remote_cseq: Some(5),
            remote_target: "sip:b@10.0.0.2:5062".into(),
            route_set: vec!["<sip:p1;lr>".into(), "<sip:p2;lr>".into()],
            dest: Target {
                proto: Proto::Udp,
                addr: "10.0.0.9:5060".parse().unwrap(),
                conn: None,
            },
            last_offer: None,
            last_answer: None,
            peer_supports_replaces: false,
        }
    }

    #[test]
    fn builds_in_dialog_request() {
        let mut d = dialog();
        let m = d.new_request(&Method::Bye);
        assert_eq!(m.request_uri(), Some("sip:b@10.0.0.2:5062"));
        assert_eq!(m.header("From"), Some("\"A\" <sip:a@x>;tag=lt"));
        assert_eq!(m.header("To"), Some("<sip:b@y>;tag=rt"));
        assert_eq!(m.cseq(), Some((11, "BYE".into())));
        assert_eq!(m.header_values("Route"), vec!["<sip:p1;lr>", "<sip:p2;lr>"]);
        assert_eq!(d.local_cseq, 11);
    }

    #[test]
    fn remote_cseq_must_increase() {
        let mut d = dialog();
        assert!(!d.accept_remote_cseq(5, &Method::Info));
        assert!(d.accept_remote_cseq(6, &Method::Info));
        assert!(d.accept_remote_cseq(6, &Method::Ack));
        assert!(!d.accept_remote_cseq(6, &Method::Bye));
    }

    #[test]
    fn records_offer_and_answer() {
        let mut d = dialog();
        let mut inv = SipMessage::request("INVITE", "sip:b@y");
        inv.push_header("Content-Type", "application/sdp");
        inv.set_body(Bytes::from_static(b"v=0 offer"));
        d.record_sdp(&inv);
        let mut ok = SipMessage::response(200, "OK");
        ok.push_header("CSeq", "1 INVITE");
        ok.push_header("Content-Type", "application/sdp");
        ok.set_body(Bytes::from_static(b"v=0 answer"));
        d.record_sdp(&ok);
        assert_eq!(d.last_offer.as_deref(), Some(&b"v=0 offer"[..]));
        assert_eq!(d.last_answer.as_deref(), Some(&b"v=0 answer"[..]));
    }

    #[test]
    fn a_dialog_is_a_plain_value_that_round_trips() {
        let mut d = dialog();
        d.last_offer = Some(Bytes::from_static(b"v=0"));
        let text = serde_json::to_string(&d).expect("serialise");
        let back: Dialog = serde_json::from_str(&text).expect("deserialise");
        assert_eq!(back, d);
    }

    #[test]
    fn generated_ids_are_unique_and_well_formed() {
        let b = new_branch();
        assert!(b.starts_with("z9hG4bK"));
        assert_ne!(new_tag(), new_tag());
        assert!(new_call_id(3).ends_with("-s3@escalator"));
    }
}
