//! Which core shard owns a call. The core is split into shards, each a task
//! with its own transactions, dialogs and timers; a call lives on one shard
//! from its first message to its last, so shards share no call state.
//!
//! A message is routed by its Call-ID. Call-IDs the host makes (leg B of a
//! call, legs a plugin creates, out-of-dialog forwards) carry their shard
//! (`…-s3@escalator`); any other Call-ID is hashed. Both legs of a call thus
//! reach the shard that created the call. Ids the shards hand out
//! (transactions, calls, legs) are unique across shards and tell their shard:
//! `id % shards == shard`.

use std::hash::BuildHasher;

const DOMAIN: &str = "@escalator";
/// More shards than this make no sense on one host; it also bounds the
/// digits read from a Call-ID.
pub const MAX_SHARDS: usize = 256;

#[derive(Debug, Clone)]
pub struct ShardMap {
    count: usize,
    /// Keyed per process, so Call-IDs spread evenly whatever generator the
    /// peers use. (A peer that imitates our mark can still pick a shard;
    /// that skews load, nothing else.)
    hasher: std::collections::hash_map::RandomState,
}

impl ShardMap {
    pub fn new(count: usize) -> ShardMap {
        ShardMap {
            count: count.clamp(1, MAX_SHARDS),
            hasher: Default::default(),
        }
    }

    pub fn count(&self) -> usize {
        self.count
    }

    pub fn of_call_id(&self, call_id: &str) -> usize {
        match marked_shard(call_id) {
            Some(shard) => shard % self.count,
            None => (self.hasher.hash_one(call_id) % self.count as u64) as usize,
        }
    }

    /// The shard an id from [`IdSeq`] belongs to.
    pub fn of_id(&self, id: u64) -> usize {
        (id % self.count as u64) as usize
    }
}

fn marked_shard(call_id: &str) -> Option<usize> {
    let (_, digits) = call_id.strip_suffix(DOMAIN)?.rsplit_once("-s")?;
    if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A Call-ID made by the host on `shard`; `unique` makes it unique.
pub fn call_id_on_shard(unique: &str, shard: usize) -> String {
    format!("{unique}-s{shard}{DOMAIN}")
}

/// Call-IDs routed by exception. An initial INVITE with Replaces must reach
/// the shard of the dialog it replaces (found from the Replaces' Call-ID),
/// and every later message of its own Call-ID (ACK, CANCEL, in-dialog
/// requests, responses) must follow it there, whoever made that Call-ID.
/// The inbox pins the Call-ID when it routes such an INVITE; the shard
/// unpins it when the leg of that Call-ID is released, or after 64×T1 when
/// the INVITE was refused. Empty (one atomic load per message) unless an
/// escalation or transfer is in progress.
#[derive(Debug, Default)]
pub struct Pins {
    map: std::sync::RwLock<std::collections::HashMap<String, usize>>,
    len: std::sync::atomic::AtomicUsize,
}

impl Pins {
    pub fn get(&self, call_id: &str) -> Option<usize> {
        if self.len.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            return None;
        }
        self.map.read().ok()?.get(call_id).copied()
    }

    pub fn pin(&self, call_id: &str, shard: usize) {
        if let Ok(mut map) = self.map.write() {
            map.insert(call_id.to_string(), shard);
            self.len
                .store(map.len(), std::sync::atomic::Ordering::Relaxed);
        }
    }

    pub fn unpin(&self, call_id: &str) {
        if self.get(call_id).is_none() {
            return;
        }
        if let Ok(mut map) = self.map.write() {
            map.remove(call_id);
            self.len
                .store(map.len(), std::sync::atomic::Ordering::Relaxed);
        }
    }

    pub fn len(&self) -> usize {
        self.len.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Ids unique across shards: shard `s` of `n` hands out `s + n`, `s + 2n`, …
/// (never 0).
#[derive(Debug, Clone)]
pub struct IdSeq {
    next: u64,
    step: u64,
}

impl IdSeq {
    pub fn new(shard: usize, count: usize) -> IdSeq {
        let count = count.max(1) as u64;
        IdSeq {
            next: shard as u64 % count + count,
            step: count,
        }
    }

    pub fn next_id(&mut self) -> u64 {
        let id = self.next;
        self.next += self.step;
        id
    }
}

impl Default for IdSeq {
    fn default() -> Self {
        IdSeq::new(0, 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_made_call_ids_route_to_their_shard() {
        let map = ShardMap::new(4);
        for shard in 0..4 {
            let id = call_id_on_shard("k3j4h5g6", shard);
            assert_eq!(map.of_call_id(&id), shard, "{id}");
        }
    }

    #[test]
    fn the_same_call_id_always_reaches_the_same_shard() {
        let map = ShardMap::new(3);
        let ids: Vec<String> = (0..200).map(|i| format!("{i}abc@10.0.0.1")).collect();
        let first: Vec<usize> = ids.iter().map(|c| map.of_call_id(c)).collect();
        let again: Vec<usize> = ids.iter().map(|c| map.of_call_id(c)).collect();
        assert_eq!(first, again);
        for shard in 0..3 {
            let n = first.iter().filter(|s| **s == shard).count();
            assert!(n > 30, "shard {shard} got {n} of 200 calls");
        }
    }

    #[test]
    fn foreign_call_ids_that_look_marked_stay_in_range() {
        let map = ShardMap::new(2);
        assert_eq!(map.of_call_id("abc-s7@escalator"), 1);
        // Not a mark: too many digits, no digits, other domain.
        for id in [
            "a-s12345@escalator",
            "a-s@escalator",
            "a-sx@escalator",
            "a-s1@other",
        ] {
            assert!(map.of_call_id(id) < 2, "{id}");
            assert_eq!(marked_shard(id), None, "{id}");
        }
    }

    #[test]
    fn one_shard_takes_everything() {
        let map = ShardMap::new(0);
        assert_eq!(map.count(), 1);
        assert_eq!(map.of_call_id("x@y"), 0);
        assert_eq!(map.of_call_id(&call_id_on_shard("u", 5)), 0);
    }

    #[test]
    fn ids_are_unique_across_shards_and_name_their_shard() {
        let map = ShardMap::new(3);
        let mut seen = std::collections::HashSet::new();
        for shard in 0..3 {
            let mut seq = IdSeq::new(shard, 3);
            for _ in 0..100 {
                let id = seq.next_id();
                assert_ne!(id, 0);
                assert_eq!(map.of_id(id), shard);
                assert!(seen.insert(id), "{id} handed out twice");
            }
        }
        let mut single = IdSeq::default();
        assert_eq!((single.next_id(), single.next_id()), (1, 2));
    }
}
