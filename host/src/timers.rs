//! A queue of keyed timers on the tokio clock, polled by the core loop.

use std::future::poll_fn;
use std::time::Duration;
use tokio_util::time::DelayQueue;

pub struct TimerQueue<K> {
    queue: DelayQueue<K>,
}

impl<K> Default for TimerQueue<K> {
    fn default() -> Self {
        Self {
            queue: DelayQueue::new(),
        }
    }
}

impl<K> TimerQueue<K> {
    pub fn schedule(&mut self, key: K, after: Duration) {
        self.queue.insert(key, after);
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The queue's storage keeps its peak size unless compacted (see
    /// [`crate::compaction`]); keys are never held outside, so moving entries is safe.
    fn compact_if_sparse(&mut self) {
        if crate::compaction::is_sparse(self.queue.len(), self.queue.capacity()) {
            self.queue.compact();
        }
    }

    /// The next expired key; pending forever while the queue is empty, so it
    /// can sit in a `select!` beside other sources.
    pub async fn expired(&mut self) -> K {
        loop {
            if self.queue.is_empty() {
                std::future::pending::<()>().await;
            }
            if let Some(exp) = poll_fn(|cx| self.queue.poll_expired(cx)).await {
                self.compact_if_sparse();
                return exp.into_inner();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn storage_is_given_back_once_most_timers_have_fired() {
        let mut q = TimerQueue::default();
        for i in 0..10_000u32 {
            q.schedule(i, Duration::from_millis(1 + u64::from(i % 10)));
        }
        q.schedule(u32::MAX, Duration::from_secs(60));
        let peak = q.queue.capacity();
        let mut fired = Vec::new();
        for _ in 0..10_000 {
            fired.push(q.expired().await);
        }
        fired.sort_unstable();
        assert_eq!(
            fired,
            (0..10_000).collect::<Vec<_>>(),
            "every timer fired once"
        );
        assert!(
            q.queue.capacity() < peak / 4,
            "{} of {peak}",
            q.queue.capacity()
        );
        assert_eq!(
            q.expired().await,
            u32::MAX,
            "the late timer survives compaction"
        );
    }
}
