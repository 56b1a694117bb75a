//! How calls end across legs: a CANCEL from the caller, Timer C, a request
//! that failed or timed out, a 2xx never acknowledged, and what follows a
//! released leg. The rule in one place: a relayed request whose outcome ends
//! its leg (a finished BYE, an INVITE that failed before its dialog was
//! confirmed) ends the call, both legs.

use super::B2bua;
use crate::entities::ids::{CallRef, ClientTxId, LegId, ServerTxId};
use crate::entities::leg::LegState;
use crate::entities::table::ClientKind;
use crate::entities::ClientInfo;
use crate::forward::reason;
use crate::sip::Method;
use tracing::{debug, info, warn};

impl B2bua {
    /// The caller CANCELled an INVITE still waiting: 487 to it, its leg
    /// released, the relayed INVITE cancelled.
    pub(super) fn on_cancelled(&mut self, invite: ServerTxId) {
        let Some(e) = self.entities.server(invite) else {
            return;
        };
        let (a_leg, client) = (e.leg, e.peer_client);
        let span = self.leg_span(a_leg);
        let _g = span.enter();
        self.entities.respond(invite, 487, reason(487));
        info!("call cancelled by caller");
        if let Some(b) = a_leg.and_then(|a| self.entities.calls().peer_of(a)) {
            self.entities.end_leg(b);
        }
        if let Some(a) = a_leg {
            self.entities.release(a);
        }
        if let Some(cid) = client {
            self.entities.cancel_client(cid);
        }
    }

    /// Timer C ran out on a relayed INVITE: the caller gets 408, the INVITE
    /// is cancelled, the caller's leg (still early) released.
    pub(super) fn on_ring_timeout(&mut self, tx: ClientTxId, info: ClientInfo) {
        let span = self.leg_span(info.leg);
        let _g = span.enter();
        warn!("Timer C expired: cancelling the unanswered INVITE");
        if let Some(sid) = info.origin {
            self.entities.respond(sid, 408, reason(408));
        }
        if let Some(l) = info.leg {
            self.entities.end_leg(l);
        }
        if let Some(peer) = info.leg.and_then(|l| self.entities.calls().peer_of(l)) {
            let early = self
                .entities
                .calls()
                .leg(peer)
                .is_some_and(|p| p.state == LegState::Early);
            if early {
                self.entities.release(peer);
            }
        }
        self.entities.cancel_client(tx);
    }

    /// No final response from the far side: the origin gets 408 (or 503
    /// when the transport failed), and what the request set up ends.
    pub(super) fn on_client_failed(&mut self, tx: ClientTxId, info: ClientInfo, failed: bool) {
        if info.kind == ClientKind::Plugin {
            return self.plugin_request_failed(tx, info, failed);
        }
        if let Some(sid) = info.origin {
            let status = if failed { 503 } else { 408 };
            self.entities.respond(sid, status, reason(status));
        }
        self.replacement_failed(tx);
        self.end_call_if_over(info.leg, Some(&info.method), true);
    }

    /// A final response to an INVITE was never ACKed: after a 2xx, the
    /// dialog ends on both legs (RFC 3261 §13.3.1.4).
    pub(super) fn on_unacknowledged(&mut self, _tx: ServerTxId, leg: Option<LegId>, status: u16) {
        let span = self.leg_span(leg);
        let _g = span.enter();
        warn!(status, "no ACK for final response to INVITE");
        if let Some(l) = leg.filter(|_| (200..300).contains(&status)) {
            let peer = self.entities.calls().peer_of(l);
            self.entities.send_bye(l);
            if let Some(p) = peer {
                self.entities.send_bye(p);
            }
        }
    }

    pub(super) fn on_leg_released(&mut self, leg: LegId, call: CallRef, call_over: bool) {
        debug!(%leg, %call, "leg released");
        if let Some(call_id) = self.pinned_legs.remove(&leg) {
            self.settings.pins.unpin(&call_id);
        }
        if !call_over {
            self.forget_subscriptions_of(leg, call);
        }
        if call_over {
            info!(%call, "call ended");
            let set = self.call_plugins.remove(&call);
            crate::compaction::shrink_if_sparse(&mut self.call_plugins);
            if let Some(set) = set {
                self.call_ended(&set, call);
            }
        }
    }

    /// Whether a request's outcome ends its leg: a finished BYE, or an
    /// INVITE that failed before the leg's dialog was confirmed.
    pub(super) fn leg_is_over(&self, leg: LegId, method: Option<&Method>, failed: bool) -> bool {
        let unconfirmed = self
            .entities
            .calls()
            .leg(leg)
            .is_some_and(|x| x.state != LegState::Confirmed);
        match method {
            Some(Method::Bye) => true,
            Some(Method::Invite) => failed && unconfirmed,
            _ => false,
        }
    }

    /// A relayed request's outcome that ends its leg ends the call: both legs go.
    pub(super) fn end_call_if_over(
        &mut self,
        leg: Option<LegId>,
        method: Option<&Method>,
        failed: bool,
    ) {
        if let Some(l) = leg.filter(|l| self.leg_is_over(*l, method, failed)) {
            let peer = self.entities.calls().peer_of(l);
            self.entities.release(l);
            if let Some(p) = peer {
                self.entities.release(p);
            }
        }
    }
}
