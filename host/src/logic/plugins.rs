//! The plugins in the logic: hooks on requests and responses, the
//! call-control actions plugins ask for, and the events that report back.
//! Ids cross the plugin API as numbers (0 = none there only). A plugin that
//! fails (error, panic, undecodable answer) is treated as if it had said
//! "continue"; see [`crate::plugins::PluginSlot`].

use super::{B2bua, LogicTimer};
use crate::entities::dialog::Dialog;
use crate::entities::ids::{CallRef, ClientTxId, LegId, ServerTxId};
use crate::entities::leg::{LegEvent, LegState, Role};
use crate::entities::table::ClientKind;
use crate::entities::{ClientInfo, LegRequest};
use crate::forward::{contact_uri, without_tag};
use crate::plugins::{PluginSet, SlotError};
use crate::sip::{Method, SipMessage};
use crate::transport::Target;
use bytes::Bytes;
use escalator_plugin_api::{
    Action, Body, Decision, Event, HookInput, HookKind, LegRole, LogLevel, MessageContext,
    MetricKind, NewRequest, PeerInfo,
};
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info, warn};

/// Who asked for something: a plugin of a set, and the token it chose.
#[derive(Clone)]
pub(super) struct PluginRef {
    pub set: Arc<PluginSet>,
    pub index: usize,
    pub token: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookOutcome {
    Continue,
    Handled,
}

impl B2bua {
    /// Let the plugins see a new request; they may take it over or add headers.
    pub(super) fn offer_request_to_plugins(&mut self, sid: ServerTxId) -> HookOutcome {
        let Some(e) = self.entities.server(sid) else {
            return HookOutcome::Continue;
        };
        let Some(req) = e.request.as_ref() else {
            return HookOutcome::Continue;
        };
        let leg = match (req.call_id(), req.to_tag()) {
            (Some(c), Some(t)) => self
                .entities
                .calls()
                .find_request_leg(c, &t, req.from_tag().as_deref())
                .leg(),
            _ => None,
        };
        let wanted = self
            .set_for(leg)
            .plugins
            .iter()
            .any(|p| p.wants(escalator_plugin_api::INTEREST_REQUESTS));
        if !wanted {
            return HookOutcome::Continue; // nobody to show it to: no copy made
        }
        let (mut req, source) = (req.clone(), e.source.clone());
        let outcome = self.run_hooks(HookKind::Request, leg, Some(sid), &mut req, &source);
        match outcome {
            HookOutcome::Handled => {
                let due = self.entities.settings().timers.t64();
                self.schedule(LogicTimer::PluginAnswerDue(sid), due);
            }
            HookOutcome::Continue => {
                if let Some(e) = self.entities.server_mut(sid) {
                    e.request = Some(req);
                }
            }
        }
        outcome
    }

    fn set_for(&self, leg: Option<LegId>) -> Arc<PluginSet> {
        leg.and_then(|l| self.entities.calls().leg(l))
            .and_then(|l| self.call_plugins.get(&l.call))
            .cloned()
            .unwrap_or_else(|| self.plugins.clone())
    }

    fn context(
        &self,
        leg: Option<LegId>,
        transaction: Option<ServerTxId>,
        msg: &SipMessage,
        source: &Target,
    ) -> MessageContext {
        let mut c = MessageContext {
            transaction: transaction.map(|t| t.0),
            user_agent: msg.header("User-Agent").map(str::to_string),
            source: source.to_string(),
            from_core: self.settings.router.from_core(source),
            ..Default::default()
        };
        match leg.and_then(|l| self.entities.calls().leg(l)) {
            Some(l) => {
                let d = &l.dialog;
                c.call = l.call.0;
                c.leg = l.id.0;
                c.peer_leg = l.peer.map(|p| p.0);
                c.role = Some(match l.role {
                    Role::Uas => LegRole::Uas,
                    Role::Uac => LegRole::Uac,
                });
                c.call_id = d.call_id.clone();
                c.local_tag = d.local_tag.clone();
                c.remote_tag = d.remote_tag.clone();
                c.local_uri = d.local_uri.to_string();
                c.remote_uri = d.remote_uri.to_string();
                c.remote_target = d.remote_target.clone();
                c.last_offer = d.last_offer.as_ref().map(|b| b.to_vec());
                c.last_answer = d.last_answer.as_ref().map(|b| b.to_vec());
                c.in_dialog = true;
                c.peer = l
                    .peer
                    .and_then(|p| self.entities.calls().leg(p))
                    .map(|p| PeerInfo {
                        call_id: p.dialog.call_id.clone(),
                        local_tag: p.dialog.local_tag.clone(),
                        remote_tag: p.dialog.remote_tag.clone(),
                        local_uri: p.dialog.local_uri.to_string(),
                        remote_uri: p.dialog.remote_uri.to_string(),
                    });
            }
            None => {
                c.call_id = msg.call_id().unwrap_or_default().to_string();
                c.remote_tag = msg.from_tag();
                c.local_uri = msg.header("To").unwrap_or_default().to_string();
                c.remote_uri = msg.header("From").unwrap_or_default().to_string();
                c.remote_target = contact_uri(msg).unwrap_or_default();
            }
        }
        c
    }

