//! The core: one task per shard of the calls (see [`crate::shard`]), each
//! owning the transactions, dialogs and calls of its shard, fed by the
//! transports and its timer queue. All protocol decisions happen here; the
//! message building it relies on lives in pure modules ([`crate::forward`],
//! [`crate::dialog`], [`crate::transaction`]).

mod hooks;

use crate::b2bua::{CallModel, CallRef, Leg, LegId, LegState, Role};
use crate::compaction::shrink_if_sparse;
use crate::dialog::{new_branch, new_tag, Dialog};
use crate::forward::{
    contact_uri, contact_value, copy_end_to_end, next_max_forwards, reason, response_to,
    sets_target, validate_request, validate_response, via_value, without_tag,
};
use crate::metrics as m;
use crate::plugins::PluginSet;
use crate::routing::{RouteError, Router};
use crate::shard::{call_id_on_shard, IdSeq};
use crate::sip::SipMessage;
use crate::timers::TimerQueue;
use crate::transaction::{Action, ClientState, ClientTx, ServerTx, Timer, TimerConfig};
use crate::transport::{Inbound, InboundError, Target, Transport, TransportEvent};
use bytes::Bytes;
use escalator_plugin_api::HookKind;
use hooks::{HookOutcome, PluginRef};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

#[derive(Clone)]
pub struct CoreSettings {
    pub timers: TimerConfig,
    pub timer_c: Duration,
    pub router: Router,
    pub max_calls: usize,
}

/// Live counts over all shards, readable from outside the core (tests,
/// admin, the memory trimmer). Each shard writes its own slot.
#[derive(Debug)]
pub struct Stats {
    shards: Vec<ShardStats>,
}

#[derive(Debug, Default)]
struct ShardStats {
    calls: AtomicUsize,
    legs: AtomicUsize,
    transactions: AtomicUsize,
}

impl Stats {
    pub fn new(shards: usize) -> Stats {
        Stats {
            shards: (0..shards.max(1)).map(|_| ShardStats::default()).collect(),
        }
    }

    fn sum(&self, field: impl Fn(&ShardStats) -> &AtomicUsize) -> usize {
        self.shards
            .iter()
            .map(|s| field(s).load(Ordering::Relaxed))
            .sum()
    }

    pub fn calls(&self) -> usize {
        self.sum(|s| &s.calls)
    }
    pub fn legs(&self) -> usize {
        self.sum(|s| &s.legs)
    }
    pub fn transactions(&self) -> usize {
        self.sum(|s| &s.transactions)
    }
    /// Active calls of each shard, in shard order.
    pub fn calls_per_shard(&self) -> Vec<usize> {
        self.shards
            .iter()
            .map(|s| s.calls.load(Ordering::Relaxed))
            .collect()
    }
}

/// Which shard a core is, of how many.
#[derive(Debug, Clone, Copy)]
pub struct ShardSlot {
    pub index: usize,
    pub count: usize,
}

/// One shard's answer to [`Control::Status`].
#[derive(Debug, Clone)]
pub struct ShardStatus {
    pub calls: usize,
    pub transactions: usize,
    pub draining: bool,
    pub plugin_generation: u64,
    /// `name/version`, with ` (disabled)` where it applies.
    pub plugins: Vec<String>,
}

