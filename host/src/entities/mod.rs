//! The entities layer: the host's user agents without any I/O. It owns the
//! transaction table, the legs and their dialogs, and the timers of both
//! (Timer C included), and knows nothing of relaying or plugins: that is
//! [`crate::logic`], which drives this layer through its API only.
//!
//! | file | owns |
//! |---|---|
//! | `ids.rs` | typed ids: server and client transactions, legs, calls |
//! | `table.rs` | the transaction table and how messages find their transaction |
//! | `dialog.rs` | one dialog's state (RFC 3261 §12) and the requests built in it |
//! | `leg.rs` | a leg: its dialog, its state machine, its INVITE bookkeeping |
//! | `subscriptions.rs` | subscriptions relayed across legs (REFER, SUBSCRIBE) and their ids on each side |
//! | `calls.rs` | legs grouped into calls, pairing, the dialog index |
//! | `mod.rs` | [`Entities`]: input, output, and the commands logic gives |
//!
//! In the manner of an I/O-free protocol machine, the API is sorted into
//! - input: [`Entities::handle_request`], [`Entities::handle_response`],
//!   [`Entities::handle_timer`], [`Entities::handle_send_failed`];
//! - output: [`Entities::poll_transmit`] (messages to send),
//!   [`Entities::poll_event`] (what logic must decide on), and the timer
//!   queue the shard task awaits ([`Entities::next_timer`]);
//! - commands from logic: respond, send on a leg, originate a leg, ACK,
//!   CANCEL, BYE, release;
//! - getters: the call model, a transaction's request and leg.
//!
//! Time is tokio's clock, so the whole layer runs on a paused clock in tests.

pub mod calls;
pub mod dialog;
pub mod ids;
pub mod leg;
pub mod subscriptions;
pub mod table;

use crate::forward::{contact_uri, contact_value, copy_end_to_end, reason, response_to, via_value};
use crate::metrics as m;
use crate::sip::{Method, SipMessage};
use crate::timers::TimerQueue;
use crate::transaction::{Action, ClientState, ClientTx, ServerTx, Timer, TimerConfig};
use crate::transport::{LocalAddrs, Target};
use bytes::Bytes;
use calls::{CallModel, DialogMatch};
use dialog::{new_branch, new_tag, Dialog};
use ids::{CallRef, ClientTxId, LegId, ServerTxId};
use leg::{AckState, Leg, LegEvent, LegState, Role};
use std::collections::VecDeque;
use std::time::Duration;
use table::{ClientEntry, ClientKey, ClientKind, ServerEntry, ServerKey, TransactionTable};
use tracing::{debug, warn};

/// The settings of the entities layer.
#[derive(Debug, Clone, Copy)]
pub struct EntitySettings {
    pub timers: TimerConfig,
    /// Timer C: how long a relayed INVITE may go without a provisional.
    pub timer_c: Duration,
}

/// A message to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Transmit {
    pub target: Target,
    pub bytes: Bytes,
    /// The client transaction to report a send failure to.
    pub token: Option<ClientTxId>,
}

/// What a client transaction is and works for, as it was when an event
/// about it was raised (the entry itself may be gone by then).
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub kind: ClientKind,
    pub leg: Option<LegId>,
    pub origin: Option<ServerTxId>,
    pub target: Target,
    pub method: Method,
}