    /// Offer a message to the plugins of its call, in order. `msg` receives
    /// the headers plugins add; the first plugin that handles it stops the chain.
    pub(super) fn run_hooks(
        &mut self,
        kind: HookKind,
        leg: Option<LegId>,
        transaction: Option<ServerTxId>,
        msg: &mut SipMessage,
        source: &Target,
    ) -> HookOutcome {
        let set = self.set_for(leg);
        let interest = match kind {
            HookKind::Request => escalator_plugin_api::INTEREST_REQUESTS,
            HookKind::Response => escalator_plugin_api::INTEREST_RESPONSES,
        };
        // Built once and shared by the plugins in turn; built again only
        // after one of them acted (added a header, paired legs…).
        let mut input: Option<HookInput> = None;
        for index in 0..set.plugins.len() {
            if !set.plugins[index].wants(interest) {
                continue;
            }
            let shared = match &input {
                Some(i) => i,
                None => input.insert(HookInput {
                    kind,
                    context: self.context(leg, transaction, msg, source),
                    message: msg.to_bytes().to_vec(),
                }),
            };
            match set.plugins[index].on_message(shared) {
                Ok(Decision::Continue) => {}
                Ok(Decision::ContinueWith(actions)) => {
                    if !actions.is_empty() {
                        input = None;
                    }
                    self.execute(&set, index, actions, Some(msg))
                }
                Ok(Decision::Handled(actions)) => {
                    debug!(plugin = %set.plugins[index].name, "plugin handled the message");
                    self.execute(&set, index, actions, None);
                    return HookOutcome::Handled;
                }
                Err(e) => self.plugin_failed(&set, index, e),
            }
        }
        HookOutcome::Continue
    }

    fn plugin_failed(&self, set: &PluginSet, index: usize, e: SlotError) {
        match e {
            SlotError::Disabled => {}
            SlotError::Call(e) => {
                warn!(plugin = %set.plugins[index].name, error = %e, "plugin failed; carrying on as if it were absent")
            }
        }
    }

    fn deliver_event(&mut self, set: &Arc<PluginSet>, index: usize, event: Event) {
        let Some(slot) = set.plugins.get(index) else {
            return;
        };
        if !slot.wants(escalator_plugin_api::INTEREST_EVENTS) {
            return;
        }
        match slot.on_event(&event) {
            Ok(Decision::Continue) => {}
            Ok(Decision::ContinueWith(actions) | Decision::Handled(actions)) => {
                self.execute(set, index, actions, None)
            }
            Err(e) => self.plugin_failed(set, index, e),
        }
    }

    pub(super) fn call_ended(&mut self, set: &Arc<PluginSet>, call: CallRef) {
        for index in 0..set.plugins.len() {
            self.deliver_event(set, index, Event::CallEnded { call: call.0 });
        }
    }

