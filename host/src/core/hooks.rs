//! The plugin side of the core: hooks on requests and responses, the
//! call-control actions plugins ask for, and the events that report back.
//! A plugin that fails (error, panic, undecodable answer) is treated as if it
//! had said "continue"; see [`crate::plugins::PluginSlot`].

use super::*;
use crate::plugins::SlotError;
use escalator_plugin_api::{
    Action, Body, Decision, Event, HookInput, LegRole, LogLevel, MessageContext, MetricKind,
    PeerInfo,
};

/// Who asked for something: a plugin of a set, and the token it chose.
#[derive(Clone)]
pub(super) struct PluginRef {
    pub set: Arc<PluginSet>,
    pub index: usize,
    pub token: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HookOutcome {
    Continue,
    Handled,
}

impl Core {
    fn set_for(&self, leg: Option<LegId>) -> Arc<PluginSet> {
        leg.and_then(|l| self.model.leg(l))
            .and_then(|l| self.call_plugins.get(&l.call))
            .cloned()
            .unwrap_or_else(|| self.plugins.clone())
    }

    fn context(
        &self,
        leg: Option<LegId>,
        transaction: Option<u64>,
        msg: &SipMessage,
        source: &Target,
    ) -> MessageContext {
        let mut c = MessageContext {
            transaction,
            user_agent: msg.header("User-Agent").map(str::to_string),
            source: source.to_string(),
            from_core: self.settings.router.from_core(source),
            ..Default::default()
        };
        match leg.and_then(|l| self.model.leg(l)) {
            Some(l) => {
                let d = &l.dialog;
                c.call = l.call;
                c.leg = l.id;
                c.peer_leg = l.peer;
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
                c.peer = l.peer.and_then(|p| self.model.leg(p)).map(|p| PeerInfo {
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
        transaction: Option<u64>,
        msg: &mut SipMessage,
        source: &Target,
    ) -> HookOutcome {
        let set = self.set_for(leg);
        let interest = match kind {
            HookKind::Request => escalator_plugin_api::INTEREST_REQUESTS,
            HookKind::Response => escalator_plugin_api::INTEREST_RESPONSES,
        };
        for index in 0..set.plugins.len() {
            if !set.plugins[index].wants(interest) {
                continue;
            }
            let input = HookInput {
                kind,
                context: self.context(leg, transaction, msg, source),
                message: msg.to_bytes().to_vec(),
            };
            match set.plugins[index].on_message(&input) {
                Ok(Decision::Continue) => {}
                Ok(Decision::ContinueWith(actions)) => {
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
            self.deliver_event(set, index, Event::CallEnded { call });
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
            match action {
                Action::Respond {
                    transaction,
                    status,
                    reason,
                    headers,
                    body,
                } => self.plugin_respond(transaction, status, &reason, headers, body),
                Action::SendRequest {
                    leg,
                    method,
                    headers,
                    body,
                    token,
                } => self.plugin_send(by(token), leg, &method, headers, body),
                Action::CreateLeg {
                    call,
                    invite,
                    target,
                    token,
                } => self.plugin_create_leg(by(token), call, &invite, target.as_deref()),
                Action::Pair { a, b } => {
                    if !self.model.pair(a, b) {
                        warn!(plugin = %name, a, b, "cannot pair: unknown leg");
                    }
                }
                Action::Release { leg, send_bye } => self.plugin_release(leg, send_bye),
                Action::SetTimer { token, after_ms } => {
                    self.next_plugin_timer += 1;
                    let id = self.next_plugin_timer;
                    self.plugin_timers.insert(id, by(token));
                    self.timers
                        .schedule(TimerKey::Plugin(id), Duration::from_millis(after_ms));
                }
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
        let Some(leg) = self.model.leg_mut(leg_id) else {
            return;
        };
        match (leg.state, leg.invite_client) {
            // Still ringing: CANCEL; the leg goes when its INVITE completes
            // (a 2xx that crosses the CANCEL is ACKed and ended with BYE).
            (LegState::Early, Some(cid)) => {
                leg.state = LegState::Terminating;
                self.cancel_client(cid);
            }
            (LegState::Confirmed, _) if send_bye => self.send_bye(leg_id),
            _ => self.release(leg_id),
        }
    }

    fn plugin_respond(
        &mut self,
        sid: u64,
        status: u16,
        reason_text: &str,
        headers: Vec<(String, String)>,
        body: Option<Body>,
    ) {
        let Some(e) = self.servers.get_mut(&sid) else {
            warn!(transaction = sid, "plugin answered an unknown transaction");
            return;
        };
        if !(100..=699).contains(&status) {
            warn!(status, "plugin response with an invalid status ignored");
            return;
        }
        let Some(req) = &e.request else {
            warn!(
                transaction = sid,
                "plugin answered a transaction that has its final response"
            );
            return;
        };
        let mut r = response_to(req, status, reason_text, Some(&e.to_tag));
        for (n, v) in headers {
            r.push_header(&n, v);
        }
        if let Some(b) = body {
            r.push_header("Content-Type", b.content_type);
            r.set_body(Bytes::from(b.bytes));
        }
        self.send_response(sid, &r);
    }

    fn plugin_send(
        &mut self,
        by: PluginRef,
        leg_id: LegId,
        method: &str,
        headers: Vec<(String, String)>,
        body: Option<Body>,
    ) {
        let Some(leg) = self.model.leg_mut(leg_id) else {
            warn!(leg = leg_id, method, "plugin request on an unknown leg");
            let (set, index) = (by.set.clone(), by.index);
            return self.deliver_event(
                &set,
                index,
                Event::TransportError {
                    token: by.token,
                    leg: leg_id,
                },
            );
        };
        let mut template = SipMessage::request(method, "");
        for (n, v) in headers {
            template.push_header(&n, v);
        }
        match body {
            Some(b) => {
                template.push_header("Content-Type", b.content_type);
                template.set_body(Bytes::from(b.bytes));
            }
            None => template.set_body(Bytes::new()),
        }
        if method == "ACK" {
            return self.ack_leg(leg_id, Some(&template));
        }
        let mut out = leg.dialog.new_request(method);
        copy_end_to_end(&template, &mut out, false);
        leg.dialog.record_sdp(&out);
        if method == "INVITE" {
            leg.invite_cseq = leg.dialog.local_cseq;
            leg.ack = None;
        }
        let target = leg.dialog.dest.clone();
        let cid = self.start_client(out, target, Some(leg_id), None, ClientKind::Plugin, 70);
        if let Some(c) = self.clients.get_mut(&cid) {
            c.plugin = Some(by);
        }
        if method == "INVITE" {
            if let Some(l) = self.model.leg_mut(leg_id) {
                l.invite_client = Some(cid);
            }
        }
    }

    fn plugin_create_leg(
        &mut self,
        by: PluginRef,
        call: CallRef,
        invite: &[u8],
        target: Option<&str>,
    ) {
        let fail = |core: &mut Core, why: &str| {
            warn!(plugin = %by.set.plugins[by.index].name, call, "cannot create leg: {why}");
            let (set, index) = (by.set.clone(), by.index);
            core.deliver_event(
                &set,
                index,
                Event::TransportError {
                    token: by.token,
                    leg: 0,
                },
            );
        };
        if self.model.legs_of(call).is_empty() {
            return fail(self, "no such call");
        }
        let msg = match SipMessage::parse(invite, Default::default()) {
            Ok(m) if m.method() == Some("INVITE") => m,
            _ => return fail(self, "not a parseable INVITE"),
        };
        let (Some(from), Some(to)) = (
            msg.header("From").and_then(without_tag),
            msg.header("To").and_then(without_tag),
        ) else {
            return fail(self, "INVITE without From or To");
        };
        let dest = match target {
            None => self.settings.router.core.clone(),
            Some(t) => match parse_target(t) {
                Some(t) => t,
                None => return fail(self, "target is not udp:ip:port or tcp:ip:port"),
            },
        };
        let remote_target = msg.request_uri().unwrap_or_default().to_string();
        let dialog = Dialog::originating(self.shard.index, from, to, remote_target, dest.clone());
        let leg_id = self.model.add_leg(Leg::new(call, Role::Uac, dialog));
        let Some(leg) = self.model.leg_mut(leg_id) else {
            return;
        };
        let mut out = leg.dialog.new_request("INVITE");
        copy_end_to_end(&msg, &mut out, false);
        leg.dialog.record_sdp(&out);
        leg.invite_cseq = leg.dialog.local_cseq;
        // A new request, not a relayed one: its Max-Forwards is not decremented.
        let mf = msg
            .header("Max-Forwards")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(70);
        info!(leg = leg_id, call, target = %dest, "plugin originates a new leg");
        let cid = self.start_client(out, dest, Some(leg_id), None, ClientKind::Plugin, mf);
        if let Some(c) = self.clients.get_mut(&cid) {
            c.plugin = Some(by);
        }
        if let Some(l) = self.model.leg_mut(leg_id) {
            l.invite_client = Some(cid);
        }
    }

    /// A response to a plugin's request: dialog bookkeeping, then the event.
    pub(super) fn plugin_response(&mut self, cid: u64, resp: SipMessage) {
        let Some(c) = self.clients.get(&cid) else {
            return;
        };
        let (leg, by) = (c.leg, c.plugin.clone());
        let offered = c.tx.offered();
        let status = resp.status().unwrap_or(0);
        let method = resp.cseq().map(|c| c.1).unwrap_or_default();
        if let Some(l) = leg {
            if method == "INVITE" {
                if !self.invite_response_on_leg(l, cid, &resp) {
                    return; // a retransmission, already handled
                }
                // With an offer in the INVITE the ACK is empty and ours to send;
                // an offerless INVITE's ACK carries the answer: the plugin sends it.
                if (200..300).contains(&status) && offered {
                    self.ack_leg(l, None);
                }
            } else if (200..300).contains(&status) {
                if let Some(leg) = self.model.leg_mut(l) {
                    leg.dialog.record_sdp(&resp);
                }
            }
        }
        if let Some(by) = by {
            let event = Event::Response {
                token: by.token,
                leg: leg.unwrap_or(0),
                status,
                message: resp.to_bytes().to_vec(),
            };
            self.deliver_event(&by.set, by.index, event);
        }
        if status >= 200 {
            self.release_plugin_leg_if_over(leg, &method, status >= 300);
        }
    }

    /// A plugin's request timed out or could not be sent.
    pub(super) fn plugin_request_failed(&mut self, cid: u64) {
        let Some(c) = self.clients.get(&cid) else {
            return;
        };
        let (leg, by, failed) = (c.leg, c.plugin.clone(), c.transport_failed);
        let method = c.tx.method().to_string();
        if let Some(by) = by {
            let (token, leg) = (by.token, leg.unwrap_or(0));
            let event = if failed {
                Event::TransportError { token, leg }
            } else {
                Event::Timeout { token, leg }
            };
            self.deliver_event(&by.set, by.index, event);
        }
        self.release_plugin_leg_if_over(leg, &method, true);
    }

    /// A plugin's request whose outcome ends its leg ends that leg only;
    /// its partner is not touched.
    fn release_plugin_leg_if_over(&mut self, leg: Option<LegId>, method: &str, failed: bool) {
        if let Some(l) = leg.filter(|l| self.leg_is_over(*l, method, failed)) {
            self.release(l);
        }
    }

    pub(super) fn plugin_timer_fired(&mut self, id: u64) {
        let by = self.plugin_timers.remove(&id);
        crate::compaction::shrink_if_sparse(&mut self.plugin_timers);
        if let Some(by) = by {
            self.deliver_event(&by.set, by.index, Event::Timer { token: by.token });
        }
    }
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

#[cfg(test)]
mod tests {
    #[test]
    fn plugin_targets() {
        let t = super::parse_target("tcp:[::1]:5070").unwrap();
        assert_eq!(t.addr, "[::1]:5070".parse().unwrap());
        assert!(super::parse_target("sctp:1.2.3.4:5").is_none());
        assert!(super::parse_target("udp:host:5").is_none());
    }
}
