//! Starting and stopping a host: transports, the core's shards, their
//! control channels, and the builtin plugins it was given (kept so reloads
//! resolve `builtin:NAME` as the first load did).

use crate::config::Config;
use crate::core::{Control, Core, CoreSettings, ShardSlot, ShardStatus, Stats};
use crate::plugins::{Builtins, PluginSet};
use crate::routing::Router;
use crate::transport::{CoreInbox, Transport};
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub struct HostHandle {
    transport: Transport,
    /// One per shard, in shard order.
    control: Vec<mpsc::Sender<Control>>,
    /// Each shard runs on a thread of its own (see [`spawn_shard`]).
    shards: Vec<std::thread::JoinHandle<()>>,
    trimmer: Option<JoinHandle<()>>,
    /// The builtin plugins of the binary, for reloads.
    builtins: Builtins,
    pub stats: Arc<Stats>,
}

/// Bind the configured addresses and start the core, with no builtin
/// plugins: every configured plugin is a shared library.
pub async fn start(cfg: &Config) -> anyhow::Result<HostHandle> {
    start_with(cfg, Builtins::none()).await
}

/// Bind the configured addresses and start the core; `builtin:NAME` plugins
/// (now and on every reload) are looked up in `builtins`.
pub async fn start_with(cfg: &Config, builtins: Builtins) -> anyhow::Result<HostHandle> {
    cfg.validate()?;
    let count = cfg.shard_count();
    let (queues, inboxes): (Vec<_>, Vec<_>) = (0..count)
        .map(|_| crate::transport::lanes(16 * 1024 / count.min(16), cfg.limits.new_request_queue))
        .unzip();
    let pins = Arc::new(crate::shard::Pins::default());
    let shed_after =
        (cfg.limits.shed_after_ms > 0).then(|| Duration::from_millis(cfg.limits.shed_after_ms));
    let transport = Transport::bind(
        &cfg.listen.udp,
        &cfg.listen.tcp,
        cfg.transport_limits(),
        CoreInbox::sharded(
            queues,
            pins.clone(),
            cfg.limits.new_request_queue > 0,
            shed_after,
        ),
    )
    .await
    .context("starting transports")?;
    let settings = CoreSettings {
        timers: cfg.timer_config(),
        timer_c: cfg.timer_c(),
        router: Router {
            core: cfg.core_target(),
            sources: cfg.core_sources()?,
        },
        max_calls: cfg.limits.max_calls,
        replaces_from_clients: cfg.core.replaces_from_clients,
        pins,
        shed_after,
    };
    let stats = Arc::new(Stats::new(count));
    let plugins = Arc::new(PluginSet::load(&cfg.plugins, &builtins).context("loading plugins")?);
    let mut control = Vec::with_capacity(count);
    let mut shards = Vec::with_capacity(count);
    for (index, inbox) in inboxes.into_iter().enumerate() {
        let slot = ShardSlot { index, count };
        let core = Core::new(
            settings.clone(),
            transport.clone(),
            stats.clone(),
            plugins.clone(),
            slot,
        );
        let (tx, rx) = mpsc::channel(4);
        control.push(tx);
        shards.push(spawn_shard(index, core, inbox, rx)?);
    }
    let trimmer = (cfg.memory.trim_check_ms > 0).then(|| {
        let every = Duration::from_millis(cfg.memory.trim_check_ms);
        tokio::spawn(crate::memory::trim_after_bursts(stats.clone(), every))
    });
    tracing::info!(udp = ?transport.udp_addrs(), tcp = ?transport.tcp_addrs(), core = %cfg.core_target(), shards = count, "host started");
    Ok(HostHandle {
        transport,
        control,
        shards,
        trimmer,
        builtins,
        stats,
    })
}

