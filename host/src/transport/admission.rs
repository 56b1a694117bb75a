//! The edge's own answer when a shard cannot take a new request (its new
//! lane is full, see `inbox.rs`): 503 Service Unavailable with Retry-After,
//! sent straight back on the transport it came over, with no transaction
//! kept (a retransmission meets the same answer, or the core if it caught
//! up). Cheap on purpose: the request is already parsed, the answer copies
//! five headers. What cannot be answered (a malformed message, an ACK) is
//! dropped and counted.

use super::inbox::EDGE_TAG_MARK;
use super::{Inbound, Shared};
use crate::metrics as m;
use crate::sip::response::{answerable, response_to};
use crate::sip::status::reason;
use bytes::Bytes;
use std::sync::Arc;

/// Seconds a shed client is asked to wait (RFC 3261 §21.5.4).
pub const RETRY_AFTER_SECONDS: u32 = 2;

/// Answers `inbound` 503 at the edge (see the module doc); `stage` names
/// why in `escalator_overload_shed_total`.
pub(super) fn shed(shared: &Arc<Shared>, inbound: Inbound, stage: &'static str) {
    let source = inbound.source.clone();
    if let Some(bytes) = answer(inbound, stage) {
        shared.send(&source, bytes, None);
    }
}

/// The 503 for `inbound`, counted and logged, if it can be answered.
pub(super) fn answer(inbound: Inbound, stage: &'static str) -> Option<Bytes> {
    let Inbound {
        source, message, ..
    } = inbound;
    let request = match message {
        Ok(m) if answerable(&m) => m,
        _ => {
            m::shed("other", stage);
            tracing::debug!(%source, "overload: unanswerable message dropped at the edge");
            return None;
        }
    };
    let method = request.method().unwrap_or_default();
    m::shed(method, stage);
    tracing::debug!(%source, stage, request = %request.summary(), "overload: 503 at the edge");
    let tag = edge_tag();
    let mut answer = response_to(&request, 503, reason(503), Some(&tag));
    answer.push_header("Retry-After", RETRY_AFTER_SECONDS.to_string());
    m::count_out(&answer);
    Some(answer.to_bytes())
}

/// A To tag the edge's 503s carry, so their ACKs are known (`inbox.rs`).
fn edge_tag() -> String {
    use rand::Rng;
    format!("{:016x}{EDGE_TAG_MARK}", rand::rng().random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::inbox::Lane;
    use crate::transport::{Proto, Target, TransportEvent};

    #[test]
    fn the_ack_of_an_edge_503_is_known_by_its_tag() {
        let tag = edge_tag();
        assert!(tag.ends_with(EDGE_TAG_MARK));
        let ack = crate::sip::SipMessage::parse(
            format!(
                "ACK sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5;branch=z9hG4bKa\r\n\
                 From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag={tag}\r\nCall-ID: c\r\n\
                 CSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            )
            .as_bytes(),
            Default::default(),
        )
        .expect("parses");
        let ev = TransportEvent::Inbound(Inbound {
            source: Target {
                proto: Proto::Udp,
                addr: "127.0.0.1:5".parse().expect("literal"),
                conn: None,
            },
            local: "127.0.0.1:6".parse().expect("literal"),
            message: Ok(ack),
            received: std::time::Instant::now(),
        });
        assert_eq!(Lane::of(&ev), Lane::Drop);
        // The host's own tags never end so.
        assert!(!crate::entities::dialog::new_tag().ends_with(EDGE_TAG_MARK));
    }
}