pub enum Control {
    /// Refuse new calls, let transactions finish (bounded by `grace`), then
    /// say so on `done`. The shard keeps answering (new calls get 503) until
    /// [`Control::Stop`]: other shards may still be finishing their calls.
    Drain {
        grace: Duration,
        done: oneshot::Sender<()>,
    },
    /// New calls use this plugin set; calls in progress keep theirs.
    ReplacePlugins(Arc<PluginSet>),
    /// End the task.
    Stop,
    /// What the shard holds (admin status).
    Status(oneshot::Sender<ShardStatus>),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ServerKey {
    branch: String,
    sent_by: String,
    /// ACK matches the INVITE transaction.
    method: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum TxRef {
    Server(u64),
    Client(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum TimerKey {
    Tx(TxRef, Timer),
    /// A timer a plugin set ([`hooks`]).
    Plugin(u64),
    /// A request a plugin took over must get a final response in time.
    PluginAnswerDue(u64),
}

struct ServerEntry {
    tx: ServerTx,
    key: ServerKey,
    /// Until the final response is sent: what responses are built from.
    request: Option<SipMessage>,
    source: Target,
    leg: Option<LegId>,
    /// The client transaction this request was forwarded on.
    peer_client: Option<u64>,
    /// Tag added to the To of our responses when the request had none.
    to_tag: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientKind {
    /// Relays a request received on `origin`.
    Forward,
    /// A CANCEL we generated.
    Cancel,
    /// A BYE we generated to end a leg.
    LocalBye,
    /// A request a plugin asked for; its outcome goes back as an event.
    Plugin,
}

struct ClientEntry {
    tx: ClientTx,
    branch: String,
    kind: ClientKind,
    target: Target,
    leg: Option<LegId>,
    origin: Option<u64>,
    transport_failed: bool,
    /// For [`ClientKind::Plugin`]: whose request it is.
    plugin: Option<PluginRef>,
    /// INVITE only: when Timer C runs out (moved on by each provisional).
    ring_deadline: Option<tokio::time::Instant>,
}

pub struct Core {
    settings: CoreSettings,
    transport: Transport,
    shard: ShardSlot,
    model: CallModel,
    /// Entries are boxed so a table resize at high call rates moves
    /// pointers, not 400-byte entries (a stall the core would feel).
    servers: HashMap<u64, Box<ServerEntry>>,
    server_index: HashMap<ServerKey, u64>,
    clients: HashMap<u64, Box<ClientEntry>>,
    /// (branch, is CANCEL) → client transaction.
    client_index: HashMap<(String, bool), u64>,
    tx_ids: IdSeq,
    timers: TimerQueue<TimerKey>,
    draining: bool,
    stats: Arc<Stats>,
    /// The plugin set new calls get.
    plugins: Arc<PluginSet>,
    /// The set each call started with.
    call_plugins: HashMap<CallRef, Arc<PluginSet>>,
    plugin_timers: HashMap<u64, PluginRef>,
    next_plugin_timer: u64,
}

impl Core {
    pub fn new(
        settings: CoreSettings,
        transport: Transport,
        stats: Arc<Stats>,
        plugins: Arc<PluginSet>,
        shard: ShardSlot,
    ) -> Self {
        Core {
            settings,
            transport,
            shard,
            model: CallModel::for_shard(shard.index, shard.count),
            servers: HashMap::new(),
            server_index: HashMap::new(),
            clients: HashMap::new(),
            client_index: HashMap::new(),
            tx_ids: IdSeq::new(shard.index, shard.count),
            timers: TimerQueue::default(),
            draining: false,
            stats,
            plugins,
            call_plugins: HashMap::new(),
            plugin_timers: HashMap::new(),
            next_plugin_timer: 0,
        }
    }

    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<TransportEvent>,
        mut control: mpsc::Receiver<Control>,
    ) {
        let mut drain: Option<(tokio::time::Instant, oneshot::Sender<()>)> = None;
        loop {
            if let Some((deadline, _)) = &drain {
                let idle = self.servers.is_empty() && self.clients.is_empty();
                if idle || tokio::time::Instant::now() >= *deadline {
                    if !idle {
                        info!(
                            transactions = self.servers.len() + self.clients.len(),
                            "shutdown grace period over with transactions still open"
                        );
                    }
                    if let Some((_, done)) = drain.take() {
                        let _ = done.send(());
                    }
                }
            }
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(TransportEvent::Inbound(i)) => self.guarded("inbound", |c| c.on_inbound(i)),
                    Some(TransportEvent::SendFailed { target, token }) => {
                        self.guarded("send failure", |c| c.on_send_failed(target, token))
                    }
                    None => return,
                },
                key = self.timers.expired() => self.guarded("timer", |c| c.on_timer_key(key)),
                c = control.recv() => match c {
                    Some(Control::Drain { grace, done }) => {
                        info!(shard = self.shard.index, calls = self.model.call_count(), "draining: refusing new calls");
                        self.draining = true;
                        drain = Some((tokio::time::Instant::now() + grace, done));
                    }
                    Some(Control::ReplacePlugins(set)) => {
                        if self.shard.index == 0 {
                            info!(generation = set.generation, plugins = set.plugins.len(), "plugin set replaced; calls in progress keep theirs");
                        }
                        metrics::gauge!(m::PLUGIN_GENERATION).set(set.generation as f64);
                        self.plugins = set;
                    }
                    Some(Control::Stop) | None => return,
                    Some(Control::Status(reply)) => {
                        let _ = reply.send(self.status());
                    }
                },
                _ = tokio::time::sleep(Duration::from_millis(200)), if drain.is_some() => {}
            }
            self.publish_stats();
        }
    }

    /// Run one event handler; a bug that panics costs that event, not every
    /// call on the host.
    fn guarded(&mut self, what: &str, handler: impl FnOnce(&mut Self)) {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(self)));
        if let Err(panic) = outcome {
            let text = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(event = what, panic = %text, "core handler panicked; event dropped");
            metrics::counter!(m::CORE_PANICS).increment(1);
        }
    }

    fn leg_span(&self, leg: Option<LegId>) -> tracing::Span {
        match leg.and_then(|l| self.model.leg(l)) {
            Some(l) => tracing::info_span!("call", call = l.call, leg = l.id),
            None => tracing::Span::none(),
        }
    }

    fn publish_stats(&self) {
        let Some(mine) = self.stats.shards.get(self.shard.index) else {
            return;
        };
        mine.calls.store(self.model.call_count(), Ordering::Relaxed);
        mine.legs.store(self.model.leg_count(), Ordering::Relaxed);
        let txs = self.servers.len() + self.clients.len();
        mine.transactions.store(txs, Ordering::Relaxed);
        metrics::gauge!(m::CALLS_ACTIVE).set(self.stats.calls() as f64);
        metrics::gauge!(m::TRANSACTIONS_ACTIVE).set(self.stats.transactions() as f64);
    }

    // ----- inbound -----

    fn on_inbound(&mut self, inbound: Inbound) {
        let Inbound {
            source,
            message,
            received,
            ..
        } = inbound;
        self.handle_inbound(source, message);
        metrics::histogram!(m::INBOUND_HANDLING).record(received.elapsed().as_secs_f64());
    }

    fn handle_inbound(&mut self, source: Target, message: Result<SipMessage, InboundError>) {
        match message {
            Ok(msg) if msg.is_request() => {
                m::count_in(&msg);
                self.on_request(msg, source)
            }
            Ok(msg) => {
                m::count_in(&msg);
                self.on_response(msg)
            }
            Err(InboundError::BadMessage {
                head,
                error,
                too_large,
            }) => {
                m::parse_error(source.proto);
                warn!(%source, %error, "malformed message");
                if head.is_request() && head.method() != Some("ACK") && head.top_via().is_some() {
                    let status = if too_large { 513 } else { 400 };
                    let mut r = response_to(&head, status, reason(status), Some(&new_tag()));
                    if !too_large {
                        r.push_header("Warning", format!("399 escalator \"{error}\""));
                    }
                    self.send(&source, &r, None);
                }
            }
            Err(InboundError::Unparseable(error)) => {
                m::parse_error(source.proto);
                warn!(%source, %error, "dropping unparseable message");
            }
        }
    }

