//! The call model: legs (each one dialog) grouped into calls, and pairs of
//! legs between which the host forwards. A leg can be re-paired with another
//! leg or released without touching its partner; escalation relies on both.

use super::ids::{CallRef, LegId};
use super::leg::Leg;
use crate::compaction::shrink_if_sparse;
use crate::shard::IdSeq;
use hashbrown::HashTable;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

/// How a request received in a dialog matched the host's legs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogMatch {
    Leg(LegId),
    /// Call-ID and To tag name a leg, but the From tag is not its remote
    /// tag: someone else's request (481, never relayed).
    ForeignRemoteTag(LegId),
    NoDialog,
}

impl DialogMatch {
    pub fn leg(self) -> Option<LegId> {
        match self {
            DialogMatch::Leg(l) => Some(l),
            _ => None,
        }
    }
}

/// Memory per established call is what operators size boxes by, so the
/// model keeps each leg in one allocation (a table of 500-byte entries
/// would also be copied whole on every resize) and indexes dialogs without
/// copying their Call-ID and tag.
#[derive(Default)]
pub struct CallModel {
    legs: HashMap<LegId, Box<Leg>>,
    /// How in-dialog requests find their leg: leg ids hashed by the leg's
    /// (Call-ID, local tag), compared against the leg itself on lookup.
    by_dialog: HashTable<LegId>,
    dialog_hasher: RandomState,
    calls: HashMap<CallRef, Vec<LegId>>,
    leg_ids: IdSeq,
    call_ids: IdSeq,
}

impl std::fmt::Debug for CallModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallModel")
            .field("legs", &self.legs)
            .field("calls", &self.calls)
            .finish_non_exhaustive()
    }
}

impl CallModel {
    /// The model of core shard `shard` of `shards`: its call and leg ids
    /// are unique across shards.
    pub fn for_shard(shard: usize, shards: usize) -> CallModel {
        CallModel {
            leg_ids: IdSeq::new(shard, shards),
            call_ids: IdSeq::new(shard, shards),
            ..CallModel::default()
        }
    }

    pub fn new_call(&mut self) -> CallRef {
        let call = CallRef(self.call_ids.next_id());
        self.calls.insert(call, Vec::new());
        call
    }

    pub fn add_leg(&mut self, mut leg: Leg) -> LegId {
        let id = LegId(self.leg_ids.next_id());
        leg.id = id;
        let hash = leg_hash(&self.dialog_hasher, &leg);
        self.calls.entry(leg.call).or_default().push(id);
        self.legs.insert(id, Box::new(leg));
        let rehash = rehasher(&self.legs, &self.dialog_hasher);
        self.by_dialog.insert_unique(hash, id, rehash);
        id
    }

    pub fn leg(&self, id: LegId) -> Option<&Leg> {
        self.legs.get(&id).map(|l| &**l)
    }

    pub fn leg_mut(&mut self, id: LegId) -> Option<&mut Leg> {
        self.legs.get_mut(&id).map(|l| &mut **l)
    }

    pub fn find(&self, call_id: &str, local_tag: &str) -> Option<LegId> {
        let hash = dialog_hash(&self.dialog_hasher, call_id, local_tag);
        self.by_dialog
            .find(hash, |id| {
                self.legs
                    .get(id)
                    .is_some_and(|l| l.dialog.call_id == call_id && l.dialog.local_tag == local_tag)
            })
            .copied()
    }

    /// The leg of a request received in a dialog: Call-ID and To tag name
    /// the leg (its local tag), and the From tag must be the leg's remote tag
    /// once it has one (RFC 3261 §12.2.2). A leg whose remote tag is still
    /// unknown (an early dialog) matches any.
    pub fn find_request_leg(
        &self,
        call_id: &str,
        to_tag: &str,
        from_tag: Option<&str>,
    ) -> DialogMatch {
        let Some(id) = self.find(call_id, to_tag) else {
            return DialogMatch::NoDialog;
        };
        match self
            .legs
            .get(&id)
            .and_then(|l| l.dialog.remote_tag.as_deref())
        {
            Some(remote) if Some(remote) != from_tag => DialogMatch::ForeignRemoteTag(id),
            _ => DialogMatch::Leg(id),
        }
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
        let leg = *self.legs.remove(&id)?;
        let hash = leg_hash(&self.dialog_hasher, &leg);
        if let Ok(entry) = self.by_dialog.find_entry(hash, |other| *other == id) {
            entry.remove();
        }
        shrink_if_sparse(&mut self.legs);
        let (len, cap) = (self.by_dialog.len(), self.by_dialog.capacity());
        if crate::compaction::is_sparse(len, cap) {
            let rehash = rehasher(&self.legs, &self.dialog_hasher);
            self.by_dialog.shrink_to(len * 2, rehash);
        }
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
                shrink_if_sparse(&mut self.calls);
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

/// The one hash of the dialog index, for lookups and for the legs in it.
fn dialog_hash(hasher: &RandomState, call_id: &str, local_tag: &str) -> u64 {
    hasher.hash_one((call_id, local_tag))
}

fn leg_hash(hasher: &RandomState, leg: &Leg) -> u64 {
    dialog_hash(hasher, &leg.dialog.call_id, &leg.dialog.local_tag)
}

/// What the dialog index needs to move its entries when it resizes.
fn rehasher<'a>(
    legs: &'a HashMap<LegId, Box<Leg>>,
    hasher: &'a RandomState,
) -> impl Fn(&LegId) -> u64 + 'a {
    move |id| legs.get(id).map_or(0, |l| leg_hash(hasher, l))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entities::dialog::Dialog;
    use crate::entities::leg::Role;
    use crate::transport::{Proto, Target};

    fn leg(call: CallRef, call_id: &str, tag: &str) -> Leg {
        Leg::new(
            call,
            Role::Uas,
            Dialog {
                call_id: call_id.into(),
                local_tag: tag.into(),
                remote_tag: None,
                local_uri: "<sip:a@x>".into(),
                remote_uri: "<sip:b@x>".into(),
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
                peer_supports_replaces: false,
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

    #[test]
    fn the_dialog_index_survives_growth_and_shrinks_after_a_peak() {
        let mut m = CallModel::default();
        let c = m.new_call();
        let ids: Vec<LegId> = (0..5000)
            .map(|i| m.add_leg(leg(c, &format!("call-{i}"), &format!("tag-{i}"))))
            .collect();
        let peak = m.by_dialog.capacity();
        for (i, id) in ids.iter().enumerate().skip(10) {
            assert_eq!(m.find(&format!("call-{i}"), &format!("tag-{i}")), Some(*id));
            m.release(*id);
        }
        assert!(
            m.by_dialog.capacity() < peak / 4,
            "{} of {peak}",
            m.by_dialog.capacity()
        );
        for (i, id) in ids.iter().enumerate().take(10) {
            assert_eq!(m.find(&format!("call-{i}"), &format!("tag-{i}")), Some(*id));
            assert_eq!(m.find(&format!("call-{i}"), "tag-x"), None);
        }
        assert_eq!(m.leg_count(), 10);
    }
}
