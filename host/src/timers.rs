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

    /// The next expired key; pending forever while the queue is empty, so it
    /// can sit in a `select!` beside other sources.
    pub async fn expired(&mut self) -> K {
        loop {
            if self.queue.is_empty() {
                std::future::pending::<()>().await;
            }
            if let Some(exp) = poll_fn(|cx| self.queue.poll_expired(cx)).await {
                return exp.into_inner();
            }
        }
    }
}