/// A shard on a thread of its own, with a single-threaded runtime (its
/// timers and channels). A shard woken by a receive loop then runs at once
/// on its own thread: as a task of the shared runtime it was woken into the
/// receive loop's worker (tokio's "LIFO slot", which other workers do not
/// steal) and waited there until the loop yielded, so one busy peer's loop
/// and the shards it fed shared one CPU (BENCHMARKS.md). The thread logs to
/// the subscriber of whoever started the host.
fn spawn_shard(
    index: usize,
    core: Core,
    inbox: crate::transport::LaneReceivers,
    control: mpsc::Receiver<Control>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let dispatch = tracing::dispatcher::get_default(|d| d.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a shard's runtime")?;
    std::thread::Builder::new()
        .name(format!("escalator-shard-{index}"))
        .spawn(move || {
            let _log = tracing::dispatcher::set_default(&dispatch);
            runtime.block_on(core.run(inbox, control));
        })
        .context("starting a shard's thread")
}

impl HostHandle {
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.transport.udp_addrs().first().copied()
    }

    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.transport.tcp_addrs().first().copied()
    }

    /// Refuse new calls, let open transactions finish within `grace`, stop.
    pub async fn shutdown(self, grace: Duration) {
        for wait in self.begin_drain_all(grace).await {
            let _ = wait.await;
        }
        for shard in &self.control {
            let _ = shard.send(Control::Stop).await;
        }
        self.transport.shutdown();
        if let Some(t) = &self.trimmer {
            t.abort();
        }
        for shard in self.shards {
            let _ = tokio::task::spawn_blocking(move || shard.join()).await;
        }
    }

    /// Load the configured plugins afresh (builtins from the registry the
    /// host was started with); new calls use them, calls in progress keep
    /// the instances they started with. A set that fails to load is refused
    /// and the running one kept.
    pub async fn reload_plugins(
        &self,
        plugins: &[crate::config::PluginConfig],
    ) -> anyhow::Result<u64> {
        let set = Arc::new(PluginSet::load(plugins, &self.builtins)?);
        let generation = set.generation;
        for shard in &self.control {
            shard
                .send(Control::ReplacePlugins(set.clone()))
                .await
                .map_err(|_| anyhow::anyhow!("host is stopping"))?;
        }
        Ok(generation)
    }

    /// One line: calls, transactions, plugin generation and names, and the
    /// peers that flooded a UDP socket and read from one of their own.
    pub async fn status(&self) -> anyhow::Result<String> {
        let mut shards = Vec::with_capacity(self.control.len());
        for shard in &self.control {
            let (tx, rx) = oneshot::channel();
            shard
                .send(Control::Status(tx))
                .await
                .map_err(|_| anyhow::anyhow!("host is stopping"))?;
            shards.push(rx.await?);
        }
        status_line(&shards, &self.transport.isolated_peers())
            .ok_or_else(|| anyhow::anyhow!("host has no core shards"))
    }

    /// Start draining without waiting (new calls get 503); the receiver
    /// completes when every shard has finished.
    pub async fn begin_drain(&self, grace: Duration) -> oneshot::Receiver<()> {
        let waits = self.begin_drain_all(grace).await;
        let (done, wait) = oneshot::channel();
        tokio::spawn(async move {
            for w in waits {
                let _ = w.await;
            }
            let _ = done.send(());
        });
        wait
    }

    async fn begin_drain_all(&self, grace: Duration) -> Vec<oneshot::Receiver<()>> {
        let mut waits = Vec::with_capacity(self.control.len());
        for shard in &self.control {
            let (done, wait) = oneshot::channel();
            if shard.send(Control::Drain { grace, done }).await.is_ok() {
                waits.push(wait);
            }
        }
        waits
    }
}

/// The admin status line: counts summed over the shards; the plugin set is
/// the same on every shard, so the first one's is shown; `isolated`, the
/// peers on a UDP socket of their own (`transport/isolation.rs`), sorted.
fn status_line(shards: &[ShardStatus], isolated: &[std::net::SocketAddr]) -> Option<String> {
    let first = shards.first()?;
    let mut isolated = isolated.to_vec();
    isolated.sort();
    let isolated: Vec<String> = isolated.iter().map(|a| a.to_string()).collect();
    Some(format!(
        "calls={} transactions={} plugin_generation={} plugins=[{}] draining={} shards={} isolated=[{}]",
        shards.iter().map(|s| s.calls).sum::<usize>(),
        shards.iter().map(|s| s.transactions).sum::<usize>(),
        first.plugin_generation,
        first.plugins.join(","),
        shards.iter().any(|s| s.draining),
        shards.len(),
        isolated.join(","),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_sums_the_shards_and_names_the_isolated_peers() {
        let shard = |calls, draining| ShardStatus {
            calls,
            transactions: calls * 2,
            draining,
            plugin_generation: 3,
            plugins: vec!["escalation/0.1.0".into()],
        };
        let peers: Vec<std::net::SocketAddr> = vec![
            "127.0.0.9:5060".parse().expect("literal"),
            "127.0.0.1:5070".parse().expect("literal"),
        ];
        assert_eq!(
            status_line(&[shard(2, false), shard(3, true)], &peers).as_deref(),
            Some(
                "calls=5 transactions=10 plugin_generation=3 plugins=[escalation/0.1.0] \
                 draining=true shards=2 isolated=[127.0.0.1:5070,127.0.0.9:5060]"
            )
        );
        assert!(status_line(&[shard(0, false)], &[])
            .is_some_and(|l| l.ends_with("shards=1 isolated=[]")));
        assert_eq!(status_line(&[], &peers), None);
    }
}