    fn execute(
        &mut self,
        set: &Arc<PluginSet>,
        index: usize,
        actions: Vec<Action>,
        mut msg: Option<&mut SipMessage>,
    ) {
        let name = set.plugins[index].name.clone();
        let by = |token| PluginRef {
            set: set.clone(),
            index,
            token,
        };
        for action in actions {
            if let Some(why) = malformed(&action) {
                // Never put it on the wire: the host's own refusal instead.
                tracing::error!(plugin = %name, why, "plugin action refused: it would write a malformed message");
                metrics::counter!(crate::metrics::PLUGIN_FAILURES, "plugin" => name.clone())
                    .increment(1);
                match action {
                    Action::Respond { transaction, .. } => {
                        let status = 500;
                        let reason = crate::forward::reason(status);
                        self.plugin_respond(ServerTxId(transaction), status, reason, vec![], None)
                    }
                    Action::SendRequest { leg, token, .. } => {
                        self.plugin_send_failed(by(token), leg)
                    }
                    Action::CreateLeg { token, .. } => self.plugin_send_failed(by(token), 0),
                    _ => {}
                }
                continue;
            }
            match action {
                Action::Respond {
                    transaction,
                    status,
                    reason,
                    headers,
                    body,
                } => self.plugin_respond(ServerTxId(transaction), status, &reason, headers, body),
                Action::SendRequest {
                    leg,
                    method,
                    headers,
                    body,
                    token,
                } => self.plugin_send(by(token), LegId(leg), &method, headers, body),
                Action::CreateLeg {
                    call,
                    request,
                    target,
                    token,
                } => self.plugin_create_leg(by(token), CallRef(call), request, target.as_deref()),
                Action::Pair { a, b } => {
                    if !self.entities.calls_mut().pair(LegId(a), LegId(b)) {
                        warn!(plugin = %name, a, b, "cannot pair: unknown leg");
                    }
                }
                Action::Release { leg, send_bye } => self.plugin_release(LegId(leg), send_bye),
                Action::SetTimer { token, after_ms } => self.schedule(
                    LogicTimer::Plugin(by(token)),
                    Duration::from_millis(after_ms),
                ),
                Action::Log { level, text } => match level {
                    LogLevel::Error => tracing::error!(plugin = %name, "{text}"),
                    LogLevel::Warn => warn!(plugin = %name, "{text}"),
                    LogLevel::Info => info!(plugin = %name, "{text}"),
                    LogLevel::Debug => debug!(plugin = %name, "{text}"),
                },
                Action::Metric {
                    name: metric,
                    kind,
                    value,
                    labels,
                } => {
                    let mut labels: Vec<metrics::Label> = labels
                        .into_iter()
                        .filter(|(k, _)| k != "plugin")
                        .map(|(k, v)| metrics::Label::new(k, v))
                        .collect();
                    labels.push(metrics::Label::new("plugin", name.clone()));
                    match kind {
                        MetricKind::Counter => {
                            metrics::counter!(metric, labels).increment(value.max(0.0) as u64)
                        }
                        MetricKind::Gauge => metrics::gauge!(metric, labels).set(value),
                    }
                }
                Action::AddHeader { name: h, value } => match msg.as_deref_mut() {
                    Some(m) => m.push_header(&h, value),
                    None => {
                        warn!(plugin = %name, header = %h, "AddHeader outside ContinueWith ignored")
                    }
                },
            }
        }
    }

    fn plugin_release(&mut self, leg_id: LegId, send_bye: bool) {
        let Some(leg) = self.entities.calls_mut().leg_mut(leg_id) else {
            return;
        };
        match (leg.state, leg.invite_client) {
            // Still ringing: CANCEL; the leg goes when its INVITE completes
            // (a 2xx that crosses the CANCEL is ACKed and ended with BYE).
            (LegState::Early, Some(cid)) => {
                leg.apply(LegEvent::Ending);
                self.entities.cancel_client(cid);
            }
            (LegState::Confirmed, _) if send_bye => self.entities.send_bye(leg_id),
            _ => self.entities.release(leg_id),
        }
    }

    fn plugin_respond(
        &mut self,
        sid: ServerTxId,
        status: u16,
        reason_text: &str,
        headers: Vec<(String, String)>,
        body: Option<Body>,
    ) {
        let body = body.map(|b| (b.content_type, Bytes::from(b.bytes)));
        if let Err(e) = self
            .entities
            .respond_with(sid, status, reason_text, headers, body)
        {
            warn!(transaction = %sid, status, error = %e, "plugin response not sent");
        }
    }

    /// A request a plugin sent failed before it could be sent: it hears so.
    fn plugin_send_failed(&mut self, by: PluginRef, leg: u64) {
        let (set, index) = (by.set.clone(), by.index);
        self.deliver_event(
            &set,
            index,
            Event::TransportError {
                token: by.token,
                leg,
            },
        );
    }

    fn plugin_send(
        &mut self,
        by: PluginRef,
        leg_id: LegId,
        method: &str,
        headers: Vec<(String, String)>,
        body: Option<Body>,
    ) {
        if self.entities.calls().leg(leg_id).is_none() {
            warn!(leg = %leg_id, method, "plugin request on an unknown leg");
            return self.plugin_send_failed(by, leg_id.0);
        }
        let template = plugin_message(method, "", headers, body);
        let sent = self.entities.send_on_leg(
            leg_id,
            LegRequest {
                method: Method::parse(method),
                from: &template,
                keep_contact: false,
                kind: ClientKind::Plugin,
                origin: None,
                max_forwards: 70,
                replaces: None,
            },
        );
        if let Some(cid) = sent {
            self.plugin_requests.insert(cid, by);
        }
    }