    fn on_request(&mut self, msg: SipMessage, source: Target) {
        if let Err(problem) = validate_request(&msg) {
            m::parse_error(source.proto);
            warn!(%source, %problem, request = %msg.summary(), "invalid request");
            if msg.method() != Some("ACK") && msg.top_via().is_some() {
                let mut r = response_to(&msg, 400, "Bad Request", Some(&new_tag()));
                r.push_header("Warning", format!("399 escalator \"{problem}\""));
                self.send(&source, &r, None);
            }
            return;
        }
        let method = msg.method().unwrap_or_default().to_string();
        let Some(via) = msg.top_via() else { return };
        let key = ServerKey {
            branch: via.branch().unwrap_or_default().to_string(),
            sent_by: via.sent_by(),
            method: if method == "ACK" {
                "INVITE".into()
            } else {
                method.clone()
            },
        };
        if method == "ACK" {
            return self.on_ack(msg, &key);
        }
        if method == "CANCEL" {
            return self.on_cancel(msg, source, key);
        }
        if let Some(&id) = self.server_index.get(&key) {
            if let Some(e) = self.servers.get_mut(&id) {
                let actions = e.tx.on_retransmission();
                debug!(request = %msg.summary(), "retransmission absorbed");
                self.run_server(id, actions);
            }
            return;
        }
        let id = self.new_server(msg, source, key);
        let Some(req) = self.servers.get(&id).and_then(|e| e.request.as_ref()) else {
            return;
        };
        let in_dialog = req.to_tag().is_some();
        let looped = self.is_loop(req);
        let mf = next_max_forwards(req);
        if method == "INVITE" {
            self.respond(id, 100, "Trying");
        }
        if looped {
            return self.respond(id, 482, "Loop Detected");
        }
        if mf.is_none() {
            return self.respond(id, 483, "Too Many Hops");
        }
        if self.offer_request_to_plugins(id) == HookOutcome::Handled {
            return;
        }
        if in_dialog {
            self.in_dialog_request(id);
        } else {
            self.out_of_dialog_request(id);
        }
    }

    /// Let the plugins see a new request; they may take it over or add headers.
    fn offer_request_to_plugins(&mut self, sid: u64) -> HookOutcome {
        let Some(e) = self.servers.get(&sid) else {
            return HookOutcome::Continue;
        };
        let Some(mut req) = e.request.clone() else {
            return HookOutcome::Continue;
        };
        let source = e.source.clone();
        let leg = match (req.call_id(), req.to_tag()) {
            (Some(c), Some(t)) => self.model.find(c, &t),
            _ => None,
        };
        let outcome = self.run_hooks(HookKind::Request, leg, Some(sid), &mut req, &source);
        match outcome {
            HookOutcome::Handled => {
                let due = self.settings.timers.t64();
                self.timers.schedule(TimerKey::PluginAnswerDue(sid), due);
            }
            HookOutcome::Continue => {
                if let Some(e) = self.servers.get_mut(&sid) {
                    e.request = Some(req);
                }
            }
        }
        outcome
    }

    fn status(&self) -> ShardStatus {
        let plugins = self
            .plugins
            .plugins
            .iter()
            .map(|p| {
                format!(
                    "{}/{}{}",
                    p.name,
                    p.version,
                    if p.is_disabled() { " (disabled)" } else { "" }
                )
            })
            .collect();
        ShardStatus {
            calls: self.model.call_count(),
            transactions: self.servers.len() + self.clients.len(),
            draining: self.draining,
            plugin_generation: self.plugins.generation,
            plugins,
        }
    }

    /// A request we sent came back with the same Request-URI (a spiral with a
    /// new Request-URI is not a loop, RFC 3261 section 16.3).
    fn is_loop(&self, req: &SipMessage) -> bool {
        req.header_values("Via").iter().any(|v| {
            let Some(branch) =
                crate::sip::Via::parse(v).and_then(|v| v.branch().map(str::to_string))
            else {
                return false;
            };
            self.client_index
                .get(&(branch, false))
                .and_then(|id| self.clients.get(id))
                .and_then(|c| c.tx.request())
                .is_some_and(|r| r.request_uri() == req.request_uri())
        })
    }

    fn new_server(&mut self, msg: SipMessage, source: Target, key: ServerKey) -> u64 {
        let id = self.tx_ids.next_id();
        let invite = msg.method() == Some("INVITE");
        let tx = ServerTx::new(invite, source.proto.is_reliable(), self.settings.timers);
        let to_tag = msg.to_tag().unwrap_or_else(new_tag);
        self.server_index.insert(key.clone(), id);
        self.servers.insert(
            id,
            Box::new(ServerEntry {
                tx,
                key,
                request: Some(msg),
                source,
                leg: None,
                peer_client: None,
                to_tag,
            }),
        );
        id
    }

    fn out_of_dialog_request(&mut self, sid: u64) {
        let Some((req, source)) = self
            .servers
            .get(&sid)
            .and_then(|e| Some((e.request.clone()?, e.source.clone())))
        else {
            return;
        };
        let method = req.method().unwrap_or_default().to_string();
        if self.draining && method == "INVITE" {
            return self.respond(sid, 503, "Service Unavailable");
        }
        if method == "INVITE" && self.stats.calls() >= self.settings.max_calls {
            warn!(limit = self.settings.max_calls, "call limit reached");
            return self.respond(sid, 503, "Service Unavailable");
        }
        let target = match self
            .settings
            .router
            .route(&source, req.request_uri().unwrap_or_default())
        {
            Ok(t) => t,
            Err(RouteError::UnsupportedScheme) => return self.respond(sid, 416, reason(416)),
            Err(RouteError::Unresolvable(host)) => {
                warn!(%host, "cannot resolve target host (only IP literals are routed)");
                return self.respond(sid, 502, "Bad Gateway");
            }
        };
        if method == "INVITE" {
            self.start_call(sid, req, source, target);
        } else {
            self.forward_transaction(sid, req, target);
        }
    }

