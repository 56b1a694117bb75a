//! Starting and stopping a host: transports, core task, control channel.

use crate::config::Config;
use crate::core::{Control, Core, CoreSettings, Stats};
use crate::plugins::PluginSet;
use crate::routing::Router;
use crate::transport::Transport;
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub struct HostHandle {
    transport: Transport,
    control: mpsc::Sender<Control>,
    join: JoinHandle<()>,
    trimmer: Option<JoinHandle<()>>,
    pub stats: Arc<Stats>,
}

/// Bind the configured addresses and start the core.
pub async fn start(cfg: &Config) -> anyhow::Result<HostHandle> {
    cfg.validate()?;
    let (ev_tx, ev_rx) = mpsc::channel(16 * 1024);
    let transport = Transport::bind(
        &cfg.listen.udp,
        &cfg.listen.tcp,
        cfg.transport_limits(),
        ev_tx,
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
    };
    let stats = Arc::new(Stats::default());
    let (control, control_rx) = mpsc::channel(4);
    let plugins = Arc::new(PluginSet::load(&cfg.plugins).context("loading plugins")?);
    let core = Core::new(settings, transport.clone(), stats.clone(), plugins);
    let join = tokio::spawn(core.run(ev_rx, control_rx));
    let trimmer = (cfg.memory.trim_check_ms > 0).then(|| {
        let every = Duration::from_millis(cfg.memory.trim_check_ms);
        tokio::spawn(crate::memory::trim_after_bursts(stats.clone(), every))
    });
    tracing::info!(udp = ?transport.udp_addrs(), tcp = ?transport.tcp_addrs(), core = %cfg.core_target(), "host started");
    Ok(HostHandle {
        transport,
        control,
        join,
        trimmer,
        stats,
    })
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
        let (done, wait) = oneshot::channel();
        if self
            .control
            .send(Control::Drain { grace, done })
            .await
            .is_ok()
        {
            let _ = wait.await;
        }
        self.transport.shutdown();
        if let Some(t) = &self.trimmer {
            t.abort();
        }
        let _ = self.join.await;
    }

    /// Load the configured plugins afresh; new calls use them, calls in
    /// progress keep the instances they started with. A set that fails to
    /// load is refused and the running one kept.
    pub async fn reload_plugins(
        &self,
        plugins: &[crate::config::PluginConfig],
    ) -> anyhow::Result<u64> {
        let set = Arc::new(PluginSet::load(plugins)?);
        let generation = set.generation;
        self.control
            .send(Control::ReplacePlugins(set))
            .await
            .map_err(|_| anyhow::anyhow!("host is stopping"))?;
        Ok(generation)
    }

    /// One line: calls, transactions, plugin generation and names.
    pub async fn status(&self) -> anyhow::Result<String> {
        let (tx, rx) = oneshot::channel();
        self.control
            .send(Control::Status(tx))
            .await
            .map_err(|_| anyhow::anyhow!("host is stopping"))?;
        Ok(rx.await?)
    }

    /// Start draining without waiting (new calls get 503).
    pub async fn begin_drain(&self, grace: Duration) -> oneshot::Receiver<()> {
        let (done, wait) = oneshot::channel();
        let _ = self.control.send(Control::Drain { grace, done }).await;
        wait
    }
}