    /// A plugin originates a leg: the INVITE is built from the plugin's
    /// fields (no text to parse), in a dialog of the host's.
    fn plugin_create_leg(
        &mut self,
        by: PluginRef,
        call: CallRef,
        request: NewRequest,
        target: Option<&str>,
    ) {
        let fail = |logic: &mut B2bua, why: &str| {
            warn!(plugin = %by.set.plugins[by.index].name, %call, "cannot create leg: {why}");
            logic.plugin_send_failed(by.clone(), 0);
        };
        if self.entities.calls().legs_of(call).is_empty() {
            return fail(self, "no such call");
        }
        let (Some(from), Some(to)) = (without_tag(&request.from), without_tag(&request.to)) else {
            return fail(self, "From or To is not a SIP address");
        };
        let dest = match target {
            None => self.settings.router.core.clone(),
            Some(t) => match parse_target(t) {
                Some(t) => t,
                None => return fail(self, "target is not udp:ip:port or tcp:ip:port"),
            },
        };
        let template = plugin_message(
            "INVITE",
            &request.request_uri,
            request.headers,
            request.body,
        );
        // A new request, not a relayed one: its Max-Forwards is not decremented.
        let mf = template
            .header("Max-Forwards")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(70);
        let dialog = Dialog::originating(
            self.entities.shard(),
            from,
            to,
            request.request_uri,
            dest.clone(),
        );
        let (leg, cid) = self.entities.originate_leg(
            call,
            dialog,
            LegRequest {
                method: Method::Invite,
                from: &template,
                keep_contact: false,
                kind: ClientKind::Plugin,
                origin: None,
                max_forwards: mf,
                replaces: None,
            },
        );
        info!(%leg, %call, target = %dest, "plugin originates a new leg");
        if let Some(cid) = cid {
            self.plugin_requests.insert(cid, by);
        }
    }

    /// A response to a plugin's request (the dialog bookkeeping is done):
    /// the event to the plugin, and the leg released when the outcome ends it.
    pub(super) fn plugin_response(&mut self, tx: ClientTxId, info: ClientInfo, resp: SipMessage) {
        let status = resp.status().unwrap_or(0);
        let by = if status >= 200 {
            let by = self.plugin_requests.remove(&tx);
            crate::compaction::shrink_if_sparse(&mut self.plugin_requests);
            by
        } else {
            self.plugin_requests.get(&tx).cloned()
        };
        if let Some(by) = by {
            let event = Event::Response {
                token: by.token,
                leg: info.leg.map_or(0, |l| l.0),
                status,
                message: resp.to_bytes().to_vec(),
            };
            self.deliver_event(&by.set, by.index, event);
        }
        if status >= 200 {
            self.release_plugin_leg_if_over(info.leg, &info.method, status >= 300);
        }
    }

    /// A plugin's request timed out or could not be sent.
    pub(super) fn plugin_request_failed(&mut self, tx: ClientTxId, info: ClientInfo, failed: bool) {
        if let Some(by) = self.plugin_requests.remove(&tx) {
            let (token, leg) = (by.token, info.leg.map_or(0, |l| l.0));
            let event = if failed {
                Event::TransportError { token, leg }
            } else {
                Event::Timeout { token, leg }
            };
            self.deliver_event(&by.set, by.index, event);
        }
        self.release_plugin_leg_if_over(info.leg, &info.method, true);
    }

    /// A plugin's request whose outcome ends its leg ends that leg only;
    /// its partner is not touched.
    fn release_plugin_leg_if_over(&mut self, leg: Option<LegId>, method: &Method, failed: bool) {
        if let Some(l) = leg.filter(|l| self.leg_is_over(*l, Some(method), failed)) {
            self.entities.release(l);
        }
    }

