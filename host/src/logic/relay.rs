//! Relaying: a new INVITE starts a call (leg A answers the client, leg B is
//! originated toward the target); requests in a dialog go to the partner
//! leg as new requests of that leg's dialog; other requests are relayed as
//! one transaction each side; responses go back to the request they answer.

use super::{B2bua, HookOutcome};
use crate::entities::calls::DialogMatch;
use crate::entities::dialog::Dialog;
use crate::entities::ids::{CallRef, ClientTxId, LegId, ServerTxId};
use crate::entities::leg::{Leg, Role};
use crate::entities::table::ClientKind;
use crate::entities::{ClientInfo, LegRequest};
use crate::forward::{
    contact_uri, contact_value, copy_end_to_end, next_max_forwards, reason, response_to, supports,
    without_tag,
};
use crate::metrics as m;
use crate::routing::RouteError;
use crate::shard::call_id_on_shard;
use crate::sip::{Method, SipMessage};
use crate::transport::Target;
use escalator_plugin_api::HookKind;
use tracing::{debug, info, warn};

impl B2bua {
    /// A new request: loops, Max-Forwards, the plugins, then in or out of a dialog.
    pub(super) fn on_new_request(&mut self, sid: ServerTxId) {
        let Some(req) = self.entities.request(sid) else {
            return;
        };
        let method = req.request_method();
        let in_dialog = req.to_tag().is_some();
        let dialog = self.dialog_of(req);
        let foreign = matches!(dialog, DialogMatch::ForeignRemoteTag(_));
        // A request of one of our dialogs is matched before any loop check:
        // one that left on one leg and came back through the core for
        // another leg of ours (both parties behind the host) carries our
        // own Via and a Request-URI we sent, and is a spiral, not a loop
        // (RFC 5393, RFC 7332).
        let looped = !matches!(dialog, DialogMatch::Leg(_)) && self.is_loop(req);
        if foreign {
            m::dialog_mismatch(req.method().unwrap_or_default());
            warn!(
                call_id = req.call_id().unwrap_or_default(),
                request = %req.summary(),
                "request names one of our dialogs with another From tag: refused"
            );
        }
        let mf = next_max_forwards(req);
        if method == Some(Method::Invite) {
            self.entities.respond(sid, 100, "Trying");
        }
        if foreign {
            return self.entities.respond(sid, 481, reason(481));
        }
        if looped {
            return self.entities.respond(sid, 482, "Loop Detected");
        }
        if mf.is_none() {
            return self.entities.respond(sid, 483, "Too Many Hops");
        }
        if self.offer_request_to_plugins(sid) == HookOutcome::Handled {
            return;
        }
        if in_dialog {
            self.in_dialog_request(sid);
        } else {
            self.out_of_dialog_request(sid);
        }
    }

