//! The B2BUA logic of one shard, on top of [`crate::entities`] and using
//! only its API: which requests start calls, what is relayed to which leg,
//! how CANCEL, BYE and failures cross from one leg to the other, and the
//! plugins' hooks and actions. No I/O: what it decides leaves through the
//! entities' output, which the shard task ([`crate::core`]) sends.
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | [`B2bua`]: input checks, the dispatch of entity events, status |
//! | `relay.rs` | new calls, requests relayed in and out of dialogs, responses relayed back |
//! | `ending.rs` | CANCEL across legs, Timer C, failures, unacknowledged 2xx, released legs |
//! | `replaces.rs` | INVITEs with Replaces: translated for clients that support it, performed for those that do not |
//! | `subscriptions.rs` | REFER and SUBSCRIBE relayed across legs: their NOTIFYs mapped back with the subscriber's id, unknown ones 481 |
//! | `plugins.rs` | plugin hooks, the executor of plugin actions, plugin events |

mod ending;
mod plugins;
mod relay;
mod replaces;
mod subscriptions;

use crate::entities::ids::{CallRef, ClientTxId, LegId, ServerTxId};
use crate::entities::{Entities, EntityEvent, EntitySettings};
use crate::forward::{response_to, validate_request, validate_response};
use crate::metrics as m;
use crate::plugins::PluginSet;
use crate::routing::Router;
use crate::sip::{Method, SipMessage};
use crate::transport::{InboundError, LocalAddrs, Target};
use plugins::PluginRef;
use std::collections::HashMap;
use std::sync::Arc;
use tracing::{debug, warn};

pub use plugins::HookOutcome;

/// What logic needs to know besides the entities' settings.
#[derive(Clone)]
pub struct LogicSettings {
    pub router: Router,
    /// New calls beyond this many (over all shards) get 503.
    pub max_calls: usize,
    /// See [`crate::config::CoreConfig::replaces_from_clients`].
    pub replaces_from_clients: bool,
    /// Call-IDs routed to a shard by exception (shared with the inbox).
    pub pins: Arc<crate::shard::Pins>,
    /// See [`crate::config::LimitsConfig::shed_after_ms`].
    pub shed_after: Option<std::time::Duration>,
}

/// Logic's own timers, scheduled through the entities' timer queue.
#[derive(Clone)]
enum LogicTimer {
    /// A timer a plugin set.
    Plugin(PluginRef),
    /// A request a plugin took over must have its final response by now.
    PluginAnswerDue(ServerTxId),
    /// A refused INVITE with Replaces: its Call-ID's pin outlives the
    /// transaction's retransmissions and ACK, then goes.
    Unpin(String),
}

pub struct B2bua {
    settings: LogicSettings,
    entities: Entities,
    /// Calls over all shards (for `max_calls`).
    calls_everywhere: Arc<dyn Fn() -> usize + Send + Sync>,
    draining: bool,
    /// The plugin set new calls get.
    plugins: Arc<PluginSet>,
    /// The set each call started with.
    call_plugins: HashMap<CallRef, Arc<PluginSet>>,
    /// Requests plugins sent, whose outcome goes back to them.
    plugin_requests: HashMap<ClientTxId, PluginRef>,
    timers: HashMap<u64, LogicTimer>,
    next_timer: u64,
    /// Replacements performed for legacy clients, by their re-INVITE.
    replacements: HashMap<ClientTxId, replaces::Replacement>,
    /// Legs answering an INVITE with Replaces: their Call-ID is pinned
    /// until they are released.
    pinned_legs: HashMap<LegId, String>,
}

impl B2bua {
    /// The logic of shard `shard` of `shards`. `calls_everywhere` counts the
    /// calls of every shard.
    pub fn new(
        entity_settings: EntitySettings,
        settings: LogicSettings,
        locals: LocalAddrs,
        plugins: Arc<PluginSet>,
        (shard, shards): (usize, usize),
        calls_everywhere: Arc<dyn Fn() -> usize + Send + Sync>,
    ) -> B2bua {
        B2bua {
            settings,
            entities: Entities::new(entity_settings, locals, shard, shards),
            calls_everywhere,
            draining: false,
            plugins,
            call_plugins: HashMap::new(),
            plugin_requests: HashMap::new(),
            timers: HashMap::new(),
            next_timer: 0,
            replacements: HashMap::new(),
            pinned_legs: HashMap::new(),
        }
    }

