//! Handing memory back to the system once a burst of transactions is over.
//!
//! Every call set-up creates transactions that live 64*T1 (32 s) after
//! their final response; at 2000 calls/s that is tens of thousands alive at
//! once. When the burst ends, glibc's malloc keeps the freed memory (its
//! free chunks sit between the allocations of the calls that stay up), so
//! resident memory stays at the burst's peak. `malloc_trim` returns every
//! whole free page. It holds each malloc arena's lock while it walks it, so
//! it runs only after a burst, never under steady load.
//!
//! The `escalator` binary allocates with jemalloc, which returns freed pages
//! on its own (after its decay time, 10 s by default); what is trimmed here
//! is glibc's heap, which plugins loaded from files allocate from, and all
//! of the host's memory where the library is embedded without jemalloc.

use crate::core::Stats;
use std::sync::Arc;
use std::time::Duration;

/// Fewer transactions than this gone since the last trim are not worth one.
const MIN_DROP: usize = 2000;

/// Decides when (part of) a burst is over: since the last trim, the number
/// of open transactions has at least halved, by at least [`MIN_DROP`].
/// Under steady load the number only wobbles, so nothing is trimmed.
#[derive(Debug, Default)]
pub struct BurstTracker {
    high: usize,
}

impl BurstTracker {
    /// Record the current number of transactions; true when it is time to trim.
    pub fn observe(&mut self, transactions: usize) -> bool {
        self.high = self.high.max(transactions);
        let dropped = self.high - transactions;
        if dropped >= MIN_DROP && transactions * 2 <= self.high {
            self.high = transactions;
            return true;
        }
        false
    }
}

/// Resident memory of this process in bytes (Linux), for logs.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// Give free pages back to the system; false where the allocator has no
/// such call (anything but glibc).
pub fn release_free_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only reorganises the allocator's own free lists.
        unsafe { libc::malloc_trim(0) };
        true
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Check every `every` whether a burst has ended, and trim when it has.
pub async fn trim_after_bursts(stats: Arc<Stats>, every: Duration) {
    let mut tracker = BurstTracker::default();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !tracker.observe(stats.transactions()) {
            continue;
        }
        let before = resident_bytes();
        let trimmed = tokio::task::spawn_blocking(release_free_memory)
            .await
            .unwrap_or(false);
        if !trimmed {
            return; // nothing to do on this allocator
        }
        metrics::counter!(crate::metrics::MEMORY_TRIMS).increment(1);
        let after = resident_bytes();
        tracing::info!(
            resident_before = before,
            resident_after = after,
            "burst over: free memory returned to the system"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_a_burst_has_mostly_ended() {
        let mut t = BurstTracker::default();
        let seen: Vec<bool> = [
            0, 5000, 40_000, 60_000, 55_000, 30_000, 16_000, 14_000, 9000, 0,
        ]
        .into_iter()
        .map(|n| t.observe(n))
        .collect();
        assert_eq!(
            seen,
            [false, false, false, false, false, true, false, true, false, true],
            "each time the count has halved since the last trim, down to the end"
        );
    }

    #[test]
    fn a_new_burst_can_trigger_again_and_small_loads_never_do() {
        let mut t = BurstTracker::default();
        assert!(!t.observe(1500));
        assert!(!t.observe(0), "1500 transactions are not a burst");
        assert!(!t.observe(10_000));
        assert!(t.observe(100));
        assert!(!t.observe(10_000));
        assert!(t.observe(2000));
        for n in [30_000, 27_000, 33_000, 25_000, 31_000] {
            assert!(!t.observe(n), "steady load wobbles: {n}");
        }
    }

    #[test]
    fn resident_memory_is_readable_and_trimming_is_harmless() {
        let before = resident_bytes().expect("linux");
        assert!(before > 0);
        let data: Vec<Vec<u8>> = (0..1000).map(|_| vec![1u8; 4096]).collect();
        drop(data);
        let _ = release_free_memory();
        assert!(resident_bytes().is_some());
    }
}
