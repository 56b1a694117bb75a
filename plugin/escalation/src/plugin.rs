//! The plugin: hooks in, policy decisions, flows, metrics and logs out.
//!
//! Configuration (the host's `[plugins.config]`):
//! ```toml
//! policy = "policies/default.toml"   # required
//! answer_timeout_ms = 20000          # fresh-offer: longest wait for the conference
//! ```
//! The policy file is re-read when it changes (checked at most once a
//! second, when a request arrives); an invalid new file is logged and the
//! running policy kept. Escalations in progress keep the policy they started
//! with; a host reload (SIGHUP) creates a new instance with a fresh policy.

use crate::addition::{self, Addition, Joined, Plan};
use crate::flow::{self, Flow, Outcome, Setup};
use crate::invite::PeerDialog;
use crate::policy::{OutsideDialog, Policy, Subject};
use crate::trigger::{self, TriggerError};
use escalator_plugin_api::{
    Action, Decision, Event, HookInput, LegRole, LogLevel, MessageContext, MetricKind, Plugin,
    INTEREST_EVENTS, INTEREST_REQUESTS,
};
use escalator_sip::{NameAddr, SipMessage};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    policy: PathBuf,
    #[serde(default = "default_answer_timeout")]
    answer_timeout_ms: u64,
}

fn default_answer_timeout() -> u64 {
    flow::DEFAULT_ANSWER_TIMEOUT_MS
}

pub struct Escalator {
    policy_path: PathBuf,
    policy: Arc<Policy>,
    policy_mtime: Option<SystemTime>,
    last_check: Instant,
    answer_timeout_ms: u64,
    next_token: u64,
    flows: HashMap<u64, Flow>,
    /// token → flow id (a flow's id is its first token).
    tokens: HashMap<u64, u64>,
    /// calls with an escalation in progress → flow id.
    busy: HashMap<u64, u64>,
    /// calls already turned into a conference: later REFERs go to the focus.
    escalated: HashMap<u64, Joined>,
    /// Further additions the plugin splits into REFERs, by id, and the
    /// tokens of their REFERs → id.
    additions: HashMap<u64, Addition>,
    addition_tokens: HashMap<u64, u64>,
    /// CSeqs of the plugin's own REFERs on each call's conference dialog:
    /// the focus's NOTIFYs for them are answered here.
    own_refers: HashMap<u64, Vec<u32>>,
    /// The policy-info gauge goes out with the first request (a plugin emits
    /// metrics only through actions).
    announced: bool,
}

