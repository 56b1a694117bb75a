//! When each message of each call was sent and received, shared by the
//! client and server threads without locks, and the summaries made of it.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The moments timed per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamp {
    InviteSent = 0,
    InviteArrived = 1,
    OkSent = 2,
    OkArrived = 3,
    /// The first final response to the INVITE, whatever its status.
    FinalArrived = 4,
}

/// First-time stamps per call, in nanoseconds since `epoch` (+1, so 0 means unset).
pub struct Timeline {
    epoch: Instant,
    stamps: Vec<[AtomicU64; 5]>,
    /// Per call, the first final response to its INVITE (see [`Final`]).
    finals: Vec<AtomicU32>,
}

/// A call's first final response to its INVITE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Final {
    pub status: u16,
    /// It carried Retry-After.
    pub retry_after: bool,
}

impl Timeline {
    pub fn new(calls: usize) -> Self {
        Timeline {
            epoch: Instant::now(),
            stamps: (0..calls).map(|_| Default::default()).collect(),
            finals: (0..calls).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// Records `at` for `call` unless already recorded (retransmissions keep the first).
    pub fn mark(&self, call: usize, stamp: Stamp, at: Instant) {
        let Some(slots) = self.stamps.get(call) else {
            return;
        };
        let ns = at.saturating_duration_since(self.epoch).as_nanos() as u64 + 1;
        let _ = slots[stamp as usize].compare_exchange(0, ns, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Records the final response to `call`'s INVITE unless one was.
    pub fn mark_final(&self, call: usize, f: Final) {
        let Some(slot) = self.finals.get(call) else {
            return;
        };
        let v = u32::from(f.status) | (u32::from(f.retry_after) << 16);
        let _ = slot.compare_exchange(0, v, Ordering::Relaxed, Ordering::Relaxed);
    }

    pub fn final_of(&self, call: usize) -> Option<Final> {
        let v = self.finals.get(call)?.load(Ordering::Relaxed);
        (v != 0).then_some(Final {
            status: (v & 0xffff) as u16,
            retry_after: v >> 16 != 0,
        })
    }

    /// From `call`'s first INVITE to its first final response.
    pub fn answered_in(&self, call: usize) -> Option<Duration> {
        let sent = self.get(call, Stamp::InviteSent)?;
        Some(Duration::from_nanos(
            self.get(call, Stamp::FinalArrived)?.checked_sub(sent)?,
        ))
    }

    /// When `call`'s INVITE was first sent, since the epoch.
    pub fn sent_at(&self, call: usize) -> Option<Duration> {
        self.get(call, Stamp::InviteSent).map(Duration::from_nanos)
    }

    fn get(&self, call: usize, stamp: Stamp) -> Option<u64> {
        let v = self.stamps.get(call)?[stamp as usize].load(Ordering::Relaxed);
        v.checked_sub(1)
    }

    /// Delays between two stamps, over the calls that have both.
    pub fn delays(&self, from: Stamp, to: Stamp) -> Vec<Duration> {
        (0..self.stamps.len())
            .filter_map(|c| {
                Some(Duration::from_nanos(
                    self.get(c, to)?.checked_sub(self.get(c, from)?)?,
                ))
            })
            .collect()
    }

    /// The millisecond (since the epoch) each call's INVITE was sent in.
    pub fn sent_ms(&self) -> Vec<u64> {
        (0..self.stamps.len())
            .filter_map(|c| Some(self.get(c, Stamp::InviteSent)? / 1_000_000))
            .collect()
    }
}

/// Index of the value below which a share `q` of `len` sorted values lie
/// (nearest rank); `len` > 0.
fn rank_index(q: f64, len: usize) -> usize {
    ((q * len as f64).ceil() as usize).clamp(1, len) - 1
}

/// The value below which a share `q` of the values lie (nearest rank).
pub fn percentile(values: &mut [Duration], q: f64) -> Option<Duration> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    Some(values[rank_index(q, values.len())])
}

/// How many events fell in each millisecond between the first and the last:
/// (p50, p99, max, share of milliseconds with none).
pub fn per_ms(ms: &[u64]) -> Option<(u64, u64, u64, f64)> {
    let (first, last) = (*ms.iter().min()?, *ms.iter().max()?);
    let mut counts = vec![0u64; (last - first + 1) as usize];
    for m in ms {
        counts[(m - first) as usize] += 1;
    }
    let empty = counts.iter().filter(|c| **c == 0).count() as f64 / counts.len() as f64;
    counts.sort_unstable();
    let at = |q: f64| counts[rank_index(q, counts.len())];
    Some((at(0.5), at(0.99), counts[counts.len() - 1], empty))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_stamp_wins_and_delays_pair_within_a_call() {
        let t = Timeline::new(3);
        let e = t.epoch();
        t.mark(0, Stamp::InviteSent, e + Duration::from_micros(100));
        t.mark(0, Stamp::InviteArrived, e + Duration::from_micros(350));
        t.mark(0, Stamp::InviteArrived, e + Duration::from_micros(900));
        t.mark(1, Stamp::InviteSent, e + Duration::from_micros(200));
        t.mark(7, Stamp::InviteSent, e);
        assert_eq!(
            t.delays(Stamp::InviteSent, Stamp::InviteArrived),
            vec![Duration::from_micros(250)]
        );
        assert_eq!(t.sent_ms(), vec![0, 0]);
    }

    #[test]
    fn the_first_final_of_a_call_is_kept() {
        let t = Timeline::new(2);
        assert_eq!(t.final_of(0), None);
        let shed = Final {
            status: 503,
            retry_after: true,
        };
        t.mark_final(0, shed);
        t.mark_final(
            0,
            Final {
                status: 200,
                retry_after: false,
            },
        );
        assert_eq!(t.final_of(0), Some(shed));
        assert_eq!(t.final_of(1), None);
        assert_eq!(t.final_of(9), None);
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&mut v, 0.5), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&mut v, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&mut [], 0.5), None);
    }

    #[test]
    fn per_ms_counts_bursts_and_gaps() {
        let (p50, p99, max, empty) = per_ms(&[10, 10, 10, 12, 13]).unwrap();
        assert_eq!((p50, p99, max), (1, 3, 3));
        assert!((empty - 0.25).abs() < 1e-9);
        assert!(per_ms(&[]).is_none());
    }
}
