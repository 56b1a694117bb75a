//! Where the transports deliver what they receive: the queue of the core
//! shard that owns the call (see [`crate::shard`]).

use super::{InboundError, TransportEvent};
use crate::shard::{Pins, ShardMap};
use crate::sip::SipMessage;
use std::sync::Arc;
use tokio::sync::mpsc;

/// The core has stopped.
#[derive(Debug)]
pub struct Closed;

#[derive(Clone)]
pub struct CoreInbox {
    queues: Vec<mpsc::Sender<TransportEvent>>,
    map: ShardMap,
    pins: Arc<Pins>,
}

impl CoreInbox {
    /// Everything to one queue.
    pub fn single(queue: mpsc::Sender<TransportEvent>) -> CoreInbox {
        CoreInbox {
            queues: vec![queue],
            map: ShardMap::new(1),
            pins: Arc::default(),
        }
    }

    /// One queue per shard, in shard order; `pins` shared with the shards.
    pub fn sharded(queues: Vec<mpsc::Sender<TransportEvent>>, pins: Arc<Pins>) -> CoreInbox {
        let map = ShardMap::new(queues.len());
        CoreInbox { queues, map, pins }
    }

    /// A message's shard: its Call-ID's pin, or for an initial INVITE with
    /// Replaces the shard of the replaced dialog (then pinned), or its
    /// Call-ID's own shard.
    fn shard_of_message(&self, m: &SipMessage) -> usize {
        let Some(call_id) = m.call_id() else {
            return 0;
        };
        if self.map.count() == 1 {
            return 0;
        }
        if let Some(shard) = self.pins.get(call_id) {
            return shard;
        }
        // Replaces is rare: looked for before the To tag is parsed.
        let replaced = (m.method() == Some("INVITE"))
            .then(|| m.header("Replaces"))
            .flatten()
            .filter(|_| m.to_tag().is_none())
            .and_then(|r| r.split(';').next())
            .map(str::trim)
            .filter(|c| !c.is_empty());
        match replaced {
            Some(other) => {
                let shard = self.map.of_call_id(other);
                self.pins.pin(call_id, shard);
                shard
            }
            None => self.map.of_call_id(call_id),
        }
    }

    fn shard_of(&self, ev: &TransportEvent) -> usize {
        match ev {
            TransportEvent::Inbound(i) => {
                let call_id = match &i.message {
                    Ok(m) => return self.shard_of_message(m),
                    Err(InboundError::BadMessage { head, .. }) => head.call_id(),
                    Err(InboundError::Unparseable(_)) => None,
                };
                call_id.map_or(0, |c| {
                    self.pins.get(c).unwrap_or_else(|| self.map.of_call_id(c))
                })
            }
            // Tokens are transaction ids, which name their shard.
            TransportEvent::SendFailed { token, .. } => token.map_or(0, |t| self.map.of_id(t)),
        }
    }

    /// Waits while the shard's queue is full (back-pressure on the socket).
    pub async fn send(&self, ev: TransportEvent) -> Result<(), Closed> {
        let queue = &self.queues[self.shard_of(&ev)];
        queue.send(ev).await.map_err(|_| Closed)
    }

    /// Drops the event when the queue is full or closed.
    pub fn try_send(&self, ev: TransportEvent) {
        let queue = &self.queues[self.shard_of(&ev)];
        let _ = queue.try_send(ev);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::call_id_on_shard;

    fn inbox(shards: usize) -> (CoreInbox, Arc<Pins>) {
        let pins = Arc::new(Pins::default());
        let queues = (0..shards).map(|_| mpsc::channel(1).0).collect();
        (CoreInbox::sharded(queues, pins.clone()), pins)
    }

    fn msg(
        method: &str,
        call_id: &str,
        to_tag: Option<&str>,
        replaces: Option<&str>,
    ) -> SipMessage {
        let mut m = SipMessage::request(method, "sip:bob@127.0.0.4");
        m.push_header("Call-ID", call_id);
        match to_tag {
            Some(t) => m.push_header("To", format!("<sip:bob@x>;tag={t}")),
            None => m.push_header("To", "<sip:bob@x>"),
        }
        if let Some(r) = replaces {
            m.push_header("Replaces", r);
        }
        m
    }

    #[test]
    fn an_invite_with_replaces_follows_the_replaced_dialog_and_pins_its_call_id() {
        let (inbox, pins) = inbox(4);
        let replaced = call_id_on_shard("c9", 3);
        let focus = "f1@focus";
        let invite = msg(
            "INVITE",
            focus,
            None,
            Some(&format!("{replaced};to-tag=a;from-tag=b")),
        );
        assert_eq!(inbox.shard_of_message(&invite), 3);
        assert_eq!(pins.get(focus), Some(3), "pinned");
        // Everything later of that Call-ID goes there too: ACK, CANCEL, BYE.
        for later in [
            msg("ACK", focus, Some("h"), None),
            msg("CANCEL", focus, None, None),
            msg("BYE", focus, Some("h"), None),
        ] {
            assert_eq!(inbox.shard_of_message(&later), 3);
        }
        pins.unpin(focus);
        assert!(pins.is_empty());
        assert_eq!(
            inbox.shard_of_message(&msg("BYE", &call_id_on_shard("z", 1), Some("h"), None)),
            1
        );
    }

    #[test]
    fn one_shard_never_pins() {
        let (inbox, pins) = inbox(1);
        let invite = msg("INVITE", "f1@focus", None, Some("c9;to-tag=a;from-tag=b"));
        assert_eq!(inbox.shard_of_message(&invite), 0);
        assert!(pins.is_empty());
    }

    #[test]
    fn a_re_invite_with_replaces_pins_nothing() {
        let (inbox, pins) = inbox(4);
        let re = msg(
            "INVITE",
            "f1@focus",
            Some("h"),
            Some("c9;to-tag=a;from-tag=b"),
        );
        inbox.shard_of_message(&re);
        assert!(pins.is_empty());
    }
}
