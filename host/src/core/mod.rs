//! The shard task: one per shard of the calls (see [`crate::shard`]). It is
//! I/O plumbing only: it reads what the transport delivers, the timers that
//! fire and control commands, hands them to the shard's [`B2bua`] logic (on
//! top of its [`crate::entities`]), and sends what comes out.

use crate::entities::ids::ClientTxId;
use crate::entities::EntitySettings;
use crate::logic::{B2bua, LogicSettings};
use crate::metrics as m;
use crate::plugins::PluginSet;
use crate::routing::Router;
use crate::transaction::TimerConfig;
use crate::transport::{Inbound, LaneReceivers, Transport, TransportEvent};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tracing::info;

#[derive(Clone)]
pub struct CoreSettings {
    pub timers: TimerConfig,
    pub timer_c: Duration,
    pub router: Router,
    pub max_calls: usize,
    pub replaces_from_clients: bool,
    pub pins: Arc<crate::shard::Pins>,
    pub shed_after: Option<Duration>,
}

/// Live counts over all shards, readable from outside the core (tests,
/// admin, the memory trimmer). Each shard writes its own slot.
#[derive(Debug)]
pub struct Stats {
    shards: Vec<ShardStats>,
}

#[derive(Debug, Default)]
struct ShardStats {
    calls: AtomicUsize,
    legs: AtomicUsize,
    transactions: AtomicUsize,
}

impl Stats {
    pub fn new(shards: usize) -> Stats {
        Stats {
            shards: (0..shards.max(1)).map(|_| ShardStats::default()).collect(),
        }
    }

    fn sum(&self, field: impl Fn(&ShardStats) -> &AtomicUsize) -> usize {
        self.shards
            .iter()
            .map(|s| field(s).load(Ordering::Relaxed))
            .sum()
    }

    pub fn calls(&self) -> usize {
        self.sum(|s| &s.calls)
    }
    pub fn legs(&self) -> usize {
        self.sum(|s| &s.legs)
    }
    pub fn transactions(&self) -> usize {
        self.sum(|s| &s.transactions)
    }
    /// Active calls of each shard, in shard order.
    pub fn calls_per_shard(&self) -> Vec<usize> {
        self.shards
            .iter()
            .map(|s| s.calls.load(Ordering::Relaxed))
            .collect()
    }
}

/// Which shard a core is, of how many.
#[derive(Debug, Clone, Copy)]
pub struct ShardSlot {
    pub index: usize,
    pub count: usize,
}

/// One shard's answer to [`Control::Status`].
#[derive(Debug, Clone)]
pub struct ShardStatus {
    pub calls: usize,
    pub transactions: usize,
    pub draining: bool,
    pub plugin_generation: u64,
    /// `name/version`, with ` (disabled)` where it applies.
    pub plugins: Vec<String>,
}

pub enum Control {
    /// Refuse new calls, let transactions finish (bounded by `grace`), then
    /// say so on `done`. The shard keeps answering (new calls get 503) until
    /// [`Control::Stop`]: other shards may still be finishing their calls.
    Drain {
        grace: Duration,
        done: oneshot::Sender<()>,
    },
    /// New calls use this plugin set; calls in progress keep theirs.
    ReplacePlugins(Arc<PluginSet>),
    /// End the task.
    Stop,
    /// What the shard holds (admin status).
    Status(oneshot::Sender<ShardStatus>),
}

pub struct Core {
    logic: B2bua,
    transport: Transport,
    shard: ShardSlot,
    stats: Arc<Stats>,
}

impl Core {
    pub fn new(
        settings: CoreSettings,
        transport: Transport,
        stats: Arc<Stats>,
        plugins: Arc<PluginSet>,
        shard: ShardSlot,
    ) -> Self {
        let entity_settings = EntitySettings {
            timers: settings.timers,
            timer_c: settings.timer_c,
        };
        let logic_settings = LogicSettings {
            router: settings.router,
            max_calls: settings.max_calls,
            replaces_from_clients: settings.replaces_from_clients,
            pins: settings.pins,
            shed_after: settings.shed_after,
        };
        let everywhere = stats.clone();
        let logic = B2bua::new(
            entity_settings,
            logic_settings,
            transport.local_addrs(),
            plugins,
            (shard.index, shard.count),
            Arc::new(move || everywhere.calls()),
        );
        Core {
            logic,
            transport,
            shard,
            stats,
        }
    }

