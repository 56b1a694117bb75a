//! Where the transports deliver what they receive: the queues of the core
//! shard that owns the call (see [`crate::shard`]), two per shard.
//!
//! Overload control starts here. What belongs to something the host already
//! holds (a response, a request inside a dialog, an ACK, a failed send) goes
//! to the shard's *dialog lane*, which the shard always reads first and
//! which is never shed: when it is full the socket waits (back-pressure).
//! A new request outside a dialog goes to the *new lane*, bounded by
//! `new_request_queue`; when that is full, or when the shard's last new
//! request had waited more than half of `shed_after_ms` and others still
//! wait (the lane is not draining in time, whatever the shard's speed),
//! the edge answers the request 503 itself ([`Delivery::Full`], see
//! `admission.rs`) instead of queueing it to be shed late or letting the
//! socket's buffer overflow, so a client flood never delays the calls in
//! progress. A CANCEL rides the new lane behind its INVITE (never ahead of
//! it) and waits for room rather than being shed; the ACK of a 503 the
//! edge sent is dropped here, as the edge keeps no transaction for it.
//!
//! | message                                   | lane   | lane full          |
//! |-------------------------------------------|--------|--------------------|
//! | response, failed send                     | dialog | socket waits       |
//! | request with a To tag, ACK                | dialog | socket waits       |
//! | ACK of the edge's own 503                 | —      | (dropped)          |
//! | CANCEL                                    | new    | socket waits       |
//! | other request without To tag, bad message | new    | shed at the edge   |

use super::{Inbound, InboundError, TransportEvent};
use crate::shard::{Pins, ShardMap};
use crate::sip::SipMessage;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

/// The core has stopped.
#[derive(Debug)]
pub struct Closed;

/// The end of a To tag the edge puts on the 503s it sends itself (the
/// host's own tags are lowercase letters and digits, so never end so).
pub const EDGE_TAG_MARK: &str = "-edge";

/// Which of its shard's queues a message goes to (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Dialog,
    /// A new request, shed at the edge when the lane is full.
    New,
    /// A CANCEL: the new lane (behind its INVITE), but never shed.
    Cancel,
    /// The ACK of a 503 the edge sent: nothing holds its transaction.
    Drop,
}

impl Lane {
    pub fn of(ev: &TransportEvent) -> Lane {
        match ev {
            TransportEvent::SendFailed { .. } => Lane::Dialog,
            TransportEvent::Inbound(i) => match &i.message {
                Ok(m) => Lane::of_message(m),
                Err(_) => Lane::New,
            },
        }
    }

    fn of_message(m: &SipMessage) -> Lane {
        let Some(method) = m.method() else {
            return Lane::Dialog; // a response
        };
        // Read for every message: the tag in place, not a parsed To.
        let to_tag = m.to_tag_param();
        match method {
            "ACK" if to_tag.is_some_and(|t| t.ends_with(EDGE_TAG_MARK)) => Lane::Drop,
            "ACK" => Lane::Dialog,
            "CANCEL" => Lane::Cancel,
            _ if to_tag.is_some() => Lane::Dialog,
            _ => Lane::New,
        }
    }
}

/// What became of a delivered event.
#[derive(Debug)]
pub enum Delivery {
    Queued,
    /// Dropped on purpose (see [`Lane::Drop`]).
    Dropped,
    /// The new lane is full: the edge answers this request itself.
    Full(Box<Inbound>),
}

/// One shard's two queues, as the transports hold them.
#[derive(Clone)]
pub struct Lanes {
    pub dialog: mpsc::Sender<TransportEvent>,
    pub new: mpsc::Sender<TransportEvent>,
    /// See [`NewLaneWait`].
    wait: Arc<NewLaneWait>,
}

/// One shard's two queues, as the shard reads them: `dialog` first.
pub struct LaneReceivers {
    pub dialog: mpsc::Receiver<TransportEvent>,
    pub new: mpsc::Receiver<TransportEvent>,
    /// The shard notes here how long each new request it takes waited.
    pub wait: Arc<NewLaneWait>,
}

/// How long the last request a shard took from its new lane had waited
/// there (written by the shard, read by the transports).
#[derive(Debug, Default)]
pub struct NewLaneWait(AtomicU64);

impl NewLaneWait {
    pub fn note(&self, waited: Duration) {
        let micros = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
        self.0.store(micros, Ordering::Relaxed);
    }

