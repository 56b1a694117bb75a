//! INVITEs with Replaces across the B2BUA (RFC 3891 §3). A Replaces names a
//! dialog of one hop: the one its receiver (here, the host) has with the
//! sender's side. The host never passes it on as it came; it finds which of
//! its legs the Replaces names (the *old* leg), and what that leg's call
//! partner (the *kept* leg, toward the client behind the host) should see:
//!
//! | kept leg's client | the host |
//! |---|---|
//! | listed `replaces` in Supported | forwards the INVITE to it as a new call, the Replaces rewritten to the kept leg's dialog as the client knows it (its own tag as to-tag, the host's as from-tag); the client answers and ends its old dialog itself |
//! | did not (a legacy client) | replaces on its behalf: a new leg answers the INVITE, paired with the kept leg; the kept leg is re-INVITEd with the INVITE's offer (none if it had none) and its answer goes back as the answer to the INVITE. On 2xx the old leg is hung up (BYE); on failure the kept leg goes back to the old one and the new leg ends |
//!
//! Refusals (before anything is sent): several Replaces or an unreadable one
//! 400; from a client while `core.replaces_from_clients` is off 403; no
//! confirmed dialog of ours by Call-ID, to-tag (ours) and from-tag (theirs)
//! 481; `early-only` for a confirmed dialog 486; a dialog that is ending or
//! has no partner any more 603.

use super::B2bua;
use crate::entities::calls::DialogMatch;
use crate::entities::ids::{ClientTxId, LegId, ServerTxId};
use crate::entities::leg::LegState;
use crate::entities::table::ClientKind;
use crate::entities::LegRequest;
use crate::forward::{next_max_forwards, reason};
use crate::sip::{Method, Replaces, SipMessage};
use crate::transport::Target;
use tracing::{info, warn};

/// A replacement the host performs for a legacy client, waiting for the
/// client's answer to the re-INVITE.
#[derive(Debug, Clone, Copy)]
pub(super) struct Replacement {
    /// The leg the Replaces named: hung up once the client accepted.
    pub old: LegId,
    /// The leg that answers the replacing INVITE.
    pub new: LegId,
    /// The client's leg, re-INVITEd.
    pub kept: LegId,
}