    pub async fn run(mut self, lanes: LaneReceivers, mut control: mpsc::Receiver<Control>) {
        let LaneReceivers {
            dialog: mut in_dialog,
            new: mut fresh,
            wait,
        } = lanes;
        let mut drain: Option<(tokio::time::Instant, oneshot::Sender<()>)> = None;
        loop {
            if let Some((deadline, _)) = &drain {
                let idle = self.logic.entities().is_idle();
                if idle || tokio::time::Instant::now() >= *deadline {
                    if !idle {
                        info!(
                            transactions = self.logic.entities().transaction_count(),
                            "shutdown grace period over with transactions still open"
                        );
                    }
                    if let Some((_, done)) = drain.take() {
                        let _ = done.send(());
                    }
                }
            }
            // Calls in progress first: whatever waits in their lane is
            // handled before anything else (see `transport/inbox.rs`);
            // then timers, control and new requests, in turn.
            if let Ok(ev) = in_dialog.try_recv() {
                self.on_event(ev);
                self.flush();
                self.publish_stats();
                continue;
            }
            tokio::select! {
                ev = in_dialog.recv() => match ev {
                    Some(ev) => self.on_event(ev),
                    None => return,
                },
                key = self.logic.entities_mut().next_timer() => self.guarded("timer", |l| l.handle_timer(key)),
                c = control.recv() => match c {
                    Some(Control::Drain { grace, done }) => {
                        info!(shard = self.shard.index, calls = self.logic.entities().calls().call_count(), "draining: refusing new calls");
                        self.logic.drain();
                        drain = Some((tokio::time::Instant::now() + grace, done));
                    }
                    Some(Control::ReplacePlugins(set)) => {
                        if self.shard.index == 0 {
                            info!(generation = set.generation, plugins = set.plugins.len(), "plugin set replaced; calls in progress keep theirs");
                        }
                        metrics::gauge!(m::PLUGIN_GENERATION).set(set.generation as f64);
                        self.logic.replace_plugins(set);
                    }
                    Some(Control::Stop) | None => return,
                    Some(Control::Status(reply)) => {
                        let _ = reply.send(self.status());
                    }
                },
                ev = fresh.recv() => match ev {
                    Some(ev) => {
                        if let TransportEvent::Inbound(i) = &ev {
                            wait.note(i.received.elapsed());
                        }
                        self.on_event(ev)
                    }
                    None => return,
                },
                _ = tokio::time::sleep(Duration::from_millis(200)), if drain.is_some() => {}
            }
            self.flush();
            self.publish_stats();
        }
    }

    fn on_event(&mut self, ev: TransportEvent) {
        match ev {
            TransportEvent::Inbound(i) => self.guarded("inbound", |l| on_inbound(l, i)),
            TransportEvent::SendFailed { target, token } => self.guarded("send failure", |l| {
                l.handle_send_failed(&target, token.map(ClientTxId))
            }),
        }
    }

    /// Run one event handler; a bug that panics costs that event, not every
    /// call on the host.
    fn guarded(&mut self, what: &str, handler: impl FnOnce(&mut B2bua)) {
        let logic = &mut self.logic;
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(logic)));
        if let Err(panic) = outcome {
            let text = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(event = what, panic = %text, "core handler panicked; event dropped");
            metrics::counter!(m::CORE_PANICS).increment(1);
        }
    }

    /// Send what the logic and entities produced.
    fn flush(&mut self) {
        while let Some(t) = self.logic.entities_mut().poll_transmit() {
            self.transport
                .send(&t.target, t.bytes, t.token.map(|c| c.0));
        }
    }

    fn publish_stats(&self) {
        let Some(mine) = self.stats.shards.get(self.shard.index) else {
            return;
        };
        let entities = self.logic.entities();
        mine.calls
            .store(entities.calls().call_count(), Ordering::Relaxed);
        mine.legs
            .store(entities.calls().leg_count(), Ordering::Relaxed);
        mine.transactions
            .store(entities.transaction_count(), Ordering::Relaxed);
        metrics::gauge!(m::CALLS_ACTIVE).set(self.stats.calls() as f64);
        metrics::gauge!(m::TRANSACTIONS_ACTIVE).set(self.stats.transactions() as f64);
    }

    fn status(&self) -> ShardStatus {
        let set = self.logic.plugins();
        let plugins = set
            .plugins
            .iter()
            .map(|p| {
                format!(
                    "{}/{}{}",
                    p.name,
                    p.version,
                    if p.is_disabled() { " (disabled)" } else { "" }
                )
            })
            .collect();
        ShardStatus {
            calls: self.logic.entities().calls().call_count(),
            transactions: self.logic.entities().transaction_count(),
            draining: self.logic.is_draining(),
            plugin_generation: set.generation,
            plugins,
        }
    }
}

fn on_inbound(logic: &mut B2bua, inbound: Inbound) {
    let Inbound {
        source,
        message,
        received,
        ..
    } = inbound;
    logic.handle_inbound_waited(source, message, received.elapsed());
    metrics::histogram!(m::INBOUND_HANDLING).record(received.elapsed().as_secs_f64());
}