    fn last(&self) -> Duration {
        Duration::from_micros(self.0.load(Ordering::Relaxed))
    }
}

/// A shard's lanes: the dialog lane holds `dialog` events; the new lane
/// `new` (0: as many as the dialog lane, and a full lane makes the socket
/// wait instead of shedding).
pub fn lanes(dialog: usize, new: usize) -> (Lanes, LaneReceivers) {
    let (dtx, drx) = mpsc::channel(dialog.max(1));
    let (ntx, nrx) = mpsc::channel(if new == 0 { dialog.max(1) } else { new });
    let wait = Arc::new(NewLaneWait::default());
    (
        Lanes {
            dialog: dtx,
            new: ntx,
            wait: wait.clone(),
        },
        LaneReceivers {
            dialog: drx,
            new: nrx,
            wait,
        },
    )
}

/// A new request its lane does not take: the edge answers it (only
/// inbound messages ride the new lane).
fn turned_away(ev: TransportEvent) -> Delivery {
    match ev {
        TransportEvent::Inbound(i) => Delivery::Full(Box::new(i)),
        TransportEvent::SendFailed { .. } => Delivery::Dropped,
    }
}

#[derive(Clone)]
pub struct CoreInbox {
    shards: Vec<Lanes>,
    map: ShardMap,
    pins: Arc<Pins>,
    /// Whether a full new lane sheds (else the socket waits).
    shed: bool,
    /// New requests are shed at the edge while the last one a shard took
    /// had waited longer than this and others wait (half of
    /// `shed_after_ms`); None: only a full lane sheds.
    wait_bound: Option<Duration>,
}

impl CoreInbox {
    /// Everything to one queue, in arrival order, nothing shed (test UAs).
    pub fn single(queue: mpsc::Sender<TransportEvent>) -> CoreInbox {
        CoreInbox {
            shards: vec![Lanes {
                dialog: queue.clone(),
                new: queue,
                wait: Arc::default(),
            }],
            map: ShardMap::new(1),
            pins: Arc::default(),
            shed: false,
            wait_bound: None,
        }
    }