/// Why a Replaces is refused: status and a word for the log.
type Refusal = (u16, &'static str);

impl B2bua {
    /// An initial INVITE carrying Replaces, from `source`.
    pub(super) fn replacing_invite(&mut self, sid: ServerTxId, req: SipMessage, source: Target) {
        let (old, kept, replaces) = match self.replaced_dialog(&req, &source) {
            Ok(found) => found,
            Err((status, why)) => {
                warn!(
                    status,
                    why,
                    replaces = req.header("Replaces").unwrap_or_default(),
                    call_id = req.call_id().unwrap_or_default(),
                    "INVITE with Replaces refused"
                );
                crate::metrics::replaces(why);
                self.unpin_later(req.call_id().unwrap_or_default());
                return self.entities.respond(sid, status, reason(status));
            }
        };
        let call_id = req.call_id().unwrap_or_default().to_string();
        let Some(kept_dialog) = self.entities.calls().leg(kept).map(|l| l.dialog.clone()) else {
            return self.entities.respond(sid, 481, reason(481));
        };
        if kept_dialog.peer_supports_replaces {
            let translated = Replaces {
                call_id: kept_dialog.call_id.clone(),
                to_tag: kept_dialog.remote_tag.clone().unwrap_or_default(),
                from_tag: kept_dialog.local_tag.clone(),
                early_only: replaces.early_only,
            };
            info!(%old, %kept, replaces = %translated, "Replaces passed on, translated");
            crate::metrics::replaces("translated");
            // The client is reached where its dialog is, whatever the
            // Request-URI routes to.
            self.start_call(
                sid,
                req,
                source,
                kept_dialog.dest,
                Some(translated.to_string()),
            );
        } else {
            self.replace_for_client(sid, req, source, old, kept);
        }
        match self.entities.server(sid).and_then(|e| e.leg) {
            Some(leg) => {
                self.pinned_legs.insert(leg, call_id);
            }
            None => self.unpin_later(&call_id),
        }
    }

    /// The pin of a refused INVITE's Call-ID goes once its transaction is
    /// surely over (64×T1).
    fn unpin_later(&mut self, call_id: &str) {
        if !self.settings.pins.is_empty() {
            let after = self.entities.settings().timers.t1 * 64;
            self.schedule(super::LogicTimer::Unpin(call_id.to_string()), after);
        }
    }

    /// The old leg the Replaces names, its partner (the kept leg) and the
    /// Replaces, or why not.
    fn replaced_dialog(
        &self,
        req: &SipMessage,
        source: &Target,
    ) -> Result<(LegId, LegId, Replaces), Refusal> {
        let values: Vec<&str> = req
            .headers
            .iter()
            .filter(|h| crate::sip::message::name_is(&h.name, "Replaces"))
            .map(|h| h.value.as_str())
            .collect();
        let [value] = values[..] else {
            return Err((400, "several-replaces"));
        };
        let replaces = Replaces::parse(value).map_err(|_| (400, "malformed"))?;
        if !self.settings.replaces_from_clients && !self.settings.router.from_core(source) {
            return Err((403, "from-client"));
        }
        let calls = self.entities.calls();
        let DialogMatch::Leg(old) = calls.find_request_leg(
            &replaces.call_id,
            &replaces.to_tag,
            Some(&replaces.from_tag),
        ) else {
            return Err((481, "no-dialog"));
        };
        let Some(leg) = calls.leg(old) else {
            return Err((481, "no-dialog"));
        };
        match leg.state {
            LegState::Confirmed if replaces.early_only => return Err((486, "early-only")),
            LegState::Confirmed => {}
            // The host never replaces an early dialog (it did not
            // initiate it toward the sender of this INVITE).
            LegState::Early => return Err((481, "early-dialog")),
            _ => return Err((603, "dialog-ending")),
        }
        let kept = leg.peer.ok_or((603, "no-partner"))?;
        Ok((old, kept, replaces))
    }

    /// A legacy client: the host answers the INVITE on a new leg, paired
    /// with the client's leg, and re-INVITEs the client with its offer.
    fn replace_for_client(
        &mut self,
        sid: ServerTxId,
        req: SipMessage,
        source: Target,
        old: LegId,
        kept: LegId,
    ) {
        let Some(call) = self.entities.calls().leg(kept).map(|l| l.call) else {
            return self.entities.respond(sid, 481, reason(481));
        };
        let Some(new) = self.answering_leg(call, sid, &req, source) else {
            return self.entities.respond(sid, 400, "Bad Request");
        };
        self.entities.calls_mut().pair(new, kept);
        // The client does not know Replaces: it must not be asked to.
        let mut offer = req.clone();
        without_option(&mut offer, "Require", "replaces");
        without_option(&mut offer, "Supported", "replaces");
        let sent = self.entities.send_on_leg(
            kept,
            LegRequest {
                method: Method::Invite,
                from: &offer,
                keep_contact: false,
                kind: ClientKind::Forward,
                origin: Some(sid),
                max_forwards: next_max_forwards(&req).unwrap_or(70),
                replaces: None,
            },
        );
        let Some(cid) = sent else {
            self.entities.calls_mut().pair(old, kept);
            self.entities.release(new);
            return self.entities.respond(sid, 481, reason(481));
        };
        info!(%old, %new, %kept, "Replaces for a client without it: re-INVITE in its dialog");
        self.replacements
            .insert(cid, Replacement { old, new, kept });
    }

    /// The final response of a client to the re-INVITE of a replacement
    /// (already relayed as the answer to the replacing INVITE).
    pub(super) fn replacement_answered(&mut self, tx: ClientTxId, status: u16) {
        let Some(r) = self.replacements.remove(&tx) else {
            return;
        };
        if (200..300).contains(&status) {
            info!(old = %r.old, new = %r.new, "replaced: the old dialog is hung up");
            crate::metrics::replaces("performed");
            self.entities.send_bye(r.old);
        } else {
            info!(
                status,
                "the client refused the replacement: its old dialog stays"
            );
            crate::metrics::replaces("refused-by-client");
            self.entities.calls_mut().pair(r.old, r.kept);
            self.entities.release(r.new);
        }
    }

    /// The re-INVITE of a replacement got no final response (timeout or
    /// transport failure): as a refusal.
    pub(super) fn replacement_failed(&mut self, tx: ClientTxId) {
        if self.replacements.contains_key(&tx) {
            self.replacement_answered(tx, 408);
        }
    }
}

/// Remove `option` from the comma list of header `name`, and the header if
/// nothing is left.
fn without_option(msg: &mut SipMessage, name: &str, option: &str) {
    let kept: Vec<String> = msg
        .header_values(name)
        .iter()
        .map(|v| v.trim())
        .filter(|v| !v.eq_ignore_ascii_case(option))
        .map(str::to_string)
        .collect();
    msg.remove_header(name);
    if !kept.is_empty() {
        msg.push_header(name, kept.join(", "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_option_is_taken_out_of_its_list() {
        let mut m = SipMessage::request("INVITE", "sip:b@x");
        m.push_header("Require", "replaces");
        m.push_header("Supported", "timer, Replaces, 100rel");
        without_option(&mut m, "Require", "replaces");
        without_option(&mut m, "Supported", "replaces");
        assert_eq!(m.header("Require"), None);
        assert_eq!(m.header("Supported"), Some("timer, 100rel"));
    }
}