    pub fn entities(&self) -> &Entities {
        &self.entities
    }

    pub fn entities_mut(&mut self) -> &mut Entities {
        &mut self.entities
    }

    /// Refuse new calls from now on (503).
    pub fn drain(&mut self) {
        self.draining = true;
    }

    pub fn is_draining(&self) -> bool {
        self.draining
    }

    pub fn plugins(&self) -> &Arc<PluginSet> {
        &self.plugins
    }

    /// New calls use `set`; calls in progress keep theirs.
    pub fn replace_plugins(&mut self, set: Arc<PluginSet>) {
        self.plugins = set;
    }

    // ----- input -----

    /// A message that waited `waited` in the host's queue: a new request
    /// outside a dialog is shed (503 + Retry-After) when that is longer
    /// than `shed_after`; everything else is handled.
    pub fn handle_inbound_waited(
        &mut self,
        source: Target,
        message: Result<SipMessage, InboundError>,
        waited: std::time::Duration,
    ) {
        if let Ok(msg) = &message {
            if self.settings.shed_after.is_some_and(|bound| waited > bound) && sheddable(msg) {
                m::count_in(msg);
                m::shed(msg.method().unwrap_or_default(), m::SHED_IN_QUEUE);
                debug!(%source, waited_ms = waited.as_millis() as u64, request = %msg.summary(), "overload: shed");
                let retry = crate::transport::RETRY_AFTER_SECONDS.to_string();
                return self.refuse(&source, msg, 503, Some(("Retry-After", retry)));
            }
        }
        self.handle_inbound(source, message)
    }

    /// A message (or what could be read of it) from `source`.
    pub fn handle_inbound(&mut self, source: Target, message: Result<SipMessage, InboundError>) {
        match message {
            Ok(msg) if msg.is_request() => {
                m::count_in(&msg);
                self.on_request(msg, source)
            }
            Ok(msg) => {
                m::count_in(&msg);
                if let Err(problem) = validate_response(&msg) {
                    warn!(%problem, "invalid response dropped");
                } else {
                    self.entities.handle_response(msg);
                }
            }
            Err(InboundError::BadMessage {
                head,
                error,
                status,
                reason,
            }) => {
                m::parse_error(source.proto, reason);
                warn!(%source, %error, "malformed message");
                if head.is_request() {
                    // 513 names its problem in its status alone.
                    let warned = (status != 513).then(|| ("Warning", warning(&error)));
                    self.refuse(&source, &head, status, warned);
                }
            }
            Err(InboundError::Unparseable(error)) => {
                m::parse_error(source.proto, "unparseable");
                warn!(%source, %error, "dropping unparseable message");
            }
        }
        self.process_events();
    }

    /// A timer of the entities' queue fired.
    pub fn handle_timer(&mut self, key: crate::entities::TimerKey) {
        self.entities.handle_timer(key);
        self.process_events();
    }

    /// The transport could not send for `token` (a client transaction).
    pub fn handle_send_failed(&mut self, target: &Target, token: Option<ClientTxId>) {
        metrics::counter!(m::SEND_FAILURES).increment(1);
        match token {
            Some(id) => self.entities.handle_send_failed(id),
            None => warn!(%target, "could not send"),
        }
        self.process_events();
    }

    fn on_request(&mut self, msg: SipMessage, source: Target) {
        if let Err(refused) = validate_request(&msg) {
            let label = match refused.status {
                416 => "uri-scheme",
                420 => "bad-extension",
                _ => "invalid-request",
            };
            m::parse_error(source.proto, label);
            let (status, problem) = (refused.status, refused.problem);
            warn!(%source, %problem, status, request = %msg.summary(), "invalid request");
            // A 420 names what it refuses in Unsupported (RFC 3261 §8.2.2.3).
            let header = match refused.unsupported {
                Some(options) => ("Unsupported", options),
                None => ("Warning", warning(&problem)),
            };
            return self.refuse(&source, &msg, status, Some(header));
        }
        self.entities.handle_request(msg, source);
    }