    /// One pair of lanes per shard, in shard order; `pins` shared with the
    /// shards; `shed`: a full new lane sheds at the edge; `shed_after`: the
    /// queueing delay beyond which shards shed (see the module doc).
    pub fn sharded(
        shards: Vec<Lanes>,
        pins: Arc<Pins>,
        shed: bool,
        shed_after: Option<Duration>,
    ) -> CoreInbox {
        let map = ShardMap::new(shards.len());
        CoreInbox {
            shards,
            map,
            pins,
            shed,
            wait_bound: shed_after.map(|d| d / 2),
        }
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

    /// Queues `ev` on its shard's lane (see the module doc): waits while a
    /// lane that is never shed is full; a new request meeting a full new
    /// lane comes back as [`Delivery::Full`] when shedding is on.
    pub async fn send(&self, ev: TransportEvent) -> Result<Delivery, Closed> {
        let lanes = &self.shards[self.shard_of(&ev)];
        let queue = match Lane::of(&ev) {
            Lane::Drop => return Ok(Delivery::Dropped),
            Lane::Dialog => &lanes.dialog,
            Lane::Cancel => &lanes.new,
            Lane::New if !self.shed => &lanes.new,
            Lane::New => {
                let draining_late = self.wait_bound.is_some_and(|bound| {
                    lanes.wait.last() > bound && lanes.new.capacity() < lanes.new.max_capacity()
                });
                if draining_late {
                    return Ok(turned_away(ev));
                }
                return match lanes.new.try_send(ev) {
                    Ok(()) => Ok(Delivery::Queued),
                    Err(TrySendError::Full(ev)) => Ok(turned_away(ev)),
                    Err(TrySendError::Closed(_)) => Err(Closed),
                };
            }
        };
        queue.send(ev).await.map_err(|_| Closed)?;
        Ok(Delivery::Queued)
    }

    /// Drops the event when its lane is full or closed.
    pub fn try_send(&self, ev: TransportEvent) {
        let lanes = &self.shards[self.shard_of(&ev)];
        let queue = match Lane::of(&ev) {
            Lane::Drop => return,
            Lane::Dialog => &lanes.dialog,
            Lane::New | Lane::Cancel => &lanes.new,
        };
        let _ = queue.try_send(ev);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::call_id_on_shard;

    fn inbox(shards: usize) -> (CoreInbox, Arc<Pins>) {
        let pins = Arc::new(Pins::default());
        let queues = (0..shards).map(|_| lanes(1, 1).0).collect();
        (CoreInbox::sharded(queues, pins.clone(), true, None), pins)
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

    fn inbound(m: SipMessage) -> TransportEvent {
        TransportEvent::Inbound(Inbound {
            source: crate::transport::Target {
                proto: crate::transport::Proto::Udp,
                addr: "127.0.0.1:5".parse().expect("literal"),
                conn: None,
            },
            local: "127.0.0.1:6".parse().expect("literal"),
            message: Ok(m),
            received: std::time::Instant::now(),
        })
    }

    #[test]
    fn every_row_of_the_lane_table() {
        let response = {
            let mut r = SipMessage::response(200, "OK");
            r.push_header("Call-ID", "c");
            r
        };
        let edge_ack = msg("ACK", "c", Some(&format!("x{EDGE_TAG_MARK}")), None);
        let cases = [
            (inbound(response), Lane::Dialog),
            (
                TransportEvent::SendFailed {
                    target: crate::transport::Target {
                        proto: crate::transport::Proto::Tcp,
                        addr: "127.0.0.1:5".parse().expect("literal"),
                        conn: None,
                    },
                    token: None,
                },
                Lane::Dialog,
            ),
            (inbound(msg("MESSAGE", "c", Some("t"), None)), Lane::Dialog),
            (inbound(msg("ACK", "c", Some("t"), None)), Lane::Dialog),
            (inbound(edge_ack), Lane::Drop),
            (inbound(msg("CANCEL", "c", None, None)), Lane::Cancel),
            (inbound(msg("INVITE", "c", None, None)), Lane::New),
            (inbound(msg("OPTIONS", "c", None, None)), Lane::New),
        ];
        for (ev, lane) in cases {
            assert_eq!(Lane::of(&ev), lane, "{ev:?}");
        }
    }

    #[tokio::test]
    async fn a_full_new_lane_sheds_new_requests_but_not_the_rest() {
        let (lanes, mut rx) = lanes(4, 1);
        let inbox = CoreInbox::sharded(vec![lanes], Arc::default(), true, None);
        let first = inbox.send(inbound(msg("INVITE", "a", None, None))).await;
        assert!(matches!(first, Ok(Delivery::Queued)));
        let second = inbox.send(inbound(msg("INVITE", "b", None, None))).await;
        assert!(matches!(second, Ok(Delivery::Full(_))), "shed at the edge");
        let in_dialog = inbox.send(inbound(msg("BYE", "c", Some("t"), None))).await;
        assert!(matches!(in_dialog, Ok(Delivery::Queued)), "its own lane");
        // A CANCEL waits for room behind its INVITE rather than being shed.
        let cancel = tokio::spawn({
            let inbox = inbox.clone();
            async move { inbox.send(inbound(msg("CANCEL", "a", None, None))).await }
        });
        tokio::task::yield_now().await;
        assert!(!cancel.is_finished(), "waiting for room");
        assert!(rx.new.recv().await.is_some());
        assert!(matches!(cancel.await.expect("task"), Ok(Delivery::Queued)));
        assert!(matches!(
            rx.new.recv().await,
            Some(TransportEvent::Inbound(i)) if i.message.as_ref().is_ok_and(|m| m.method() == Some("CANCEL"))
        ));
    }

    #[tokio::test]
    async fn a_lane_draining_late_sheds_while_others_wait() {
        let (lanes, rx) = lanes(4, 8);
        let bound = Duration::from_millis(200);
        let inbox = CoreInbox::sharded(vec![lanes], Arc::default(), true, Some(bound));
        rx.wait.note(Duration::from_millis(150));
        // Nothing waits: one gets in, whatever the last wait was.
        let first = inbox.send(inbound(msg("INVITE", "a", None, None))).await;
        assert!(matches!(first, Ok(Delivery::Queued)));
        // One waits and the last one taken had waited over half the bound.
        let second = inbox.send(inbound(msg("INVITE", "b", None, None))).await;
        assert!(matches!(second, Ok(Delivery::Full(_))));
        rx.wait.note(Duration::from_millis(10));
        let third = inbox.send(inbound(msg("INVITE", "c", None, None))).await;
        assert!(matches!(third, Ok(Delivery::Queued)), "caught up");
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