/// What logic must decide on, in the order it happened.
#[derive(Debug)]
pub enum EntityEvent {
    /// A new request (not ACK, not CANCEL, not a retransmission) has its
    /// server transaction.
    Request(ServerTxId),
    /// The ACK of a 2xx in `leg`'s dialog (its INVITE transaction is done).
    Ack { leg: LegId, ack: SipMessage },
    /// A CANCEL matched an INVITE still waiting for its final response; the
    /// CANCEL is answered 200 already.
    Cancelled { invite: ServerTxId },
    /// A response to act on (retransmissions and dialog bookkeeping are
    /// dealt with; a 2xx on a leg being ended is ACKed and ended with BYE).
    Response {
        tx: ClientTxId,
        info: ClientInfo,
        response: SipMessage,
    },
    /// No final response in time, or the transport failed.
    ClientFailed {
        tx: ClientTxId,
        info: ClientInfo,
        transport_failed: bool,
    },
    /// Timer C: a relayed INVITE went too long without a provisional.
    RingTimeout { tx: ClientTxId, info: ClientInfo },
    /// A final response to an INVITE was never acknowledged.
    Unacknowledged {
        tx: ServerTxId,
        leg: Option<LegId>,
        status: u16,
    },
    /// A leg is gone; `call_over` when it was its call's last.
    LegReleased {
        leg: LegId,
        call: CallRef,
        call_over: bool,
    },
    /// A timer logic set with [`Entities::schedule`].
    Timer(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimerKey {
    Server(ServerTxId, Timer),
    Client(ClientTxId, Timer),
    /// Logic's own timers.
    Logic(u64),
}

/// Why a response could not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RespondError {
    #[error("no such transaction")]
    UnknownTransaction,
    #[error("the transaction has its final response already")]
    AlreadyAnswered,
    #[error("status {0} is not 100..=699")]
    InvalidStatus(u16),
}

/// A request to send on a leg: its method, and the message whose end-to-end
/// headers and body it carries.
pub struct LegRequest<'a> {
    pub method: Method,
    pub from: &'a SipMessage,
    /// Copy `from`'s Contact instead of putting the host's.
    pub keep_contact: bool,
    pub kind: ClientKind,
    pub origin: Option<ServerTxId>,
    pub max_forwards: u32,
    /// A Replaces already translated to the dialog this leg's far end
    /// knows (RFC 3891 §3); Replaces is never copied from `from`.
    pub replaces: Option<String>,
}

pub struct Entities {
    settings: EntitySettings,
    locals: LocalAddrs,
    shard: usize,
    table: TransactionTable,
    calls: CallModel,
    timers: TimerQueue<TimerKey>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<EntityEvent>,
}