    /// Answer request `req` from `source` with `status` (and `header`),
    /// statelessly, before any transaction exists (an ACK, or a request
    /// without a Via to answer to, gets nothing).
    fn refuse(
        &mut self,
        source: &Target,
        req: &SipMessage,
        status: u16,
        header: Option<(&str, String)>,
    ) {
        if !crate::sip::response::answerable(req) {
            return;
        }
        let tag = crate::entities::dialog::new_tag();
        let mut r = response_to(req, status, crate::forward::reason(status), Some(&tag));
        if let Some((name, value)) = header {
            r.push_header(name, value);
        }
        self.entities.send_stateless(source, &r);
    }

    /// Everything the entities raised, in order (handling one may raise more).
    fn process_events(&mut self) {
        while let Some(ev) = self.entities.poll_event() {
            match ev {
                EntityEvent::Request(sid) => self.on_new_request(sid),
                EntityEvent::Ack { leg, ack } => self.on_ack(leg, &ack),
                EntityEvent::Cancelled { invite } => self.on_cancelled(invite),
                EntityEvent::Response { tx, info, response } => {
                    self.on_response(tx, info, response)
                }
                EntityEvent::ClientFailed {
                    tx,
                    info,
                    transport_failed,
                } => self.on_client_failed(tx, info, transport_failed),
                EntityEvent::RingTimeout { tx, info } => self.on_ring_timeout(tx, info),
                EntityEvent::Unacknowledged { tx, leg, status } => {
                    self.on_unacknowledged(tx, leg, status)
                }
                EntityEvent::LegReleased {
                    leg,
                    call,
                    call_over,
                } => self.on_leg_released(leg, call, call_over),
                EntityEvent::Timer(id) => self.on_logic_timer(id),
            }
        }
    }

    fn schedule(&mut self, timer: LogicTimer, after: std::time::Duration) {
        self.next_timer += 1;
        let id = self.next_timer;
        self.timers.insert(id, timer);
        self.entities.schedule(id, after);
    }

    fn on_logic_timer(&mut self, id: u64) {
        let timer = self.timers.remove(&id);
        crate::compaction::shrink_if_sparse(&mut self.timers);
        match timer {
            Some(LogicTimer::Plugin(by)) => self.plugin_timer_fired(by),
            Some(LogicTimer::PluginAnswerDue(sid)) => {
                let unanswered = self
                    .entities
                    .server(sid)
                    .is_some_and(|e| e.tx.awaits_final());
                if unanswered {
                    warn!("a plugin took a request over but did not answer it in time");
                    self.entities.respond(sid, 500, "Server Internal Error");
                }
            }
            Some(LogicTimer::Unpin(call_id)) => self.settings.pins.unpin(&call_id),
            None => {}
        }
    }

    fn leg_span(&self, leg: Option<LegId>) -> tracing::Span {
        match leg.and_then(|l| self.entities.calls().leg(l)) {
            Some(l) => tracing::info_span!("call", call = %l.call, leg = %l.id),
            None => tracing::Span::none(),
        }
    }
}

/// A Warning header value (RFC 3261 §20.43) naming `problem`: code 399,
/// the agent, and the text as a well-formed quoted string (no quotes,
/// backslashes or control characters from the input inside).
pub(crate) fn warning(problem: &str) -> String {
    let text: String = problem
        .chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    format!("399 escalator \"{text}\"")
}

/// A request the host may shed under overload: one that starts something
/// (outside a dialog), answerable (a Via), and not an ACK or CANCEL (they
/// finish what was started).
fn sheddable(msg: &SipMessage) -> bool {
    msg.is_request()
        && msg.to_tag().is_none()
        && msg.top_via().is_some()
        && !matches!(msg.request_method(), Some(Method::Ack | Method::Cancel))
}
