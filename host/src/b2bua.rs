//! The call model: legs (each one dialog) grouped into calls, and pairs of
//! legs between which the host forwards. A leg can be re-paired with another
//! leg or released without touching its partner; escalation relies on both.

use crate::dialog::Dialog;
use std::collections::HashMap;

pub type LegId = u64;
pub type CallRef = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We answered: the leg toward whoever sent the initial INVITE.
    Uas,
    /// We originated the leg.
    Uac,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegState {
    Early,
    Confirmed,
    Terminating,
}

#[derive(Debug)]
pub struct Leg {
    pub id: LegId,
    pub call: CallRef,
    pub role: Role,
    pub state: LegState,
    pub dialog: Dialog,
    pub peer: Option<LegId>,
    /// UAS legs: the server transaction of the INVITE in progress.
    pub invite_server: Option<u64>,
    /// UAC legs: the client transaction of the INVITE in progress.
    pub invite_client: Option<u64>,
    /// UAC legs: CSeq of the last INVITE sent, for the ACK of its 2xx.
    pub invite_cseq: u32,
    /// UAC legs: the ACK sent for the last 2xx, re-sent on 2xx retransmission.
    pub ack: Option<bytes::Bytes>,
    /// UAC legs: the originator cancelled before we could send CANCEL.
    pub cancel_pending: bool,
}

impl Leg {
    pub fn new(call: CallRef, role: Role, dialog: Dialog) -> Self {
        Leg {
            id: 0,
            call,
            role,
            state: LegState::Early,
            dialog,
            peer: None,
            invite_server: None,
            invite_client: None,
            invite_cseq: 0,
            ack: None,
            cancel_pending: false,
        }
    }
}

#[derive(Debug, Default)]
pub struct CallModel {
    legs: HashMap<LegId, Leg>,
    /// (Call-ID, local tag) → leg: how in-dialog requests find their leg.
    by_dialog: HashMap<(String, String), LegId>,
    calls: HashMap<CallRef, Vec<LegId>>,
    next_leg: LegId,
    next_call: CallRef,
}

impl CallModel {
    pub fn new_call(&mut self) -> CallRef {
        self.next_call += 1;
        self.calls.insert(self.next_call, Vec::new());
        self.next_call
    }

    pub fn add_leg(&mut self, mut leg: Leg) -> LegId {
        self.next_leg += 1;
        let id = self.next_leg;
        leg.id = id;
        self.by_dialog.insert(
            (leg.dialog.call_id.clone(), leg.dialog.local_tag.clone()),
            id,
        );
        self.calls.entry(leg.call).or_default().push(id);
        self.legs.insert(id, leg);
        id
    }

    pub fn leg(&self, id: LegId) -> Option<&Leg> {
        self.legs.get(&id)
    }

    pub fn leg_mut(&mut self, id: LegId) -> Option<&mut Leg> {
        self.legs.get_mut(&id)
    }

    pub fn find(&self, call_id: &str, local_tag: &str) -> Option<LegId> {
        self.by_dialog
            .get(&(call_id.to_string(), local_tag.to_string()))
            .copied()
    }

    pub fn peer_of(&self, id: LegId) -> Option<LegId> {
        self.legs.get(&id)?.peer
    }

    /// Pair two legs; each loses its previous partner (which keeps its dialog).
    pub fn pair(&mut self, a: LegId, b: LegId) -> bool {
        if a == b || !self.legs.contains_key(&a) || !self.legs.contains_key(&b) {
            return false;
        }
        for id in [a, b] {
            if let Some(old) = self.peer_of(id) {
                if let Some(l) = self.legs.get_mut(&old) {
                    l.peer = None;
                }
            }
        }
        if let Some(l) = self.legs.get_mut(&a) {
            l.peer = Some(b);
        }
        if let Some(l) = self.legs.get_mut(&b) {
            l.peer = Some(a);
        }
        true
    }

    /// Remove a leg; its partner stays, unpaired. Returns the removed leg.
    pub fn release(&mut self, id: LegId) -> Option<Leg> {
        let leg = self.legs.remove(&id)?;
        self.by_dialog
            .remove(&(leg.dialog.call_id.clone(), leg.dialog.local_tag.clone()));
        if let Some(p) = leg.peer {
            if let Some(pl) = self.legs.get_mut(&p) {
                if pl.peer == Some(id) {
                    pl.peer = None;
                }
            }
        }
        if let Some(list) = self.calls.get_mut(&leg.call) {
            list.retain(|l| *l != id);
            if list.is_empty() {
                self.calls.remove(&leg.call);
            }
        }
        Some(leg)
    }

    pub fn legs_of(&self, call: CallRef) -> Vec<LegId> {
        self.calls.get(&call).cloned().unwrap_or_default()
    }

    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    pub fn leg_count(&self) -> usize {
        self.legs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::NameAddr;
    use crate::transport::{Proto, Target};

    fn leg(call: CallRef, call_id: &str, tag: &str) -> Leg {
        Leg::new(
            call,
            Role::Uas,
            Dialog {
                call_id: call_id.into(),
                local_tag: tag.into(),
                remote_tag: None,
                local_uri: NameAddr::parse("<sip:a@x>").unwrap(),
                remote_uri: NameAddr::parse("<sip:b@x>").unwrap(),
                local_cseq: 0,
                remote_cseq: None,
                remote_target: "sip:b@127.0.0.1".into(),
                route_set: vec![],
                dest: Target {
                    proto: Proto::Udp,
                    addr: "127.0.0.1:5060".parse().unwrap(),
                    conn: None,
                },
                last_offer: None,
                last_answer: None,
            },
        )
    }

    #[test]
    fn legs_are_found_by_dialog_and_paired() {
        let mut m = CallModel::default();
        let c = m.new_call();
        let a = m.add_leg(leg(c, "ca", "ta"));
        let b = m.add_leg(leg(c, "cb", "tb"));
        assert!(m.pair(a, b));
        assert_eq!(m.find("ca", "ta"), Some(a));
        assert_eq!(m.find("cb", "ta"), None);
        assert_eq!(m.peer_of(a), Some(b));
        assert_eq!(m.peer_of(b), Some(a));
        assert_eq!(m.legs_of(c), vec![a, b]);
    }

    #[test]
    fn repairing_detaches_the_old_partner_but_keeps_it() {
        let mut m = CallModel::default();
        let c = m.new_call();
        let a = m.add_leg(leg(c, "ca", "ta"));
        let b = m.add_leg(leg(c, "cb", "tb"));
        let conf = m.add_leg(leg(c, "cc", "tc"));
        m.pair(a, b);
        assert!(m.pair(a, conf));
        assert_eq!(m.peer_of(a), Some(conf));
        assert_eq!(m.peer_of(conf), Some(a));
        assert_eq!(m.peer_of(b), None);
        assert!(m.leg(b).is_some(), "old leg still exists until released");
    }

    #[test]
    fn release_keeps_the_partner_and_ends_empty_calls() {
        let mut m = CallModel::default();
        let c = m.new_call();
        let a = m.add_leg(leg(c, "ca", "ta"));
        let b = m.add_leg(leg(c, "cb", "tb"));
        m.pair(a, b);
        assert!(m.release(b).is_some());
        assert_eq!(m.peer_of(a), None);
        assert!(m.leg(a).is_some());
        assert_eq!(m.find("cb", "tb"), None);
        assert_eq!(m.call_count(), 1);
        m.release(a);
        assert_eq!(m.call_count(), 0);
        assert!(!m.pair(a, a));
    }
}