    /// A new call: leg A answers the client, leg B is originated toward `target`.
    fn start_call(&mut self, sid: u64, req: SipMessage, source: Target, target: Target) {
        let (Some(from), Some(to)) = (
            req.header("From").and_then(without_tag),
            req.header("To").and_then(without_tag),
        ) else {
            return self.respond(sid, 400, "Bad Request");
        };
        let Some(local_tag) = self.servers.get(&sid).map(|e| e.to_tag.clone()) else {
            return;
        };
        let call = self.model.new_call();
        self.call_plugins.insert(call, self.plugins.clone());
        let mut a = Dialog {
            call_id: req.call_id().unwrap_or_default().to_string(),
            local_tag,
            remote_tag: req.from_tag(),
            local_uri: to.to_string(),
            remote_uri: from.to_string(),
            local_cseq: 0,
            remote_cseq: req.cseq().map(|c| c.0),
            remote_target: contact_uri(&req).unwrap_or_else(|| from.uri.clone()),
            route_set: req
                .header_values("Record-Route")
                .iter()
                .map(|s| s.to_string())
                .collect(),
            dest: source,
            last_offer: None,
            last_answer: None,
        };
        a.record_sdp(&req);
        let mut leg_a = Leg::new(call, Role::Uas, a);
        leg_a.invite_server = Some(sid);
        let a_id = self.model.add_leg(leg_a);
        let remote_target = req.request_uri().unwrap_or_default().to_string();
        let b = Dialog::originating(self.shard.index, from, to, remote_target, target);
        let b_id = self.model.add_leg(Leg::new(call, Role::Uac, b));
        self.model.pair(a_id, b_id);
        if let Some(e) = self.servers.get_mut(&sid) {
            e.leg = Some(a_id);
        }
        let span = tracing::info_span!("call", call, leg = a_id);
        let _g = span.enter();
        info!(from = %req.header("From").unwrap_or_default(), to = %req.header("To").unwrap_or_default(), "new call");
        self.forward_on_leg(sid, &req, b_id);
    }

    /// Relay the request of server transaction `sid` as a new request in the
    /// dialog of `leg`.
    fn forward_on_leg(&mut self, sid: u64, req: &SipMessage, leg_id: LegId) {
        let method = req.method().unwrap_or_default().to_string();
        let mf = next_max_forwards(req).unwrap_or(70);
        let Some(leg) = self.model.leg_mut(leg_id) else {
            return self.respond(sid, 481, reason(481));
        };
        let mut out = leg.dialog.new_request(&method);
        copy_end_to_end(req, &mut out, !sets_target(&method));
        leg.dialog.record_sdp(&out);
        let target = leg.dialog.dest.clone();
        let cseq = leg.dialog.local_cseq;
        if method == "INVITE" {
            leg.invite_cseq = cseq;
            leg.ack = None;
        }
        let cid = self.start_client(
            out,
            target,
            Some(leg_id),
            Some(sid),
            ClientKind::Forward,
            mf,
        );
        if method == "INVITE" {
            if let Some(l) = self.model.leg_mut(leg_id) {
                l.invite_client = Some(cid);
            }
        }
        if let Some(e) = self.servers.get_mut(&sid) {
            e.peer_client = Some(cid);
        }
    }

    /// Out-of-dialog non-INVITE (OPTIONS, MESSAGE, REGISTER...): one
    /// transaction each side, no dialog state.
    fn forward_transaction(&mut self, sid: u64, req: SipMessage, target: Target) {
        let method = req.method().unwrap_or_default();
        let mut out = SipMessage::request(method, req.request_uri().unwrap_or_default());
        let from = req
            .header("From")
            .and_then(without_tag)
            .map(|f| f.with_tag(&new_tag()).to_string())
            .unwrap_or_default();
        out.push_header("From", from);
        out.push_header("To", req.header("To").unwrap_or_default());
        // A stable Call-ID per client Call-ID keeps registrar CSeq ordering intact.
        out.push_header(
            "Call-ID",
            derived_call_id(req.call_id().unwrap_or_default(), self.shard.index),
        );
        out.push_header("CSeq", req.header("CSeq").unwrap_or_default());
        copy_end_to_end(&req, &mut out, true);
        let mf = next_max_forwards(&req).unwrap_or(70);
        let cid = self.start_client(out, target, None, Some(sid), ClientKind::Forward, mf);
        if let Some(e) = self.servers.get_mut(&sid) {
            e.peer_client = Some(cid);
        }
    }

    fn in_dialog_request(&mut self, sid: u64) {
        let Some(req) = self.servers.get(&sid).and_then(|e| e.request.clone()) else {
            return;
        };
        let method = req.method().unwrap_or_default().to_string();
        let (call_id, tag) = (
            req.call_id().unwrap_or_default().to_string(),
            req.to_tag().unwrap_or_default(),
        );
        let Some(leg_id) = self.model.find(&call_id, &tag) else {
            debug!(%call_id, "no dialog for in-dialog request");
            return self.respond(sid, 481, reason(481));
        };
        let Some(leg) = self.model.leg_mut(leg_id) else {
            return;
        };
        let span = tracing::info_span!("call", call = leg.call, leg = leg_id);
        let _g = span.enter();
        let (cseq, _) = req.cseq().unwrap_or_default();
        if !leg.dialog.accept_remote_cseq(cseq, &method) {
            warn!(cseq, "CSeq out of order");
            return self.respond(sid, 500, "CSeq Out of Order");
        }
        if sets_target(&method) {
            if let Some(t) = contact_uri(&req) {
                leg.dialog.remote_target = t;
            }
        }
        leg.dialog.record_sdp(&req);
        if method == "INVITE" {
            leg.invite_server = Some(sid);
        }
        let peer = leg.peer;
        if let Some(e) = self.servers.get_mut(&sid) {
            e.leg = Some(leg_id);
        }
        debug!(request = %req.summary(), "in-dialog request");
        match peer {
            Some(peer) => {
                if method == "BYE" {
                    for l in [leg_id, peer] {
                        if let Some(l) = self.model.leg_mut(l) {
                            l.state = LegState::Terminating;
                        }
                    }
                }
                self.forward_on_leg(sid, &req, peer);
            }
            None if method == "BYE" => {
                self.respond(sid, 200, "OK");
                self.release(leg_id);
            }
            None => self.respond(sid, 481, reason(481)),
        }
    }