impl Entities {
    /// The entities of shard `shard` of `shards`.
    pub fn new(settings: EntitySettings, locals: LocalAddrs, shard: usize, shards: usize) -> Self {
        Entities {
            settings,
            locals,
            shard,
            table: TransactionTable::for_shard(shard, shards),
            calls: CallModel::for_shard(shard, shards),
            timers: TimerQueue::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    // ----- output -----

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<EntityEvent> {
        self.events.pop_front()
    }

    /// The next timer that fires (pending while there is none).
    pub async fn next_timer(&mut self) -> TimerKey {
        self.timers.expired().await
    }

    // ----- getters -----

    pub fn calls(&self) -> &CallModel {
        &self.calls
    }

    pub fn calls_mut(&mut self) -> &mut CallModel {
        &mut self.calls
    }

    pub fn shard(&self) -> usize {
        self.shard
    }

    pub fn settings(&self) -> EntitySettings {
        self.settings
    }

    pub fn transaction_count(&self) -> usize {
        self.table.len()
    }

    pub fn is_idle(&self) -> bool {
        self.table.is_empty()
    }

    pub fn server(&self, id: ServerTxId) -> Option<&ServerEntry> {
        self.table.server(id)
    }

    pub fn server_mut(&mut self, id: ServerTxId) -> Option<&mut ServerEntry> {
        self.table.server_mut(id)
    }

    pub fn client(&self, id: ClientTxId) -> Option<&ClientEntry> {
        self.table.client(id)
    }

    /// The request a server transaction answers (until its final response).
    pub fn request(&self, id: ServerTxId) -> Option<&SipMessage> {
        self.table.server(id)?.request.as_ref()
    }

    /// The request the host sent with `branch`, if its transaction lives.
    pub fn sent_with_branch(&self, branch: &str) -> Option<&SipMessage> {
        let key = ClientKey {
            branch: branch.to_string(),
            cancel: false,
        };
        self.table
            .client(self.table.find_client(&key)?)?
            .tx
            .request()
    }

    /// The listening address to advertise toward `target`.
    pub fn local_addr_for(&self, target: &Target) -> Option<std::net::SocketAddr> {
        self.locals.for_remote(target.proto, target.addr)
    }

    // ----- input -----

    /// A request that passed logic's checks. ACK and CANCEL are dealt with
    /// here; retransmissions are absorbed; anything else becomes a server
    /// transaction and an [`EntityEvent::Request`].
    pub fn handle_request(&mut self, msg: SipMessage, source: Target) {
        let Some(key) = ServerKey::of(&msg) else {
            return;
        };
        match msg.request_method() {
            Some(Method::Ack) => return self.on_ack(msg, &key),
            Some(Method::Cancel) => return self.on_cancel(msg, source, key),
            _ => {}
        }
        if let Some(id) = self.table.find_server(&key) {
            if let Some(e) = self.table.server_mut(id) {
                let actions = e.tx.on_retransmission();
                debug!(request = %msg.summary(), "retransmission absorbed");
                self.run_server(id, actions);
            }
            return;
        }
        let id = self.new_server(msg, source, key);
        self.events.push_back(EntityEvent::Request(id));
    }

    pub fn handle_response(&mut self, resp: SipMessage) {
        let key = ClientKey::of_response(&resp);
        let Some(id) = self.table.find_client(&key) else {
            debug!(response = %resp.summary(), "stray response dropped");
            return;
        };
        let actions = match self.table.client_mut(id) {
            Some(c) => c.tx.on_response(resp),
            None => return,
        };
        self.run_client(id, actions);
    }

    pub fn handle_timer(&mut self, key: TimerKey) {
        match key {
            TimerKey::Server(id, timer) => {
                let actions = match self.table.server_mut(id) {
                    Some(e) => e.tx.on_timer(timer),
                    None => return,
                };
                self.run_server(id, actions);
            }
            TimerKey::Client(id, Timer::C) => self.on_timer_c(id),
            TimerKey::Client(id, timer) => {
                let actions = match self.table.client_mut(id) {
                    Some(c) => c.tx.on_timer(timer),
                    None => return,
                };
                self.run_client(id, actions);
            }
            TimerKey::Logic(id) => self.events.push_back(EntityEvent::Timer(id)),
        }
    }

    /// The transport could not send for client transaction `token`.
    pub fn handle_send_failed(&mut self, token: ClientTxId) {
        let actions = match self.table.client_mut(token) {
            Some(c) => {
                c.transport_failed = true;
                c.tx.on_transport_error()
            }
            None => return,
        };
        self.run_client(token, actions);
    }

    fn new_server(&mut self, msg: SipMessage, source: Target, key: ServerKey) -> ServerTxId {
        let invite = msg.request_method() == Some(Method::Invite);
        let tx = ServerTx::new(invite, source.proto.is_reliable(), self.settings.timers);
        let to_tag = msg.to_tag().unwrap_or_else(new_tag);
        self.table.insert_server(ServerEntry {
            tx,
            key,
            request: Some(msg),
            source,
            leg: None,
            peer_client: None,
            to_tag,
        })
    }

    /// ACK: for a non-2xx it belongs to the INVITE server transaction; for a
    /// 2xx it ends the leg's INVITE transaction and goes up to logic.
    fn on_ack(&mut self, ack: SipMessage, key: &ServerKey) {
        if let Some(sid) = self.table.find_server(key) {
            if let Some(e) = self.table.server_mut(sid) {
                if e.tx.last_status() >= 300 {
                    let actions = e.tx.on_ack();
                    return self.run_server(sid, actions);
                }
            }
        }
        let (call_id, tag) = (
            ack.call_id().unwrap_or_default().to_string(),
            ack.to_tag().unwrap_or_default(),
        );
        let leg_id = match self
            .calls
            .find_request_leg(&call_id, &tag, ack.from_tag().as_deref())
        {
            DialogMatch::Leg(l) => l,
            DialogMatch::ForeignRemoteTag(_) => {
                m::dialog_mismatch("ACK");
                warn!(%call_id, "ACK with another dialog's From tag dropped");
                return;
            }
            DialogMatch::NoDialog => {
                debug!(%call_id, "ACK for unknown dialog dropped");
                return;
            }
        };
        let Some(leg) = self.calls.leg_mut(leg_id) else {
            return;
        };
        leg.dialog.record_sdp(&ack);
        if let Some(sid) = leg.invite_server.take() {
            if let Some(e) = self.table.server_mut(sid) {
                let actions = e.tx.on_ack();
                self.run_server(sid, actions);
            }
        }
        self.events.push_back(EntityEvent::Ack { leg: leg_id, ack });
    }

    /// CANCEL: 481 without its INVITE, absorbed when retransmitted, else
    /// answered 200 and (when the INVITE still waits) raised to logic.
    fn on_cancel(&mut self, cancel: SipMessage, source: Target, key: ServerKey) {
        let Some(inv) = self.table.find_server(&key.cancelled_invite()) else {
            let r = response_to(&cancel, 481, reason(481), Some(&new_tag()));
            return self.send_stateless(&source, &r);
        };
        if let Some(sid) = self.table.find_server(&key) {
            let actions = self.table.server_mut(sid).map(|e| e.tx.on_retransmission());
            return self.run_server(sid, actions.unwrap_or_default());
        }
        let sid = self.new_server(cancel, source, key);
        self.respond(sid, 200, "OK");
        if self.table.server(inv).is_some_and(|e| e.tx.awaits_final()) {
            self.events
                .push_back(EntityEvent::Cancelled { invite: inv });
        }
    }

    // ----- commands: responses -----

    /// Answer server transaction `sid` with a status line and nothing else
    /// (503 gets a Retry-After).
    pub fn respond(&mut self, sid: ServerTxId, status: u16, reason_text: &str) {
        let headers = if status == 503 {
            vec![("Retry-After".to_string(), "5".to_string())]
        } else {
            Vec::new()
        };
        let _ = self.respond_with(sid, status, reason_text, headers, None);
    }

    /// Answer `sid` with extra headers and an optional (Content-Type, body).
    pub fn respond_with(
        &mut self,
        sid: ServerTxId,
        status: u16,
        reason_text: &str,
        headers: Vec<(String, String)>,
        body: Option<(String, Bytes)>,
    ) -> Result<(), RespondError> {
        if !(100..=699).contains(&status) {
            return Err(RespondError::InvalidStatus(status));
        }
        let e = self
            .table
            .server(sid)
            .ok_or(RespondError::UnknownTransaction)?;
        let req = e.request.as_ref().ok_or(RespondError::AlreadyAnswered)?;
        let mut r = response_to(req, status, reason_text, Some(&e.to_tag));
        for (n, v) in headers {
            r.push_header(&n, v);
        }
        if let Some((content_type, bytes)) = body {
            r.push_header("Content-Type", content_type);
            r.set_body(bytes);
        }
        self.send_response(sid, &r);
        Ok(())
    }

    /// Send `r` through server transaction `sid` (ignored when the
    /// transaction is gone or already has its final response).
    pub fn send_response(&mut self, sid: ServerTxId, r: &SipMessage) {
        let Some(e) = self.table.server_mut(sid) else {
            return;
        };
        let actions = e.tx.send_response(r);
        if !actions.is_empty() {
            m::count_out(r);
        }
        if !e.tx.awaits_final() {
            // The transaction may live 32 s more; it no longer needs the request.
            e.request = None;
        }
        if status_is_2xx_to_invite(e, r) {
            if let Some(l) = e.leg.and_then(|l| self.calls.leg_mut(l)) {
                l.apply(LegEvent::Answered);
            }
        }
        self.run_server(sid, actions);
    }

    /// A message outside any transaction (a 400 to a broken request, a 481
    /// to a CANCEL that matches nothing).
    pub fn send_stateless(&mut self, target: &Target, msg: &SipMessage) {
        m::count_out(msg);
        self.transmits.push_back(Transmit {
            target: target.clone(),
            bytes: msg.to_bytes(),
            token: None,
        });
    }

    // ----- commands: requests -----

    /// Send a request outside any dialog (one transaction), to `target`.
    pub fn send_request(
        &mut self,
        msg: SipMessage,
        target: Target,
        kind: ClientKind,
        origin: Option<ServerTxId>,
        max_forwards: u32,
    ) -> ClientTxId {
        self.start_client(msg, target, None, origin, kind, max_forwards)
    }

    /// A new request in `leg`'s dialog carrying `req.from`'s end-to-end
    /// headers and body. An ACK is the ACK of the leg's last 2xx.
    pub fn send_on_leg(&mut self, leg_id: LegId, req: LegRequest<'_>) -> Option<ClientTxId> {
        if req.method == Method::Ack {
            self.ack_leg(leg_id, Some(req.from));
            return None;
        }
        let leg = self.calls.leg_mut(leg_id)?;
        let mut out = leg.dialog.new_request(&req.method);
        copy_end_to_end(req.from, &mut out, req.keep_contact);
        if let Some(r) = req.replaces {
            out.push_header("Replaces", r);
        }
        leg.dialog.record_sdp(&out);
        let target = leg.dialog.dest.clone();
        let invite = req.method == Method::Invite;
        if invite {
            leg.invite_cseq = Some(leg.dialog.local_cseq);
            leg.ack = AckState::Pending;
        }
        let cid = self.start_client(
            out,
            target,
            Some(leg_id),
            req.origin,
            req.kind,
            req.max_forwards,
        );
        if invite {
            if let Some(l) = self.calls.leg_mut(leg_id) {
                l.invite_client = Some(cid);
            }
        }
        if let Some(e) = req.origin.and_then(|sid| self.table.server_mut(sid)) {
            e.peer_client = Some(cid);
        }
        Some(cid)
    }

    /// A new leg of `call` with `dialog` (toward its `dest`), and its
    /// INVITE built as `invite` says (its method is INVITE whatever it names).
    pub fn originate_leg(
        &mut self,
        call: CallRef,
        dialog: Dialog,
        invite: LegRequest<'_>,
    ) -> (LegId, Option<ClientTxId>) {
        let leg = self.calls.add_leg(Leg::new(call, Role::Uac, dialog));
        let cid = self.send_on_leg(
            leg,
            LegRequest {
                method: Method::Invite,
                ..invite
            },
        );
        (leg, cid)
    }

    fn start_client(
        &mut self,
        mut msg: SipMessage,
        target: Target,
        leg: Option<LegId>,
        origin: Option<ServerTxId>,
        kind: ClientKind,
        max_forwards: u32,
    ) -> ClientTxId {
        msg.set_header("Max-Forwards", max_forwards.to_string());
        let sets_target = msg.request_method().is_some_and(|m| m.sets_target());
        if sets_target && msg.header("Contact").is_none() {
            if let Some(local) = self.local_addr_for(&target) {
                msg.push_header("Contact", contact_value(target.proto, local));
            }
        }
        self.start_client_with_branch(msg, target, leg, origin, kind, new_branch())
    }

    fn start_client_with_branch(
        &mut self,
        mut msg: SipMessage,
        target: Target,
        leg: Option<LegId>,
        origin: Option<ServerTxId>,
        kind: ClientKind,
        branch: String,
    ) -> ClientTxId {
        if kind != ClientKind::Cancel {
            let local = self
                .local_addr_for(&target)
                .unwrap_or_else(|| ([0, 0, 0, 0], 0).into());
            msg.headers
                .insert(0, header("Via", via_value(target.proto, local, &branch)));
        }
        if msg.header("Content-Length").is_none() {
            let body = msg.body.clone();
            msg.set_body(body);
        }
        m::count_out(&msg);
        let (tx, actions) = ClientTx::start(msg, target.proto.is_reliable(), self.settings.timers);
        let ring = kind == ClientKind::Forward && tx.is_invite();
        let id = self.table.insert_client(ClientEntry {
            tx,
            key: ClientKey {
                branch,
                cancel: kind == ClientKind::Cancel,
            },
            kind,
            target,
            leg,
            origin,
            transport_failed: false,
            ring_deadline: None,
        });
        if ring {
            self.arm_timer_c(id);
        }
        self.run_client(id, actions);
        id
    }

    /// Send the host's ACK for the 2xx to the last INVITE sent on `leg_id`,
    /// with the end-to-end headers and body of `template` (the originator's
    /// ACK). The ACK is kept to answer 2xx retransmissions. No-op when
    /// already sent or when no INVITE was sent.
    pub fn ack_leg(&mut self, leg_id: LegId, template: Option<&SipMessage>) {
        let Some(p) = self.calls.leg_mut(leg_id) else {
            return;
        };
        let Some(cseq) = p.invite_cseq.filter(|_| p.ack == AckState::Pending) else {
            return;
        };
        let mut out = p.dialog.request_with_cseq(&Method::Ack, cseq);
        match template {
            Some(t) => copy_end_to_end(t, &mut out, false),
            None => out.set_body(Bytes::new()),
        }
        p.dialog.record_sdp(&out);
        let target = p.dialog.dest.clone();
        if let Some(local) = self.locals.for_remote(target.proto, target.addr) {
            out.headers.insert(
                0,
                header("Via", via_value(target.proto, local, &new_branch())),
            );
            out.headers.insert(1, header("Max-Forwards", "70"));
        }
        let bytes = out.to_bytes();
        p.ack = AckState::Sent(bytes.clone());
        m::count_out(&out);
        self.transmits.push_back(Transmit {
            target,
            bytes,
            token: None,
        });
    }

    /// CANCEL a relayed INVITE: at once if it has a provisional response,
    /// otherwise as soon as one arrives (RFC 3261 §9.1).
    pub fn cancel_client(&mut self, cid: ClientTxId) {
        let Some(c) = self.table.client(cid) else {
            return;
        };
        match c.tx.state() {
            ClientState::Proceeding => {}
            ClientState::Calling => {
                if let Some(l) = c.leg.and_then(|l| self.calls.leg_mut(l)) {
                    l.cancel_pending = true;
                }
                return;
            }
            _ => return,
        }
        let Some(inv) = c.tx.request() else {
            return;
        };
        let mut cancel = SipMessage::request("CANCEL", inv.request_uri().unwrap_or_default());
        if let Some(v) = inv.header_values("Via").first() {
            cancel.push_header("Via", *v);
        }
        cancel.push_header("Max-Forwards", "70");
        for name in ["From", "To", "Call-ID"] {
            cancel.push_header(name, inv.header(name).unwrap_or_default());
        }
        let n = inv.cseq().map(|c| c.0).unwrap_or(1);
        cancel.push_header("CSeq", format!("{n} CANCEL"));
        for r in inv.header_values("Route") {
            cancel.push_header("Route", r);
        }
        cancel.set_body(Bytes::new());
        let (target, leg, branch) = (c.target.clone(), c.leg, c.key.branch.clone());
        self.start_client_with_branch(cancel, target, leg, None, ClientKind::Cancel, branch);
    }

    /// End `leg_id` with a BYE of the host's (released when it completes);
    /// a leg without a remote tag has no dialog to end and goes at once.
    pub fn send_bye(&mut self, leg_id: LegId) {
        let Some(leg) = self.calls.leg_mut(leg_id) else {
            return;
        };
        if leg.dialog.remote_tag.is_none() {
            return self.release(leg_id);
        }
        leg.apply(LegEvent::Ending);
        let mut bye = leg.dialog.new_request(&Method::Bye);
        bye.set_body(Bytes::new());
        let target = leg.dialog.dest.clone();
        self.start_client(bye, target, Some(leg_id), None, ClientKind::LocalBye, 70);
    }

    /// Remove a leg; its partner stays, unpaired.
    pub fn release(&mut self, leg_id: LegId) {
        if let Some(leg) = self.calls.release(leg_id) {
            let call_over = self.calls.legs_of(leg.call).is_empty();
            self.events.push_back(EntityEvent::LegReleased {
                leg: leg_id,
                call: leg.call,
                call_over,
            });
        }
    }

    /// Mark a leg as being ended.
    pub fn end_leg(&mut self, leg_id: LegId) {
        if let Some(l) = self.calls.leg_mut(leg_id) {
            l.apply(LegEvent::Ending);
        }
    }

    /// A timer of logic's: [`EntityEvent::Timer`] with `id` after `after`.
    pub fn schedule(&mut self, id: u64, after: Duration) {
        self.timers.schedule(TimerKey::Logic(id), after);
    }

    // ----- transactions -----

    fn run_server(&mut self, id: ServerTxId, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Send(bytes) => {
                    if let Some(e) = self.table.server(id) {
                        self.transmits.push_back(Transmit {
                            target: e.source.clone(),
                            bytes,
                            token: None,
                        });
                    }
                }
                Action::Schedule(t, d) => self.timers.schedule(TimerKey::Server(id, t), d),
                Action::Timeout => self.on_server_timeout(id),
                Action::Terminated => self.table.remove_server(id),
                Action::Deliver(_) => {}
            }
        }
    }

