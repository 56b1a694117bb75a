//! Giving memory back after a peak.
//!
//! A hash table keeps its capacity when entries leave. At 2000 calls/s about
//! 64 000 INVITE transactions are alive at once (each lives 64*T1 after its
//! final response), so without this the transaction tables alone kept over
//! 100 MB for the life of the process after one busy minute.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

/// Tables smaller than this are left alone: shrinking them saves nothing.
const MIN_CAPACITY: usize = 1024;

/// Shrink `map` to twice its length once it is less than a quarter full.
/// Checking is O(1); the O(n) rehash happens only after the table has lost
/// three quarters of its entries, so its cost is spread over those removals.
pub fn shrink_if_sparse<K: Eq + Hash, V, S: BuildHasher>(map: &mut HashMap<K, V, S>) {
    if is_sparse(map.len(), map.capacity()) {
        map.shrink_to(map.len() * 2);
    }
}

/// Whether a table of `capacity` holding `len` entries is worth shrinking.
pub fn is_sparse(len: usize, capacity: usize) -> bool {
    capacity > MIN_CAPACITY && len * 4 < capacity
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_that_emptied_after_a_peak_shrinks() {
        let mut m: HashMap<u64, [u8; 64]> = HashMap::new();
        for i in 0..100_000 {
            m.insert(i, [0; 64]);
        }
        let peak = m.capacity();
        for i in 10..100_000 {
            m.remove(&i);
            shrink_if_sparse(&mut m);
        }
        assert_eq!(m.len(), 10);
        assert!(m.capacity() <= MIN_CAPACITY, "{} of {peak}", m.capacity());
        assert!((0..10).all(|i| m.contains_key(&i)), "entries survive");
    }

    #[test]
    fn a_table_more_than_a_quarter_full_is_left_alone() {
        let mut m: HashMap<u64, u64> = (0..10_000).map(|i| (i, i)).collect();
        for i in 0..6000 {
            m.remove(&i);
            shrink_if_sparse(&mut m);
        }
        // hashbrown's reported capacity drops a little per removal
        // (tombstones); a shrink would bring it to 8000.
        assert!(m.capacity() > 10_000, "{}", m.capacity());
    }
}
