//! Responses built from the request they answer: the headers RFC 3261
//! §8.2.6.2 copies (Via, From, To with the answerer's tag, Call-ID, CSeq)
//! and, for one that can set up a dialog, the Record-Route (§12.1.1). Used
//! by the host's transactions, its logic, and its edge when it sheds load.

use crate::{NameAddr, SipMessage};
use bytes::Bytes;

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
