//! Responses built from the request they answer: the headers RFC 3261
//! §8.2.6.2 copies (Via, From, To with the answerer's tag, Call-ID, CSeq)
//! and, for one that can set up a dialog, the Record-Route (§12.1.1). Used
//! by the host's transactions, its logic, and its edge when it sheds load.

use crate::{NameAddr, SipMessage};
use bytes::Bytes;

/// Whether `message` can be answered without a transaction (a refusal, an
/// overload 503): a request but ACK, which is never answered (RFC 3261
/// §17.1.1.3), carrying a Via to send the answer to (§18.2.2). Any Via
/// value will do: a 505 answers exactly a Via of another SIP version. The
/// one rule for the edge and the logic.
pub fn answerable(message: &SipMessage) -> bool {
    message.is_request()
        && message.request_method() != Some(crate::Method::Ack)
        && message.header("Via").is_some()
}

/// A response to `request` with its Via, From, To, Call-ID and CSeq; `to_tag`
/// is added when the request's To has none (RFC 3261 section 8.2.6.2); a
/// 101–299 to a request outside a dialog also copies its Record-Route.
pub fn response_to(
    request: &SipMessage,
    status: u16,
    reason: &str,
    to_tag: Option<&str>,
) -> SipMessage {
    let mut r = SipMessage::response(status, reason);
    for v in request.header_values("Via") {
        r.push_header("Via", v);
    }
    if let Some(v) = request.header("From") {
        r.push_header("From", v);
    }
    if let Some(v) = request.header("To") {
        let to = match (NameAddr::parse(v), to_tag) {
            (Some(na), Some(tag)) if na.tag().is_none() && status > 100 => {
                na.with_tag(tag).to_string()
            }
            _ => v.to_string(),
        };
        r.push_header("To", to);
    }
    for name in ["Call-ID", "CSeq"] {
        if let Some(v) = request.header(name) {
            r.push_header(name, v);
        }
    }
    // RFC 3261 §12.1.1: a response that can set up a dialog carries the
    // request's Record-Route, in order, so the far side learns its route set.
    let out_of_dialog = request.to_tag().is_none();
    if out_of_dialog && (101..300).contains(&status) {
        for v in request.header_values("Record-Route") {
            r.push_header("Record-Route", v);
        }
    }
    r.set_body(Bytes::new());
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> SipMessage {
        SipMessage::parse(text.as_bytes(), Default::default()).expect("parses")
    }

    #[test]
    fn answerable_is_a_request_but_ack_with_a_via() {
        let head = |start: &str, via: &str| {
            format!(
                "{start}\r\n{via}From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: c\r\n\
                 CSeq: 1 {}\r\nContent-Length: 0\r\n\r\n",
                start.split(' ').next().unwrap_or_default()
            )
        };
        let via = "Via: SIP/2.0/UDP h:5060;branch=z9hG4bKx\r\n";
        assert!(answerable(&parse(&head("INVITE sip:b@h SIP/2.0", via))));
        assert!(answerable(&parse(&head("OPTIONS sip:b@h SIP/2.0", via))));
        assert!(answerable(&parse(&head(
            "INVITE sip:b@h SIP/2.0",
            "Via: SIP/7.0/UDP h:5060;branch=z9hG4bKx\r\n"
        ))));
        assert!(!answerable(&parse(&head("ACK sip:b@h SIP/2.0", via))));
        assert!(!answerable(&parse(&head("INVITE sip:b@h SIP/2.0", ""))));
        let response = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h:5060;branch=z9hG4bKx\r\n\
                        From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: c\r\n\
                        CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        assert!(!answerable(&parse(response)));
    }
}