    pub(super) fn plugin_timer_fired(&mut self, by: PluginRef) {
        self.deliver_event(&by.set, by.index, Event::Timer { token: by.token });
    }
}

/// The request a plugin described: its end-to-end headers and body, for
/// the entities to copy into a request of the host's dialog.
fn plugin_message(
    method: &str,
    uri: &str,
    headers: Vec<(String, String)>,
    body: Option<Body>,
) -> SipMessage {
    let mut m = SipMessage::request(method, uri);
    for (n, v) in headers {
        m.push_header(&n, v);
    }
    match body {
        Some(b) => {
            m.push_header("Content-Type", b.content_type);
            m.set_body(Bytes::from(b.bytes));
        }
        None => m.set_body(Bytes::new()),
    }
    m
}

/// `udp:10.0.0.1:5060` or `tcp:[::1]:5060`.
fn parse_target(t: &str) -> Option<Target> {
    let (proto, addr) = t.split_once(':')?;
    Some(Target {
        proto: crate::transport::Proto::from_name(proto)?,
        addr: addr.parse().ok()?,
        conn: None,
    })
}

/// What in `action` the host would write malformed (a header that is not
/// a token and a value free of control bytes, a reason phrase, method,
/// URI, From, To or Content-Type holding a control byte: a bare CR or LF
/// would end the line and start one of the plugin's own); None when every
/// field it gives is fit for the wire.
fn malformed(action: &Action) -> Option<&'static str> {
    use crate::sip::message::{is_field_text, is_header_field};
    // What each action writes: its own fields first, then headers and body.
    let (own_ok, own, headers, body) = match action {
        Action::Respond {
            reason,
            headers,
            body,
            ..
        } => (is_field_text(reason), "reason phrase", headers, body),
        Action::SendRequest {
            method,
            headers,
            body,
            ..
        } => (is_header_field(method, ""), "method", headers, body),
        Action::CreateLeg { request: r, .. } => (
            [&r.request_uri, &r.from, &r.to]
                .iter()
                .all(|f| is_field_text(f)),
            "Request-URI, From or To",
            &r.headers,
            &r.body,
        ),
        Action::AddHeader { name, value } => {
            return (!is_header_field(name, value)).then_some("header")
        }
        _ => return None,
    };
    if !own_ok {
        Some(own)
    } else if !headers.iter().all(|(n, v)| is_header_field(n, v)) {
        Some("header")
    } else if !body.as_ref().is_none_or(|b| is_field_text(&b.content_type)) {
        Some("Content-Type")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_that_would_break_its_line_is_found() {
        let respond = |reason: &str, headers: Vec<(String, String)>| Action::Respond {
            transaction: 1,
            status: 202,
            reason: reason.into(),
            headers,
            body: None,
        };
        let h = |n: &str, v: &str| vec![(n.to_string(), v.to_string())];
        assert_eq!(malformed(&respond("Accepted", h("X-A", "ok\tfine"))), None);
        assert_eq!(
            malformed(&respond("Accepted\r\nX-B: 1", vec![])),
            Some("reason phrase")
        );
        assert_eq!(
            malformed(&respond("Accepted", h("X-A", "ok\r\nInjected: yes"))),
            Some("header")
        );
        assert_eq!(
            malformed(&respond("Accepted", h("X-A", "ok\rInjected"))),
            Some("header")
        );
        assert_eq!(
            malformed(&respond("Accepted", h("X A", "ok"))),
            Some("header")
        );
        assert_eq!(
            malformed(&respond("Accepted", h("X-A", "nul\0"))),
            Some("header")
        );
        let send = |method: &str, ct: &str| Action::SendRequest {
            leg: 1,
            method: method.into(),
            headers: vec![],
            body: Some(escalator_plugin_api::Body {
                content_type: ct.into(),
                bytes: b"\r\nanything\0".to_vec(),
            }),
            token: 1,
        };
        assert_eq!(
            malformed(&send("NOTIFY", "message/sipfrag")),
            None,
            "a body is bytes"
        );
        assert_eq!(malformed(&send("NOT IFY", "text/plain")), Some("method"));
        assert_eq!(
            malformed(&send("NOTIFY", "text/plain\r\nX: y")),
            Some("Content-Type")
        );
        let create = |uri: &str| Action::CreateLeg {
            call: 1,
            request: escalator_plugin_api::NewRequest {
                request_uri: uri.into(),
                from: "<sip:a@h>".into(),
                to: "<sip:b@h>".into(),
                ..Default::default()
            },
            target: None,
            token: 1,
        };
        assert_eq!(malformed(&create("sip:conf@h")), None);
        assert_eq!(
            malformed(&create("sip:conf@h SIP/2.0\r\nX: y")),
            Some("Request-URI, From or To")
        );
        let add = |v: &str| Action::AddHeader {
            name: "X-A".into(),
            value: v.into(),
        };
        assert_eq!(malformed(&add("fine")), None);
        assert_eq!(malformed(&add("bad\n")), Some("header"));
        assert_eq!(malformed(&Action::Pair { a: 1, b: 2 }), None);
    }

    #[test]
    fn plugin_targets() {
        let t = super::parse_target("tcp:[::1]:5070").unwrap();
        assert_eq!(t.addr, "[::1]:5070".parse().unwrap());
        assert!(super::parse_target("sctp:1.2.3.4:5").is_none());
        assert!(super::parse_target("udp:host:5").is_none());
    }
}