fn metric(name: &str, labels: &[(&str, &str)]) -> Action {
    Action::Metric {
        name: name.into(),
        kind: MetricKind::Counter,
        value: 1.0,
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn log(level: LogLevel, text: String) -> Action {
    Action::Log { level, text }
}

fn policy_info(p: &Policy) -> Action {
    Action::Metric {
        name: "escalator_policy_info".into(),
        kind: MetricKind::Gauge,
        value: 1.0,
        labels: vec![
            ("version".into(), p.version.clone()),
            ("hash".into(), format!("{:016x}", p.hash)),
        ],
    }
}

fn mtime(path: &PathBuf) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The subject of a policy decision: the client of the leg the request came on.
fn subject(ctx: &MessageContext, msg: &SipMessage) -> Subject {
    let user = NameAddr::parse(&ctx.remote_uri)
        .map(|n| n.uri)
        .or_else(|| msg.header("From").and_then(NameAddr::parse).map(|n| n.uri))
        .unwrap_or_default();
    let supported = msg
        .header_values("Supported")
        .iter()
        .map(|s| s.trim().to_string())
        .collect();
    let contact_features = msg
        .header_values("Contact")
        .first()
        .and_then(|c| NameAddr::parse(c))
        .map(|n| n.params.iter().map(|(k, _)| k.clone()).collect())
        .unwrap_or_default();
    Subject {
        user,
        user_agent: ctx.user_agent.clone(),
        supported,
        contact_features,
    }
}

fn respond(ctx: &MessageContext, status: u16, reason: &str, why: &str) -> Option<Action> {
    Some(Action::Respond {
        transaction: ctx.transaction?,
        status,
        reason: reason.into(),
        headers: vec![(
            "Warning".into(),
            format!("399 escalator \"{}\"", why.replace('"', "'")),
        )],
        body: None,
    })
}

impl Escalator {
    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    /// Swap in the policy file if it changed and is valid.
    fn refresh_policy(&mut self) -> Vec<Action> {
        if self.last_check.elapsed() < Duration::from_secs(1) {
            return vec![];
        }
        self.last_check = Instant::now();
        let now = mtime(&self.policy_path);
        if now == self.policy_mtime {
            return vec![];
        }
        self.policy_mtime = now;
        match Policy::load(&self.policy_path) {
            Ok(p) => {
                self.policy = Arc::new(p);
                vec![
                    log(
                        LogLevel::Info,
                        format!(
                            "policy {} reloaded (version {:?})",
                            self.policy_path.display(),
                            self.policy.version
                        ),
                    ),
                    policy_info(&self.policy),
                ]
            }
            Err(e) => vec![
                log(
                    LogLevel::Error,
                    format!(
                        "policy {} refused, keeping the running one: {e}",
                        self.policy_path.display()
                    ),
                ),
                metric("escalator_policy_reload_failures_total", &[]),
            ],
        }
    }

    /// Whether the request can be a trigger at all, from its method alone:
    /// everything else is passed on without being parsed.
    fn may_trigger(&self, message: &[u8]) -> bool {
        let method = message.split(|b| *b == b' ').next().unwrap_or_default();
        method == b"REFER"
            || self
                .policy
                .triggers
                .custom
                .as_ref()
                .is_some_and(|c| c.method.as_bytes() == method)
    }

    fn handle_request(&mut self, input: &HookInput) -> (Vec<Action>, bool) {
        // Cheap (a clock read) except once a second; first, so that a new
        // custom trigger in the file is recognised at once.
        let mut out = self.refresh_policy();
        if !self.announced {
            self.announced = true;
            out.push(policy_info(&self.policy));
        }
        if input.message.starts_with(b"BYE ") {
            let (more, handled) = self.peer_bye(&input.context);
            out.extend(more);
            return (out, handled);
        }
        if input.context.in_dialog && input.message.starts_with(b"NOTIFY ") {
            if let Some(answer) = self.own_notify(&input.context, &input.message) {
                out.extend(answer);
                return (out, true);
            }
        }
        if input.context.in_dialog && input.message.starts_with(b"INVITE ") {
            if let Some(refusal) = self.peer_reinvite(&input.context) {
                out.extend(refusal);
                return (out, true);
            }
        }
        if !self.may_trigger(&input.message) {
            return (out, false);
        }
        let ctx = &input.context;
        if ctx.from_core {
            return (out, false);
        }
        let Ok(msg) = SipMessage::parse(&input.message, Default::default()) else {
            return (out, false);
        };
        let policy = self.policy.clone();
        let recognised = trigger::recognise(&msg, &policy.triggers);
        let trigger = match recognised {
            Ok(None) | Err(TriggerError::Disabled(_)) => return (out, false),
            other => other,
        };
        let kind_label = match &trigger {
            Ok(Some(t)) => t.kind.label(),
            _ => "malformed",
        };
        if !ctx.in_dialog {
            out.push(metric(
                "escalator_escalations_total",
                &[("result", "outside-dialog"), ("reason", kind_label)],
            ));
            return match policy.triggers.outside_dialog {
                OutsideDialog::Pass => (out, false),
                OutsideDialog::Reject => {
                    out.extend(respond(
                        ctx,
                        403,
                        "Forbidden",
                        "add-user requests are only accepted inside a session",
                    ));
                    (out, true)
                }
            };
        }
        let decision = policy.decide(&subject(ctx, &msg));
        out.push(metric(
            "escalator_policy_decisions_total",
            &[
                ("outcome", decision.outcome.label()),
                ("rule", &decision.rule),
                ("trigger", kind_label),
            ],
        ));
        out.push(log(
            LogLevel::Info,
            format!(
                "call {} leg {}: {} request from {:?}: {} (rule {}, bucket {}{}{})",
                ctx.call,
                ctx.leg,
                kind_label,
                ctx.user_agent.as_deref().unwrap_or("-"),
                decision.outcome.label(),
                decision.rule,
                decision.bucket,
                if decision.canary { ", canary" } else { "" },
                if decision.shadow { ", shadow" } else { "" },
            ),
        ));
        let crate::policy::Outcome::Escalate(domain) = decision.outcome else {
            return (out, false);
        };
        let trigger = match trigger {
            Ok(Some(t)) => t,
            Ok(None) => return (out, false),
            Err(e) => {
                out.push(metric(
                    "escalator_escalations_total",
                    &[("result", "refused"), ("reason", "bad-request")],
                ));
                if decision.shadow {
                    out.push(log(
                        LogLevel::Info,
                        format!("shadow: would refuse with {}: {e}", e.status()),
                    ));
                    return (out, false);
                }
                out.extend(respond(ctx, e.status(), "Bad Request", &e.to_string()));
                return (out, true);
            }
        };
        if let Some(joined) = self.escalated.get(&ctx.call).cloned() {
            // Already in a conference: the focus adds the users.
            let handled = self.add_to_conference(ctx, &msg, &policy, trigger, joined, &mut out);
            return (out, handled);
        }
        let (Some(peer), Some(peer_leg), Some(transaction)) =
            (&ctx.peer, ctx.peer_leg, ctx.transaction)
        else {
            return (out, false);
        };
        if self.busy.contains_key(&ctx.call) {
            out.push(metric(
                "escalator_escalations_total",
                &[("result", "refused"), ("reason", "busy")],
            ));
            // One escalation per dialog (spec §4): 500 with Retry-After, as
            // RFC 3261 §21.5.1 has a UAS answer a request that overlaps
            // one it is still processing.
            if let Some(Action::Respond {
                transaction,
                status,
                reason,
                mut headers,
                body,
            }) = respond(
                ctx,
                500,
                "Server Internal Error",
                "an escalation is already in progress",
            ) {
                headers.push(("Retry-After".into(), "5".into()));
                out.push(Action::Respond {
                    transaction,
                    status,
                    reason,
                    headers,
                    body,
                });
            }
            return (out, true);
        }
        let (client_sdp, peer_sdp) = match ctx.role {
            Some(LegRole::Uac) => (ctx.last_answer.clone(), ctx.last_offer.clone()),
            _ => (ctx.last_offer.clone(), ctx.last_answer.clone()),
        };
        let id = self.token();
        let reports_by_notify = trigger.kind.is_refer();
        let setup = Setup {
            call: ctx.call,
            client_leg: ctx.leg,
            peer_leg,
            transaction,
            refer_cseq: msg.cseq().map(|c| c.0).unwrap_or(0),
            trigger,
            domain,
            from: ctx.remote_uri.clone(),
            peer: PeerDialog {
                uri: ctx.local_uri.clone(),
                call_id: peer.call_id.clone(),
                peer_tag: peer.remote_tag.clone().unwrap_or_default(),
                our_tag: peer.local_tag.clone(),
            },
            client_sdp,
            peer_sdp,
            boundary: format!("escalator-{}-{id}", ctx.call),
            answer_timeout_ms: self.answer_timeout_ms,
            host_made_call_id: ctx.role == Some(LegRole::Uac),
            report: policy
                .triggers
                .custom
                .as_ref()
                .filter(|_| !reports_by_notify)
                .map(|c| flow::Report {
                    added: c.added_message.clone(),
                    failed: c.failed_message.clone(),
                }),
        };
        if let Err(r) = flow::precheck(&setup) {
            out.push(metric(
                "escalator_escalations_total",
                &[("result", "refused"), ("reason", r.label)],
            ));
            out.push(log(
                LogLevel::Warn,
                format!("call {}: refused: {}", ctx.call, r.text),
            ));
            if decision.shadow {
                return (out, false);
            }
            let (n, m) = (self.token(), self.token());
            out.extend(flow::refusal_actions(&setup, &r, n, m));
            return (out, true);
        }
        if decision.shadow {
            let offer = setup.client_sdp.clone().unwrap_or_default();
            let text = match flow::conference_invite(&setup, &offer) {
                Ok(invite) => invite.describe("INVITE"),
                Err(r) => format!("(no INVITE: {})", r.text),
            };
            out.push(metric(
                "escalator_escalations_total",
                &[("result", "shadow"), ("reason", "shadow")],
            ));
            out.push(log(
                LogLevel::Info,
                format!(
                    "shadow: call {} would be escalated ({} mode); the INVITE would be:\n{text}",
                    ctx.call, setup.domain.media
                ),
            ));
            return (out, false);
        }
        let mut tokens = || {
            self.next_token += 1;
            self.next_token
        };
        let (flow, actions, outcome) = Flow::start(setup, &mut tokens);
        out.extend(actions);
        self.busy.insert(ctx.call, id);
        self.track(id, flow, outcome, &mut out);
        (out, true)
    }

    /// A further addition once the client is in the conference (see
    /// [`crate::addition`]); whether the plugin took the request.
    fn add_to_conference(
        &mut self,
        ctx: &MessageContext,
        msg: &SipMessage,
        policy: &Policy,
        trigger: crate::trigger::Trigger,
        joined: Joined,
        out: &mut Vec<Action>,
    ) -> bool {
        let n = trigger.targets.len();
        let label = trigger.kind.label();
        match addition::plan(&joined, &trigger) {
            Plan::Refuse(r) => {
                out.push(metric(
                    "escalator_additions_total",
                    &[("result", "refused"), ("reason", r.label)],
                ));
                out.extend(respond(ctx, r.status, &r.reason, &r.text));
                true
            }
            Plan::Relay => {
                if let Some(j) = self.escalated.get_mut(&ctx.call) {
                    j.participants += n;
                }
                out.push(metric(
                    "escalator_additions_total",
                    &[("result", "relayed"), ("reason", label)],
                ));
                false
            }
            Plan::Split => {
                let Some(transaction) = ctx.transaction else {
                    return false;
                };
                let notify_id = (trigger.kind.is_refer() && trigger.subscription)
                    .then(|| msg.cseq().map_or(0, |c| c.0));
                let report = policy
                    .triggers
                    .custom
                    .as_ref()
                    .filter(|_| !trigger.kind.is_refer())
                    .map(|c| flow::Report {
                        added: c.added_message.clone(),
                        failed: c.failed_message.clone(),
                    });
                let id = self.token();
                let mut tokens = || {
                    self.next_token += 1;
                    self.next_token
                };
                let (addition, actions) = Addition::start(
                    ctx.call,
                    ctx.leg,
                    &joined,
                    transaction,
                    &trigger,
                    notify_id,
                    report,
                    &mut tokens,
                );
                for t in addition.tokens() {
                    self.addition_tokens.insert(t, id);
                }
                self.additions.insert(id, addition);
                if let Some(j) = self.escalated.get_mut(&ctx.call) {
                    j.participants += n;
                }
                out.extend(actions);
                out.push(metric(
                    "escalator_additions_total",
                    &[("result", "split"), ("reason", label)],
                ));
                out.push(log(
                    LogLevel::Info,
                    format!(
                        "call {}: {label} request in the conference: {n} REFER(s) to the focus",
                        ctx.call
                    ),
                ));
                true
            }
        }
    }

    /// A NOTIFY on a conference dialog for one of the plugin's own REFERs:
    /// answered here (the client's outcome comes from the REFERs' answers).
    fn own_notify(&mut self, ctx: &MessageContext, message: &[u8]) -> Option<Vec<Action>> {
        let joined = self.escalated.get(&ctx.call)?;
        if joined.leg != ctx.leg {
            return None;
        }
        let msg = SipMessage::parse(message, Default::default()).ok()?;
        let (event, id) = escalator_sip::event::event_of(msg.header("Event").unwrap_or_default());
        let id: u32 = id?.parse().ok()?;
        let own = self.own_refers.get_mut(&ctx.call)?;
        if event != "refer" || !own.contains(&id) {
            return None;
        }
        let terminated = msg
            .header("Subscription-State")
            .is_some_and(|s| s.trim().to_ascii_lowercase().starts_with("terminated"));
        if terminated {
            own.retain(|c| *c != id);
        }
        Some(vec![Action::Respond {
            transaction: ctx.transaction?,
            status: 200,
            reason: "OK".into(),
            headers: vec![],
            body: None,
        }])
    }

    /// A re-INVITE from the peer while the call's escalation runs: 491
    /// (spec §4, glare row): the client's media is being moved, the peer
    /// retries later (by then on the conference or on the 1-to-1 again).
    fn peer_reinvite(&self, ctx: &MessageContext) -> Option<Vec<Action>> {
        let flow = self.flows.get(self.busy.get(&ctx.call)?)?;
        if flow.setup.peer_leg != ctx.leg {
            return None;
        }
        Some(vec![
            Action::Respond {
                transaction: ctx.transaction?,
                status: 491,
                reason: "Request Pending".into(),
                headers: vec![],
                body: None,
            },
            log(
                LogLevel::Info,
                format!(
                    "call {}: the peer's re-INVITE met the escalation: 491",
                    ctx.call
                ),
            ),
        ])
    }

    /// A BYE: the peer or the client leaving a call whose escalation is in
    /// progress is the flow's to decide ([`Flow::on_peer_bye`],
    /// [`Flow::on_client_bye`]).
    fn peer_bye(&mut self, ctx: &MessageContext) -> (Vec<Action>, bool) {
        let Some(id) = self.busy.get(&ctx.call).copied() else {
            return (vec![], false);
        };
        let (Some(transaction), Some(mut flow)) = (ctx.transaction, self.flows.remove(&id)) else {
            return (vec![], false);
        };
        let mut tokens = || {
            self.next_token += 1;
            self.next_token
        };
        let (mut out, outcome, handled, who) = if ctx.leg == flow.setup.peer_leg {
            let (a, o, h) = flow.on_peer_bye(transaction, &mut tokens);
            (a, o, h, "the peer")
        } else if ctx.leg == flow.setup.client_leg {
            let (a, o, h) = flow.on_client_bye(transaction);
            (a, o, h, "the client")
        } else {
            self.flows.insert(id, flow);
            return (vec![], false);
        };
        out.push(log(
            LogLevel::Info,
            format!(
                "call {}: {who} ended the 1-to-1 during the escalation ({})",
                ctx.call,
                if handled { "answered here" } else { "relayed" }
            ),
        ));
        self.track(id, flow, outcome, &mut out);
        (out, handled)
    }

    /// Keep a flow, index its tokens, and account for its outcome.
    fn track(&mut self, id: u64, flow: Flow, outcome: Option<Outcome>, out: &mut Vec<Action>) {
        let call = flow.setup.call;
        for t in flow.tokens().into_iter().filter(|t| *t != 0) {
            self.tokens.insert(t, id);
        }
        if let Some(o) = outcome {
            self.busy.remove(&call);
            match o {
                Outcome::Escalated => {
                    if let Some(joined) = flow.joined() {
                        self.escalated.insert(call, joined);
                    }
                    out.push(metric(
                        "escalator_escalations_total",
                        &[("result", "escalated"), ("reason", "ok")],
                    ));
                    out.push(log(
                        LogLevel::Info,
                        format!("call {call}: escalated to a conference"),
                    ));
                }
                Outcome::Failed { label, detail } => {
                    out.push(metric(
                        "escalator_escalations_total",
                        &[("result", "failed"), ("reason", label)],
                    ));
                    out.push(log(
                        LogLevel::Warn,
                        format!("call {call}: escalation failed ({label}: {detail}); the 1-to-1 session goes on"),
                    ));
                }
            }
        }
        self.flows.insert(id, flow);
    }

    fn handle_event(&mut self, event: &Event) -> Vec<Action> {
        let token = match event {
            Event::CallEnded { call } => {
                self.escalated.remove(call);
                self.own_refers.remove(call);
                self.additions.retain(|_, a| a.call != *call);
                self.addition_tokens
                    .retain(|_, id| self.additions.contains_key(id));
                self.busy.remove(call);
                let ids: Vec<u64> = self
                    .flows
                    .iter()
                    .filter(|(_, f)| f.setup.call == *call)
                    .map(|(id, _)| *id)
                    .collect();
                for id in ids {
                    self.flows.remove(&id);
                }
                self.tokens.retain(|_, id| self.flows.contains_key(id));
                return vec![];
            }
            Event::Response { token, .. }
            | Event::Timeout { token, .. }
            | Event::TransportError { token, .. }
            | Event::Timer { token } => *token,
        };
        if let Some(id) = self.addition_tokens.get(&token).copied() {
            let Some(mut addition) = self.additions.remove(&id) else {
                return vec![];
            };
            let mut tokens = || {
                self.next_token += 1;
                self.next_token
            };
            let (out, done) = addition.on_event(event, &mut tokens);
            self.own_refers
                .entry(addition.call)
                .or_default()
                .append(&mut addition.refer_cseqs);
            if done {
                self.addition_tokens.retain(|_, v| *v != id);
            } else {
                self.additions.insert(id, addition);
            }
            return out;
        }
        let Some(id) = self.tokens.get(&token).copied() else {
            return vec![];
        };
        let Some(mut flow) = self.flows.remove(&id) else {
            return vec![];
        };
        let mut tokens = || {
            self.next_token += 1;
            self.next_token
        };
        let (mut out, outcome) = flow.on_event(event, &mut tokens);
        self.track(id, flow, outcome, &mut out);
        out
    }
}

impl Plugin for Escalator {
    // Responses to relayed requests never matter to escalation.
    const INTERESTS: u32 = INTEREST_REQUESTS | INTEREST_EVENTS;

    fn create(config: &str) -> Result<Self, String> {
        let cfg: Config = toml::from_str(config).map_err(|e| format!("plugin config: {e}"))?;
        // The client retransmits its 200 to the offerless re-INVITE for
        // 64×T1 = 32 s and then hangs up: the ACK must leave before that.
        if cfg.answer_timeout_ms >= flow::CLIENT_ACK_WINDOW_MS {
            return Err(format!(
                "plugin config: answer_timeout_ms = {} must stay below the client's {} ms ACK window (64×T1)",
                cfg.answer_timeout_ms,
                flow::CLIENT_ACK_WINDOW_MS
            ));
        }
        let policy = Policy::load(&cfg.policy)
            .map_err(|e| format!("policy {}: {e}", cfg.policy.display()))?;
        Ok(Escalator {
            policy_mtime: mtime(&cfg.policy),
            policy_path: cfg.policy,
            policy: Arc::new(policy),
            last_check: Instant::now(),
            answer_timeout_ms: cfg.answer_timeout_ms,
            next_token: 0,
            flows: HashMap::new(),
            tokens: HashMap::new(),
            busy: HashMap::new(),
            escalated: HashMap::new(),
            additions: HashMap::new(),
            addition_tokens: HashMap::new(),
            own_refers: HashMap::new(),
            announced: false,
        })
    }

    fn on_request(&mut self, input: &HookInput) -> Decision {
        let (actions, handled) = self.handle_request(input);
        match (handled, actions.is_empty()) {
            (true, _) => Decision::Handled(actions),
            (false, true) => Decision::Continue,
            (false, false) => Decision::ContinueWith(actions),
        }
    }

    fn on_event(&mut self, event: &Event) -> Decision {
        let actions = self.handle_event(event);
        if actions.is_empty() {
            Decision::Continue
        } else {
            Decision::ContinueWith(actions)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_timeout_beyond_the_clients_ack_window_is_refused() {
        let err = Escalator::create("policy = \"unused.toml\"\nanswer_timeout_ms = 32000")
            .err()
            .expect("refused");
        assert!(err.contains("ACK window"), "{err}");
    }
}