    fn run_client(&mut self, id: ClientTxId, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Send(bytes) => {
                    if let Some(c) = self.table.client(id) {
                        self.transmits.push_back(Transmit {
                            target: c.target.clone(),
                            bytes,
                            token: Some(id),
                        });
                    }
                }
                Action::Schedule(t, d) => self.timers.schedule(TimerKey::Client(id, t), d),
                Action::Deliver(resp) => self.on_delivered(id, resp),
                Action::Timeout => self.on_client_timeout(id),
                Action::Terminated => {
                    if let Some(c) = self.table.remove_client(id) {
                        if c.tx.is_invite() {
                            self.invite_over(c.leg, id);
                            self.forget_ack(c.leg);
                        }
                    }
                }
            }
        }
    }

    fn info(&self, id: ClientTxId) -> Option<ClientInfo> {
        let c = self.table.client(id)?;
        Some(ClientInfo {
            kind: c.kind,
            leg: c.leg,
            origin: c.origin,
            target: c.target.clone(),
            method: c.tx.method().clone(),
        })
    }

    /// A response the client transaction hands up: dialog bookkeeping here,
    /// then an event for what logic must decide.
    fn on_delivered(&mut self, id: ClientTxId, resp: SipMessage) {
        let Some(info) = self.info(id) else {
            return;
        };
        let status = resp.status().unwrap_or(0);
        match info.kind {
            ClientKind::Cancel => return,
            ClientKind::LocalBye => {
                if status >= 200 {
                    if let Some(l) = info.leg {
                        self.release(l);
                    }
                }
                return;
            }
            ClientKind::Forward | ClientKind::Plugin => {}
        }
        if let Some(leg) = info.leg {
            if info.method == Method::Invite {
                if !self.invite_response_on_leg(leg, id, &resp) {
                    return;
                }
                // A request with an offer is ACKed by the host; an offerless
                // one's ACK carries the answer and is the plugin's to send.
                let offered = self.table.client(id).is_some_and(|c| c.tx.offered());
                if info.kind == ClientKind::Plugin && (200..300).contains(&status) && offered {
                    self.ack_leg(leg, None);
                }
            } else if (200..300).contains(&status) {
                if let Some(l) = self.calls.leg_mut(leg) {
                    l.dialog.record_sdp(&resp);
                }
            }
        }
        self.events.push_back(EntityEvent::Response {
            tx: id,
            info,
            response: resp,
        });
    }

    /// Dialog bookkeeping for a response to an INVITE sent on `leg_id`.
    /// Returns false when nothing more is to be done with it.
    fn invite_response_on_leg(
        &mut self,
        leg_id: LegId,
        cid: ClientTxId,
        resp: &SipMessage,
    ) -> bool {
        let status = resp.status().unwrap_or(0);
        let Some(leg) = self.calls.leg_mut(leg_id) else {
            // The leg ended while its INVITE was pending (a BYE crossed a
            // re-INVITE): a failure still answers the request it relays; a
            // 2xx has no dialog left to confirm.
            debug!(leg = %leg_id, status, "response to an INVITE on a leg that is gone");
            return !(200..300).contains(&status);
        };
        let initial = leg.state == LegState::Early;
        if (101..300).contains(&status) {
            if let Some(tag) = resp.to_tag() {
                if leg.dialog.remote_tag.is_none() {
                    leg.dialog.remote_tag = Some(tag);
                }
            }
            if let Some(t) = contact_uri(resp) {
                leg.dialog.remote_target = t;
            }
        }
        if status < 200 {
            leg.dialog.record_sdp(resp);
            let cancel_now = leg.cancel_pending && status > 100;
            if cancel_now {
                leg.cancel_pending = false;
            }
            if let Some(c) = self.table.client_mut(cid) {
                if c.ring_deadline.is_some() {
                    c.ring_deadline = Some(tokio::time::Instant::now() + self.settings.timer_c);
                }
            }
            if cancel_now {
                self.cancel_client(cid);
            }
            return true;
        }
        if status >= 300 {
            leg.invite_client = None;
            return true;
        }
        // 2xx: a retransmission gets our ACK again, nothing goes up.
        if let AckState::Sent(ack) = &leg.ack {
            let (target, bytes) = (leg.dialog.dest.clone(), ack.clone());
            self.transmits.push_back(Transmit {
                target,
                bytes,
                token: None,
            });
            return false;
        }
        let already_confirmed = leg.state == LegState::Confirmed && leg.invite_client.is_none();
        if already_confirmed {
            return false; // 2xx retransmission before the originator's ACK arrived
        }
        leg.invite_client = None;
        if initial {
            leg.dialog.peer_supports_replaces = crate::forward::supports(resp, "replaces");
            leg.dialog.route_set = resp
                .header_values("Record-Route")
                .iter()
                .rev()
                .map(|s| s.to_string())
                .collect();
        }
        if leg.state == LegState::Terminating {
            // The originator gave up (CANCEL raced with this 2xx): ACK and hang up.
            self.ack_leg(leg_id, None);
            self.send_bye(leg_id);
            return false;
        }
        leg.apply(LegEvent::Answered);
        leg.dialog.record_sdp(resp);
        true
    }

    /// Once the INVITE transaction is over, a retransmitted 2xx no longer
    /// matches anything (it is dropped as stray): free the stored ACK.
    fn forget_ack(&mut self, leg: Option<LegId>) {
        if let Some(l) = leg.and_then(|l| self.calls.leg_mut(l)) {
            if matches!(l.ack, AckState::Sent(_)) {
                l.ack = AckState::Done;
            }
        }
    }

    /// The INVITE of client transaction `id` on `leg` is over, answered or
    /// not: the leg has no INVITE of the host's pending any more (a later
    /// re-INVITE from the far end is no glare).
    fn invite_over(&mut self, leg: Option<LegId>, id: ClientTxId) {
        if let Some(l) = leg.and_then(|l| self.calls.leg_mut(l)) {
            if l.invite_client == Some(id) {
                l.invite_client = None;
            }
        }
    }

    fn on_client_timeout(&mut self, id: ClientTxId) {
        let Some(info) = self.info(id) else {
            return;
        };
        let failed = self.table.client(id).is_some_and(|c| c.transport_failed);
        warn!(method = %info.method, transport_failed = failed, "no response from {}", info.target);
        self.invite_over(info.leg, id);
        match info.kind {
            ClientKind::LocalBye => {
                if let Some(l) = info.leg {
                    self.release(l);
                }
            }
            ClientKind::Cancel => {}
            ClientKind::Forward | ClientKind::Plugin => {
                self.events.push_back(EntityEvent::ClientFailed {
                    tx: id,
                    info,
                    transport_failed: failed,
                })
            }
        }
    }

    fn on_server_timeout(&mut self, id: ServerTxId) {
        let Some(e) = self.table.server(id) else {
            return;
        };
        if !e.tx.is_invite() {
            return;
        }
        self.events.push_back(EntityEvent::Unacknowledged {
            tx: id,
            leg: e.leg,
            status: e.tx.last_status(),
        });
    }

    // ----- Timer C -----

    fn arm_timer_c(&mut self, id: ClientTxId) {
        let c_time = self.settings.timer_c;
        if let Some(c) = self.table.client_mut(id) {
            c.ring_deadline = Some(tokio::time::Instant::now() + c_time);
            self.timers.schedule(TimerKey::Client(id, Timer::C), c_time);
        }
    }

    /// Timer C (each provisional moved the deadline on): still ringing at
    /// the deadline is for logic to end.
    fn on_timer_c(&mut self, id: ClientTxId) {
        let Some(c) = self.table.client(id) else {
            return;
        };
        if !matches!(c.tx.state(), ClientState::Calling | ClientState::Proceeding) {
            return;
        }
        let now = tokio::time::Instant::now();
        if let Some(deadline) = c.ring_deadline.filter(|d| *d > now) {
            self.timers
                .schedule(TimerKey::Client(id, Timer::C), deadline - now);
            return;
        }
        if let Some(info) = self.info(id) {
            self.events
                .push_back(EntityEvent::RingTimeout { tx: id, info });
        }
    }
}

fn status_is_2xx_to_invite(e: &ServerEntry, r: &SipMessage) -> bool {
    e.tx.is_invite() && r.status().is_some_and(|s| (200..300).contains(&s))
}

fn header(name: &str, value: impl Into<String>) -> crate::sip::Header {
    crate::sip::Header {
        name: name.to_string(),
        value: value.into(),
    }
}
