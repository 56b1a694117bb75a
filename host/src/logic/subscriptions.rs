//! Subscriptions across the host: a REFER or SUBSCRIBE relayed from one
//! leg to another is remembered on the leg it went out on
//! ([`crate::entities::subscriptions`]), and every NOTIFY coming back on
//! that leg goes on to the subscriber's leg with the id the subscriber knows
//! (a REFER's id is its CSeq, which differs per leg). A NOTIFY for no
//! subscription of ours is answered 481 here, never relayed. A subscription
//! is forgotten when its request fails, when its 2xx says `Refer-Sub: false`
//! (RFC 4488), when a NOTIFY terminates it, or with either dialog.

use super::B2bua;
use crate::entities::ids::{ClientTxId, LegId, ServerTxId};
use crate::entities::subscriptions::{Lookup, Relayed};
use crate::entities::ClientInfo;
use crate::forward::reason;
use crate::sip::event::{event_of, with_event_id};
use crate::sip::{Method, SipMessage};
use tracing::{debug, warn};

/// The package and id a REFER or SUBSCRIBE creates its subscription with
/// on a leg where its CSeq is `cseq`; `None` when it creates none.
fn subscription_of(
    req: &SipMessage,
    method: &Method,
    cseq: u32,
) -> Option<(String, Option<String>)> {
    match method {
        Method::Refer => {
            let no_sub = req
                .header("Refer-Sub")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("false"));
            (!no_sub).then(|| ("refer".to_string(), Some(cseq.to_string())))
        }
        Method::Subscribe => req.header("Event").map(event_of),
        _ => None,
    }
}

impl B2bua {
    /// Relay a REFER or SUBSCRIBE from `from_leg` on `to_leg`, and remember
    /// the subscription it makes on each side.
    pub(super) fn relay_subscribing(
        &mut self,
        sid: ServerTxId,
        req: &SipMessage,
        method: &Method,
        from_leg: LegId,
        to_leg: LegId,
    ) {
        self.forward_on_leg(sid, req, to_leg);
        let Some(sent) = self.entities.server(sid).and_then(|e| e.peer_client) else {
            return; // not sent: answered 481 already
        };
        let there_cseq = req.cseq().map_or(0, |c| c.0);
        let here_cseq = self
            .entities
            .client(sent)
            .and_then(|c| c.tx.request())
            .and_then(|r| r.cseq())
            .map_or(0, |c| c.0);
        let (Some((event, there)), Some((_, here))) = (
            subscription_of(req, method, there_cseq),
            subscription_of(req, method, here_cseq),
        ) else {
            return;
        };
        if let Some(leg) = self.entities.calls_mut().leg_mut(to_leg) {
            debug!(%event, ?here, ?there, "subscription relayed");
            leg.subscriptions.add(Relayed {
                event,
                here,
                there_leg: from_leg,
                there,
            });
        }
    }

    /// A NOTIFY on `leg`: on to the subscriber's leg with its id there, or
    /// 481 when it belongs to no subscription the host relayed.
    pub(super) fn relay_notify(&mut self, sid: ServerTxId, req: &SipMessage, leg: LegId) {
        let (event, id) = event_of(req.header("Event").unwrap_or_default());
        let found = self.entities.calls().leg(leg).map(|l| {
            match l.subscriptions.find(&event, id.as_deref()) {
                Lookup::Found(r) => Ok(r.clone()),
                Lookup::Unknown => Err("unknown"),
                Lookup::Ambiguous => Err("ambiguous"),
            }
        });
        let relayed = match found {
            Some(Ok(r)) => r,
            other => {
                let why = match other {
                    Some(Err(why)) => why,
                    _ => "no leg",
                };
                warn!(%event, ?id, why, "NOTIFY for no relayed subscription: 481");
                return self.entities.respond(sid, 481, reason(481));
            }
        };
        let mut out = req.clone();
        let event_value = req.header("Event").unwrap_or_default().to_string();
        out.set_header(
            "Event",
            with_event_id(&event_value, relayed.there.as_deref()),
        );
        let terminated = req
            .header("Subscription-State")
            .is_some_and(|s| s.trim().to_ascii_lowercase().starts_with("terminated"));
        if terminated {
            if let Some(l) = self.entities.calls_mut().leg_mut(leg) {
                l.subscriptions
                    .remove(&relayed.event, relayed.here.as_deref());
            }
        }
        self.forward_on_leg(sid, &out, relayed.there_leg);
    }

    /// A final response to a REFER or SUBSCRIBE the host relayed on
    /// `info.leg`: a failure, or a 2xx without a subscription (`Refer-Sub:
    /// false`), ends what was remembered.
    pub(super) fn subscribing_answered(
        &mut self,
        tx: ClientTxId,
        info: &ClientInfo,
        resp: &SipMessage,
    ) {
        let status = resp.status().unwrap_or(0);
        if status < 200 || !matches!(info.method, Method::Refer | Method::Subscribe) {
            return;
        }
        let no_sub = resp
            .header("Refer-Sub")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("false"));
        if status < 300 && !no_sub {
            return;
        }
        let (event, here) = match info.method {
            Method::Refer => ("refer".to_string(), resp.cseq().map(|c| c.0.to_string())),
            _ => {
                let request = self.entities.client(tx).and_then(|c| c.tx.request());
                event_of(request.and_then(|r| r.header("Event")).unwrap_or_default())
            }
        };
        if let Some(l) = info.leg.and_then(|l| self.entities.calls_mut().leg_mut(l)) {
            l.subscriptions.remove(&event, here.as_deref());
        }
    }

    /// `gone` ended: the subscriptions whose subscriber was on it end too.
    pub(super) fn forget_subscriptions_of(
        &mut self,
        gone: LegId,
        call: crate::entities::ids::CallRef,
    ) {
        for l in self.entities.calls().legs_of(call) {
            if let Some(leg) = self.entities.calls_mut().leg_mut(l) {
                leg.subscriptions.forget_leg(gone);
            }
        }
    }
}