    /// Which of our dialogs `req` is in (Call-ID, To tag and From tag,
    /// RFC 3261 §12.2.2); a From tag that is not the leg's peer's means
    /// whoever sent it learnt a Call-ID, not the dialog.
    fn dialog_of(&self, req: &SipMessage) -> DialogMatch {
        let (Some(call_id), Some(tag)) = (req.call_id(), req.to_tag()) else {
            return DialogMatch::NoDialog;
        };
        self.entities
            .calls()
            .find_request_leg(call_id, &tag, req.from_tag().as_deref())
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
            self.entities
                .sent_with_branch(&branch)
                .is_some_and(|r| r.request_uri() == req.request_uri())
        })
    }

    fn out_of_dialog_request(&mut self, sid: ServerTxId) {
        let Some(e) = self.entities.server(sid) else {
            return;
        };
        let (Some(req), source) = (e.request.clone(), e.source.clone()) else {
            return;
        };
        let invite = req.request_method() == Some(Method::Invite);
        if self.draining && invite {
            return self.entities.respond(sid, 503, "Service Unavailable");
        }
        if invite && (self.calls_everywhere)() >= self.settings.max_calls {
            warn!(limit = self.settings.max_calls, "call limit reached");
            return self.entities.respond(sid, 503, "Service Unavailable");
        }
        let target = match self
            .settings
            .router
            .route(&source, req.request_uri().unwrap_or_default())
        {
            Ok(t) => t,
            Err(RouteError::UnsupportedScheme) => {
                return self.entities.respond(sid, 416, reason(416))
            }
            Err(RouteError::Unresolvable(host)) => {
                warn!(%host, "cannot resolve target host (only IP literals are routed)");
                return self.entities.respond(sid, 502, "Bad Gateway");
            }
        };
        if invite && req.header("Replaces").is_some() {
            self.replacing_invite(sid, req, source);
        } else if invite {
            self.start_call(sid, req, source, target, None);
        } else {
            self.forward_transaction(sid, req, target);
        }
    }

    /// A new call: leg A answers the client, leg B is originated toward `target`.
    /// `replaces`: a Replaces for the new leg, translated to the dialog its
    /// far end knows.
    pub(super) fn start_call(
        &mut self,
        sid: ServerTxId,
        req: SipMessage,
        source: Target,
        target: Target,
        replaces: Option<String>,
    ) {
        let (Some(from), Some(to)) = (
            req.header("From").and_then(without_tag),
            req.header("To").and_then(without_tag),
        ) else {
            return self.entities.respond(sid, 400, "Bad Request");
        };
        let call = self.entities.calls_mut().new_call();
        self.call_plugins.insert(call, self.plugins.clone());
        let Some(a_id) = self.answering_leg(call, sid, &req, source) else {
            return;
        };
        let span = tracing::info_span!("call", call = %call, leg = %a_id);
        let _g = span.enter();
        info!(from = %req.header("From").unwrap_or_default(), to = %req.header("To").unwrap_or_default(), "new call");
        let remote_target = req.request_uri().unwrap_or_default().to_string();
        let b = Dialog::originating(self.entities.shard(), from, to, remote_target, target);
        let mf = next_max_forwards(&req).unwrap_or(70);
        let (b_id, _) = self.entities.originate_leg(
            call,
            b,
            LegRequest {
                method: Method::Invite,
                from: &req,
                keep_contact: false,
                kind: ClientKind::Forward,
                origin: Some(sid),
                max_forwards: mf,
                replaces,
            },
        );
        self.entities.calls_mut().pair(a_id, b_id);
    }

    /// The leg of `call` that answers the initial INVITE of server
    /// transaction `sid` (the host is its UAS), from `source`.
    pub(super) fn answering_leg(
        &mut self,
        call: CallRef,
        sid: ServerTxId,
        req: &SipMessage,
        source: Target,
    ) -> Option<LegId> {
        let from = req.header("From").and_then(without_tag)?;
        let to = req.header("To").and_then(without_tag)?;
        let local_tag = self.entities.server(sid).map(|e| e.to_tag.clone())?;
        let mut dialog = Dialog {
            call_id: req.call_id().unwrap_or_default().to_string(),
            local_tag,
            remote_tag: req.from_tag(),
            local_uri: to.to_string(),
            remote_uri: from.to_string(),
            local_cseq: 0,
            remote_cseq: req.cseq().map(|c| c.0),
            remote_target: contact_uri(req).unwrap_or_else(|| from.uri.clone()),
            route_set: req
                .header_values("Record-Route")
                .iter()
                .map(|s| s.to_string())
                .collect(),
            dest: source,
            last_offer: None,
            last_answer: None,
            peer_supports_replaces: supports(req, "replaces"),
        };
        dialog.record_sdp(req);
        let mut leg = Leg::new(call, Role::Uas, dialog);
        leg.invite_server = Some(sid);
        let id = self.entities.calls_mut().add_leg(leg);
        if let Some(e) = self.entities.server_mut(sid) {
            e.leg = Some(id);
        }
        Some(id)
    }

    /// Relay the request of server transaction `sid` as a new request in the
    /// dialog of `leg`.
    pub(super) fn forward_on_leg(&mut self, sid: ServerTxId, req: &SipMessage, leg_id: LegId) {
        let Some(method) = req.request_method() else {
            return;
        };
        let keep_contact = !method.sets_target();
        let sent = self.entities.send_on_leg(
            leg_id,
            LegRequest {
                method,
                from: req,
                keep_contact,
                kind: ClientKind::Forward,
                origin: Some(sid),
                max_forwards: next_max_forwards(req).unwrap_or(70),
                replaces: None,
            },
        );
        if sent.is_none() {
            self.entities.respond(sid, 481, reason(481));
        }
    }

    /// Out-of-dialog non-INVITE (OPTIONS, MESSAGE, REGISTER...): one
    /// transaction each side, no dialog state.
    fn forward_transaction(&mut self, sid: ServerTxId, req: SipMessage, target: Target) {
        let method = req.method().unwrap_or_default();
        let mut out = SipMessage::request(method, req.request_uri().unwrap_or_default());
        let from = req
            .header("From")
            .and_then(without_tag)
            .map(|f| f.with_tag(&crate::entities::dialog::new_tag()).to_string())
            .unwrap_or_default();
        out.push_header("From", from);
        out.push_header("To", req.header("To").unwrap_or_default());
        // A stable Call-ID per client Call-ID keeps registrar CSeq ordering intact.
        out.push_header(
            "Call-ID",
            derived_call_id(req.call_id().unwrap_or_default(), self.entities.shard()),
        );
        out.push_header("CSeq", req.header("CSeq").unwrap_or_default());
        copy_end_to_end(&req, &mut out, true);
        let mf = next_max_forwards(&req).unwrap_or(70);
        let cid = self
            .entities
            .send_request(out, target, ClientKind::Forward, Some(sid), mf);
        if let Some(e) = self.entities.server_mut(sid) {
            e.peer_client = Some(cid);
        }
    }

    fn in_dialog_request(&mut self, sid: ServerTxId) {
        let Some(req) = self.entities.request(sid).cloned() else {
            return;
        };
        let Some(method) = req.request_method() else {
            return;
        };
        let (call_id, tag) = (
            req.call_id().unwrap_or_default().to_string(),
            req.to_tag().unwrap_or_default(),
        );
        let from_tag = req.from_tag();
        let found = self
            .entities
            .calls()
            .find_request_leg(&call_id, &tag, from_tag.as_deref());
        let Some(leg_id) = found.leg() else {
            debug!(%call_id, "no dialog for in-dialog request");
            return self.entities.respond(sid, 481, reason(481));
        };
        if method == Method::Invite {
            if let Some(status) = self.reinvite_overlap(leg_id) {
                info!(%leg_id, status, "re-INVITE overlaps another INVITE on its dialog");
                // RFC 3261 §14.2: a 500 here says when to retry (0–10 s).
                let headers = if status == 500 {
                    use rand::Rng;
                    let after = rand::rng().random_range(0..=10u32);
                    vec![("Retry-After".to_string(), after.to_string())]
                } else {
                    Vec::new()
                };
                let _ = self
                    .entities
                    .respond_with(sid, status, reason(status), headers, None);
                return;
            }
        }
        let Some(leg) = self.entities.calls_mut().leg_mut(leg_id) else {
            return;
        };
        let span = tracing::info_span!("call", call = %leg.call, leg = %leg_id);
        let _g = span.enter();
        let (cseq, _) = req.cseq().unwrap_or_default();
        if !leg.dialog.accept_remote_cseq(cseq, &method) {
            warn!(cseq, "CSeq out of order");
            return self.entities.respond(sid, 500, "CSeq Out of Order");
        }
        if method.sets_target() {
            if let Some(t) = contact_uri(&req) {
                leg.dialog.remote_target = t;
            }
        }
        leg.dialog.record_sdp(&req);
        if method == Method::Invite {
            leg.invite_server = Some(sid);
        }
        let peer = leg.peer;
        if let Some(e) = self.entities.server_mut(sid) {
            e.leg = Some(leg_id);
        }
        debug!(request = %req.summary(), "in-dialog request");
        if method == Method::Notify {
            return self.relay_notify(sid, &req, leg_id);
        }
        match peer {
            Some(peer) if matches!(method, Method::Refer | Method::Subscribe) => {
                self.relay_subscribing(sid, &req, &method, leg_id, peer)
            }
            Some(peer) => {
                if method == Method::Bye {
                    self.entities.end_leg(leg_id);
                    self.entities.end_leg(peer);
                }
                self.forward_on_leg(sid, &req, peer);
            }
            None if method == Method::Bye => {
                self.entities.respond(sid, 200, "OK");
                self.entities.release(leg_id);
            }
            None => self.entities.respond(sid, 481, reason(481)),
        }
    }

    /// Whether a re-INVITE arriving on `leg` overlaps another INVITE of its
    /// dialog (RFC 3261 §14): the host's own re-INVITE on that leg still
    /// waits for its final response (glare: 491, the far end retries after
    /// a random wait), or the far end's previous INVITE is not answered yet
    /// (500; its retransmissions never get here).
    fn reinvite_overlap(&self, leg: LegId) -> Option<u16> {
        let l = self.entities.calls().leg(leg)?;
        if l.invite_client.is_some() {
            return Some(491);
        }
        let unanswered = l
            .invite_server
            .and_then(|sid| self.entities.server(sid))
            .is_some_and(|e| e.tx.awaits_final());
        unanswered.then_some(500)
    }

    /// The ACK of a 2xx on `leg`: the partner leg gets the host's own ACK,
    /// with this one's end-to-end headers and body.
    pub(super) fn on_ack(&mut self, leg: LegId, ack: &SipMessage) {
        if let Some(peer) = self.entities.calls().peer_of(leg) {
            self.entities.ack_leg(peer, Some(ack));
        }
    }

    /// A response to a request the host sent: to its plugin, or through the
    /// plugin hooks back to the request it answers.
    pub(super) fn on_response(&mut self, tx: ClientTxId, info: ClientInfo, resp: SipMessage) {
        if info.kind == ClientKind::Plugin {
            return self.plugin_response(tx, info, resp);
        }
        let status = resp.status().unwrap_or(0);
        let method = resp.cseq_method();
        let mut resp = resp;
        let handled = status > 100
            && self.run_hooks(
                HookKind::Response,
                info.leg,
                info.origin,
                &mut resp,
                &info.target,
            ) == HookOutcome::Handled;
        if status > 100 && !handled {
            if let Some(sid) = info.origin {
                self.relay_response(sid, &resp);
            }
        }
        if status >= 200 {
            self.subscribing_answered(tx, &info, &resp);
            self.replacement_answered(tx, status);
            self.end_call_if_over(info.leg, method.as_ref(), status >= 300);
        }
    }

    /// Relay a response from the partner leg to the origin of server transaction `sid`.
    fn relay_response(&mut self, sid: ServerTxId, resp: &SipMessage) {
        let Some(e) = self.entities.server(sid) else {
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
        let sets_target = req.request_method().is_some_and(|m| m.sets_target());
        let mut out = response_to(req, status, &reason_text, Some(&e.to_tag));
        let our_contact = sets_target && status < 300 && e.leg.is_some();
        let leg = e.leg;
        if our_contact {
            if let Some(local) = self.entities.local_addr_for(&e.source) {
                out.push_header("Contact", contact_value(e.source.proto, local));
            }
        }
        copy_end_to_end(resp, &mut out, !our_contact);
        if let Some(l) = leg.and_then(|l| self.entities.calls_mut().leg_mut(l)) {
            l.dialog.record_sdp(&out);
        }
        self.entities.send_response(sid, &out);
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