    /// ACK: for a non-2xx it belongs to the INVITE server transaction; for a
    /// 2xx it is end-to-end, relayed as our own ACK on the partner leg.
    fn on_ack(&mut self, ack: SipMessage, key: &ServerKey) {
        if let Some(&sid) = self.server_index.get(key) {
            if let Some(e) = self.servers.get_mut(&sid) {
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
        let Some(leg_id) = self.model.find(&call_id, &tag) else {
            debug!(%call_id, "ACK for unknown dialog dropped");
            return;
        };
        let Some(leg) = self.model.leg_mut(leg_id) else {
            return;
        };
        leg.dialog.record_sdp(&ack);
        let (invite_server, peer) = (leg.invite_server.take(), leg.peer);
        if let Some(sid) = invite_server {
            if let Some(e) = self.servers.get_mut(&sid) {
                let actions = e.tx.on_ack();
                self.run_server(sid, actions);
            }
        }
        if let Some(peer) = peer {
            self.ack_leg(peer, Some(&ack));
        }
    }

    /// Send our ACK for the 2xx to the last INVITE sent on `leg_id`, with the
    /// end-to-end headers and body of `template` (the originator's ACK). The
    /// ACK is kept to answer 2xx retransmissions. No-op when already sent.
    fn ack_leg(&mut self, leg_id: LegId, template: Option<&SipMessage>) {
        let Some(p) = self.model.leg_mut(leg_id) else {
            return;
        };
        if p.ack.is_some() || p.invite_cseq == 0 {
            return; // already acknowledged, or nothing to acknowledge
        }
        let mut out = p.dialog.request_with_cseq("ACK", p.invite_cseq);
        match template {
            Some(t) => copy_end_to_end(t, &mut out, false),
            None => out.set_body(Bytes::new()),
        }
        p.dialog.record_sdp(&out);
        let target = p.dialog.dest.clone();
        let local = self.transport.local_addr_for(target.proto, target.addr);
        if let Some(local) = local {
            out.headers.insert(
                0,
                header("Via", via_value(target.proto, local, &new_branch())),
            );
            out.headers.insert(1, header("Max-Forwards", "70"));
        }
        let bytes = out.to_bytes();
        p.ack = Some(bytes.clone());
        m::count_out(&out);
        self.transport.send(&target, bytes, None);
    }

    fn on_cancel(&mut self, cancel: SipMessage, source: Target, key: ServerKey) {
        let invite_key = ServerKey {
            method: "INVITE".into(),
            ..key.clone()
        };
        let Some(&inv) = self.server_index.get(&invite_key) else {
            let r = response_to(&cancel, 481, reason(481), Some(&new_tag()));
            return self.send(&source, &r, None);
        };
        if let Some(&sid) = self.server_index.get(&key) {
            // Retransmitted CANCEL.
            let actions = self.servers.get_mut(&sid).map(|e| e.tx.on_retransmission());
            return self.run_server(sid, actions.unwrap_or_default());
        }
        let sid = self.new_server(cancel, source, key);
        self.respond(sid, 200, "OK");
        let Some(e) = self.servers.get(&inv) else {
            return;
        };
        if !e.tx.awaits_final() {
            return; // too late: the INVITE already has its final response
        }
        let (a_leg, client) = (e.leg, e.peer_client);
        let span = self.leg_span(a_leg);
        let _g = span.enter();
        self.respond(inv, 487, reason(487));
        info!("call cancelled by caller");
        let b_leg = a_leg.and_then(|a| self.model.peer_of(a));
        if let Some(b) = b_leg {
            if let Some(l) = self.model.leg_mut(b) {
                l.state = LegState::Terminating;
            }
        }
        if let Some(a) = a_leg {
            self.release(a);
        }
        if let Some(cid) = client {
            self.cancel_client(cid);
        }
    }

    /// CANCEL a forwarded INVITE: at once if it has a provisional response,
    /// otherwise as soon as one arrives (RFC 3261 section 9.1).
    fn cancel_client(&mut self, cid: u64) {
        let Some(c) = self.clients.get(&cid) else {
            return;
        };
        match c.tx.state() {
            ClientState::Proceeding => {}
            ClientState::Calling => {
                if let Some(l) = c.leg.and_then(|l| self.model.leg_mut(l)) {
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
        let (target, leg, branch) = (c.target.clone(), c.leg, c.branch.clone());
        self.start_client_with_branch(cancel, target, leg, None, ClientKind::Cancel, branch);
    }

    // ----- responses -----

    fn on_response(&mut self, resp: SipMessage) {
        if let Err(problem) = validate_response(&resp) {
            warn!(%problem, "invalid response dropped");
            return;
        }
        let branch = resp
            .top_via()
            .and_then(|v| v.branch().map(str::to_string))
            .unwrap_or_default();
        let is_cancel = resp.cseq().is_some_and(|c| c.1 == "CANCEL");
        let Some(&cid) = self.client_index.get(&(branch, is_cancel)) else {
            debug!(response = %resp.summary(), "stray response dropped");
            return;
        };
        let actions = match self.clients.get_mut(&cid) {
            Some(c) => c.tx.on_response(resp),
            None => return,
        };
        self.run_client(cid, actions);
    }

    fn on_client_response(&mut self, cid: u64, resp: SipMessage) {
        let Some(c) = self.clients.get(&cid) else {
            return;
        };
        let (kind, leg_id, origin) = (c.kind, c.leg, c.origin);
        let status = resp.status().unwrap_or(0);
        let method = resp.cseq().map(|c| c.1).unwrap_or_default();
        match kind {
            ClientKind::Cancel => return,
            ClientKind::LocalBye => {
                if status >= 200 {
                    if let Some(l) = leg_id {
                        self.release(l);
                    }
                }
                return;
            }
            ClientKind::Plugin => return self.plugin_response(cid, resp),
            ClientKind::Forward => {}
        }
        if let Some(leg_id) = leg_id {
            if method == "INVITE" && !self.invite_response_on_leg(leg_id, cid, &resp) {
                return;
            }
            if let Some(l) = self.model.leg_mut(leg_id) {
                if method != "INVITE" && (200..300).contains(&status) {
                    l.dialog.record_sdp(&resp);
                }
            }
        }
        let mut resp = resp;
        let target = self.clients.get(&cid).map(|c| c.target.clone());
        let handled = match (status > 100, target) {
            (true, Some(t)) => {
                self.run_hooks(HookKind::Response, leg_id, origin, &mut resp, &t)
                    == HookOutcome::Handled
            }
            _ => false,
        };
        if status > 100 && !handled {
            if let Some(sid) = origin {
                self.relay_response(sid, &resp);
            }
        }
        if status >= 200 {
            self.end_call_if_over(leg_id, &method, status >= 300);
        }
    }

    /// Dialog bookkeeping for a response to an INVITE we sent on `leg_id`.
    /// Returns false when the response must not be relayed.
    fn invite_response_on_leg(&mut self, leg_id: LegId, cid: u64, resp: &SipMessage) -> bool {
        let status = resp.status().unwrap_or(0);
        let Some(leg) = self.model.leg_mut(leg_id) else {
            return false;
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
            if let Some(c) = self.clients.get_mut(&cid) {
                c.ring_deadline = Some(tokio::time::Instant::now() + self.settings.timer_c);
            }
            let Some(leg) = self.model.leg_mut(leg_id) else {
                return false;
            };
            leg.dialog.record_sdp(resp);
            if leg.cancel_pending && status > 100 {
                leg.cancel_pending = false;
                self.cancel_client(cid);
            }
            return true;
        }
        if status >= 300 {
            leg.invite_client = None;
            return true;
        }
        // 2xx: a retransmission gets our ACK again, nothing is relayed.
        if let Some(ack) = leg.ack.clone() {
            let target = leg.dialog.dest.clone();
            self.transport.send(&target, ack, None);
            return false;
        }
        let already_confirmed = leg.state == LegState::Confirmed && leg.invite_client.is_none();
        if already_confirmed {
            return false; // 2xx retransmission before the originator's ACK arrived
        }
        leg.invite_client = None;
        if initial {
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
        leg.state = LegState::Confirmed;
        leg.dialog.record_sdp(resp);
        true
    }

    /// Relay a response from the partner leg to the origin of server transaction `sid`.
    fn relay_response(&mut self, sid: u64, resp: &SipMessage) {
        let Some(e) = self.servers.get(&sid) else {
            return;
        };
        let Some(req) = e.request.as_ref().filter(|_| e.tx.awaits_final()) else {
            return;
        };
        let status = resp.status().unwrap_or(500);
        let reason_text = match &resp.start {
            crate::sip::StartLine::Response { reason, .. } => reason.clone(),
            _ => String::new(),
        };
        let method = req.method().unwrap_or_default().to_string();
        let mut out = response_to(req, status, &reason_text, Some(&e.to_tag));
        let our_contact = sets_target(&method) && status < 300 && e.leg.is_some();
        if our_contact {
            let src = e.source.clone();
            if let Some(local) = self.transport.local_addr_for(src.proto, src.addr) {
                out.push_header("Contact", contact_value(src.proto, local));
            }
        }
        copy_end_to_end(resp, &mut out, !our_contact);
        if let Some(l) = e.leg.and_then(|l| self.model.leg_mut(l)) {
            l.dialog.record_sdp(&out);
            if method == "INVITE" && (200..300).contains(&status) {
                l.state = LegState::Confirmed;
            }
        }
        self.send_response(sid, &out);
    }

    // ----- transaction plumbing -----

    fn respond(&mut self, sid: u64, status: u16, reason_text: &str) {
        let Some(e) = self.servers.get_mut(&sid) else {
            return;
        };
        let Some(req) = &e.request else {
            return;
        };
        let mut r = response_to(req, status, reason_text, Some(&e.to_tag));
        if status == 503 {
            r.push_header("Retry-After", "5");
        }
        self.send_response(sid, &r);
    }

    /// Send `r` through server transaction `sid` (ignored when the
    /// transaction is gone or already has its final response).
    fn send_response(&mut self, sid: u64, r: &SipMessage) {
        let Some(e) = self.servers.get_mut(&sid) else {
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
        self.run_server(sid, actions);
    }

    fn start_client(
        &mut self,
        msg: SipMessage,
        target: Target,
        leg: Option<LegId>,
        origin: Option<u64>,
        kind: ClientKind,
        max_forwards: u32,
    ) -> u64 {
        let mut msg = msg;
        msg.set_header("Max-Forwards", max_forwards.to_string());
        let method = msg.method().unwrap_or_default().to_string();
        if sets_target(&method) && msg.header("Contact").is_none() {
            if let Some(local) = self.transport.local_addr_for(target.proto, target.addr) {
                msg.push_header("Contact", contact_value(target.proto, local));
            }
        }
        let branch = new_branch();
        self.start_client_with_branch(msg, target, leg, origin, kind, branch)
    }

    fn start_client_with_branch(
        &mut self,
        mut msg: SipMessage,
        target: Target,
        leg: Option<LegId>,
        origin: Option<u64>,
        kind: ClientKind,
        branch: String,
    ) -> u64 {
        if kind != ClientKind::Cancel {
            let local = self
                .transport
                .local_addr_for(target.proto, target.addr)
                .unwrap_or_else(|| ([0, 0, 0, 0], 0).into());
            msg.headers
                .insert(0, header("Via", via_value(target.proto, local, &branch)));
        }
        if msg.header("Content-Length").is_none() {
            let body = msg.body.clone();
            msg.set_body(body);
        }
        let id = self.tx_ids.next_id();
        let is_cancel = kind == ClientKind::Cancel;
        m::count_out(&msg);
        let (tx, actions) = ClientTx::start(msg, target.proto.is_reliable(), self.settings.timers);
        self.client_index.insert((branch.clone(), is_cancel), id);
        self.clients.insert(
            id,
            Box::new(ClientEntry {
                tx,
                branch,
                kind,
                target,
                leg,
                origin,
                transport_failed: false,
                plugin: None,
                ring_deadline: None,
            }),
        );
        if self
            .clients
            .get(&id)
            .is_some_and(|c| is_invite_forward(kind, &c.tx))
        {
            self.arm_timer_c(id);
        }
        self.run_client(id, actions);
        id
    }

    fn run_server(&mut self, id: u64, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Send(bytes) => {
                    if let Some(e) = self.servers.get(&id) {
                        self.transport.send(&e.source, bytes, None);
                    }
                }
                Action::Schedule(t, d) => {
                    self.timers.schedule(TimerKey::Tx(TxRef::Server(id), t), d)
                }
                Action::Timeout => self.on_server_timeout(id),
                Action::Terminated => {
                    if let Some(e) = self.servers.remove(&id) {
                        self.server_index.remove(&e.key);
                        shrink_if_sparse(&mut self.servers);
                        shrink_if_sparse(&mut self.server_index);
                    }
                }
                Action::Deliver(_) => {}
            }
        }
    }

    fn run_client(&mut self, id: u64, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Send(bytes) => {
                    if let Some(c) = self.clients.get(&id) {
                        self.transport.send(&c.target, bytes, Some(id));
                    }
                }
                Action::Schedule(t, d) => {
                    self.timers.schedule(TimerKey::Tx(TxRef::Client(id), t), d)
                }
                Action::Deliver(resp) => self.on_client_response(id, resp),
                Action::Timeout => self.on_client_timeout(id),
                Action::Terminated => {
                    if let Some(c) = self.clients.remove(&id) {
                        self.client_index
                            .remove(&(c.branch, c.kind == ClientKind::Cancel));
                        shrink_if_sparse(&mut self.clients);
                        shrink_if_sparse(&mut self.client_index);
                        if c.tx.is_invite() {
                            self.forget_ack(c.leg);
                        }
                    }
                }
            }
        }
    }

    /// Once the INVITE transaction is over, a retransmitted 2xx no longer
    /// matches anything (it is dropped as stray), so the stored ACK is not
    /// needed: keep only the "acknowledged" mark, free the bytes.
    fn forget_ack(&mut self, leg: Option<LegId>) {
        if let Some(l) = leg.and_then(|l| self.model.leg_mut(l)) {
            if l.ack.is_some() {
                l.ack = Some(Bytes::new());
            }
        }
    }

    fn on_timer_key(&mut self, key: TimerKey) {
        match key {
            TimerKey::Tx(tx, timer) => self.on_timer(tx, timer),
            TimerKey::Plugin(id) => self.plugin_timer_fired(id),
            TimerKey::PluginAnswerDue(sid) => {
                if self.servers.get(&sid).is_some_and(|e| e.tx.awaits_final()) {
                    warn!("a plugin took a request over but did not answer it in time");
                    self.respond(sid, 500, "Server Internal Error");
                }
            }
        }
    }

    fn on_timer(&mut self, tx: TxRef, timer: Timer) {
        match tx {
            TxRef::Server(id) => {
                let actions = match self.servers.get_mut(&id) {
                    Some(e) => e.tx.on_timer(timer),
                    None => return,
                };
                self.run_server(id, actions);
            }
            TxRef::Client(id) if timer == Timer::C => self.on_timer_c(id),
            TxRef::Client(id) => {
                let actions = match self.clients.get_mut(&id) {
                    Some(c) => c.tx.on_timer(timer),
                    None => return,
                };
                self.run_client(id, actions);
            }
        }
    }

    fn arm_timer_c(&mut self, cid: u64) {
        let c_time = self.settings.timer_c;
        if let Some(c) = self.clients.get_mut(&cid) {
            c.ring_deadline = Some(tokio::time::Instant::now() + c_time);
            self.timers
                .schedule(TimerKey::Tx(TxRef::Client(cid), Timer::C), c_time);
        }
    }

    /// Timer C: the INVITE went too long without a provisional response
    /// (each provisional moves the deadline on). Cancel it; the caller gets 408.
    fn on_timer_c(&mut self, cid: u64) {
        let Some(c) = self.clients.get(&cid) else {
            return;
        };
        if !matches!(c.tx.state(), ClientState::Calling | ClientState::Proceeding) {
            return;
        }
        let now = tokio::time::Instant::now();
        if let Some(deadline) = c.ring_deadline.filter(|d| *d > now) {
            self.timers
                .schedule(TimerKey::Tx(TxRef::Client(cid), Timer::C), deadline - now);
            return;
        }
        let (leg, origin) = (c.leg, c.origin);
        let span = self.leg_span(leg);
        let _g = span.enter();
        warn!("Timer C expired: cancelling the unanswered INVITE");
        if let Some(sid) = origin {
            self.respond(sid, 408, reason(408));
        }
        if let Some(l) = leg.and_then(|l| self.model.leg_mut(l)) {
            l.state = LegState::Terminating;
        }
        if let Some(peer) = leg.and_then(|l| self.model.peer_of(l)) {
            if self
                .model
                .leg(peer)
                .is_some_and(|p| p.state == LegState::Early)
            {
                self.release(peer);
            }
        }
        self.cancel_client(cid);
    }

    fn on_send_failed(&mut self, target: Target, token: Option<u64>) {
        metrics::counter!(m::SEND_FAILURES).increment(1);
        let Some(id) = token else {
            warn!(%target, "could not send");
            return;
        };
        let actions = match self.clients.get_mut(&id) {
            Some(c) => {
                c.transport_failed = true;
                c.tx.on_transport_error()
            }
            None => return,
        };
        self.run_client(id, actions);
    }

    /// No final response from the far side: answer 408 (or 503 when the
    /// transport failed) and end what the request was setting up.
    fn on_client_timeout(&mut self, cid: u64) {
        let Some(c) = self.clients.get(&cid) else {
            return;
        };
        let (kind, leg, origin, failed) = (c.kind, c.leg, c.origin, c.transport_failed);
        let method = c.tx.method().to_string();
        warn!(%method, transport_failed = failed, "no response from {}", c.target);
        if kind == ClientKind::LocalBye {
            if let Some(l) = leg {
                self.release(l);
            }
            return;
        }
        if kind == ClientKind::Plugin {
            return self.plugin_request_failed(cid);
        }
        if let Some(sid) = origin {
            let status = if failed { 503 } else { 408 };
            self.respond(sid, status, reason(status));
        }
        self.end_call_if_over(leg, &method, true);
    }

    /// A final response we sent was never acknowledged.
    fn on_server_timeout(&mut self, sid: u64) {
        let Some(e) = self.servers.get(&sid) else {
            return;
        };
        if !e.tx.is_invite() {
            return;
        }
        let status = e.tx.last_status();
        let leg = e.leg;
        let span = self.leg_span(leg);
        let _g = span.enter();
        warn!(status, "no ACK for final response to INVITE");
        if (200..300).contains(&status) {
            if let Some(l) = leg {
                // RFC 3261 section 13.3.1.4: end the dialog on both legs.
                let peer = self.model.peer_of(l);
                self.send_bye(l);
                if let Some(p) = peer {
                    self.send_bye(p);
                }
            }
        }
    }

    // ----- legs -----

    fn send_bye(&mut self, leg_id: LegId) {
        let Some(leg) = self.model.leg_mut(leg_id) else {
            return;
        };
        if leg.dialog.remote_tag.is_none() {
            self.release(leg_id);
            return;
        }
        leg.state = LegState::Terminating;
        let mut bye = leg.dialog.new_request("BYE");
        bye.set_body(Bytes::new());
        let target = leg.dialog.dest.clone();
        self.start_client(bye, target, Some(leg_id), None, ClientKind::LocalBye, 70);
    }

    fn release(&mut self, leg_id: LegId) {
        if let Some(leg) = self.model.release(leg_id) {
            debug!(leg = leg_id, call = leg.call, "leg released");
            if self.model.legs_of(leg.call).is_empty() {
                info!(call = leg.call, "call ended");
                let set = self.call_plugins.remove(&leg.call);
                shrink_if_sparse(&mut self.call_plugins);
                if let Some(set) = set {
                    self.call_ended(&set, leg.call);
                }
            }
        }
    }

    /// Whether a request's outcome ends its leg: a finished BYE, or an
    /// INVITE that failed before the leg's dialog was confirmed.
    fn leg_is_over(&self, leg: LegId, method: &str, invite_failed: bool) -> bool {
        let unconfirmed = self
            .model
            .leg(leg)
            .is_some_and(|x| x.state != LegState::Confirmed);
        method == "BYE" || (method == "INVITE" && invite_failed && unconfirmed)
    }

    /// A relayed request's outcome that ends its leg ends the call: both legs go.
    fn end_call_if_over(&mut self, leg: Option<LegId>, method: &str, invite_failed: bool) {
        if let Some(l) = leg.filter(|l| self.leg_is_over(*l, method, invite_failed)) {
            self.release_with_peer(l);
        }
    }

    fn release_with_peer(&mut self, leg_id: LegId) {
        let peer = self.model.peer_of(leg_id);
        self.release(leg_id);
        if let Some(p) = peer {
            self.release(p);
        }
    }

    fn send(&self, target: &Target, msg: &SipMessage, token: Option<u64>) {
        m::count_out(msg);
        self.transport.send(target, msg.to_bytes(), token);
    }
}

fn is_invite_forward(kind: ClientKind, tx: &ClientTx) -> bool {
    kind == ClientKind::Forward && tx.is_invite()
}

fn header(name: &str, value: impl Into<String>) -> crate::sip::Header {
    crate::sip::Header {
        name: name.to_string(),
        value: value.into(),
    }
}

/// A Call-ID for the core side derived from the client's, stable across
/// requests, without exposing the client's value; on the client's shard.
fn derived_call_id(client_call_id: &str, shard: usize) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    client_call_id.hash(&mut h);
    call_id_on_shard(&format!("{:016x}", h.finish()), shard)
}
