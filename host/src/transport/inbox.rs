//! Where the transports deliver what they receive: the queue of the core
//! shard that owns the call (see [`crate::shard`]).

use super::{InboundError, TransportEvent};
use crate::shard::ShardMap;
use tokio::sync::mpsc;

/// The core has stopped.
#[derive(Debug)]
pub struct Closed;

#[derive(Clone)]
pub struct CoreInbox {
    queues: Vec<mpsc::Sender<TransportEvent>>,
    map: ShardMap,
}

impl CoreInbox {
    /// Everything to one queue.
    pub fn single(queue: mpsc::Sender<TransportEvent>) -> CoreInbox {
        CoreInbox {
            queues: vec![queue],
            map: ShardMap::new(1),
        }
    }

    /// One queue per shard, in shard order.
    pub fn sharded(queues: Vec<mpsc::Sender<TransportEvent>>) -> CoreInbox {
        let map = ShardMap::new(queues.len());
        CoreInbox { queues, map }
    }

    fn shard_of(&self, ev: &TransportEvent) -> usize {
        match ev {
            TransportEvent::Inbound(i) => {
                let call_id = match &i.message {
                    Ok(m) => m.call_id(),
                    Err(InboundError::BadMessage { head, .. }) => head.call_id(),
                    Err(InboundError::Unparseable(_)) => None,
                };
                call_id.map_or(0, |c| self.map.of_call_id(c))
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
