//! The `escalator` binary: the host library assembled with its builtin
//! plugins ([`builtins`]), and its subcommands: `run` (serve a
//! configuration, reload on SIGHUP or the admin socket, drain on SIGTERM),
//! `demo` ([`demo`](mod@demo)), `check-policy`
//! ([`check_policy`](mod@check_policy)) and `admin` (the admin socket's
//! client).

mod builtins;
mod check_policy;
mod demo;

use anyhow::Context;
use clap::{Parser, Subcommand};
use escalator_host::admin::AdminCommand;
use escalator_host::config::Config;
use escalator_host::host::HostHandle;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

/// escalator: a SIP back-to-back user agent host with loadable plugins.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the host with a configuration file.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Self-contained demo on loopback: one call through the host, with its message ladder.
    Demo,
    /// Validate a policy file and show its decision for sample users.
    CheckPolicy {
        file: PathBuf,
        /// A user address to decide for (repeatable).
        #[arg(long = "user")]
        users: Vec<String>,
        /// The User-Agent those users' clients send.
        #[arg(long)]
        user_agent: Option<String>,
        /// Option tags those clients list in Supported (repeatable).
        #[arg(long)]
        supported: Vec<String>,
    },
    /// Send a command to a running host over its admin socket.
    Admin {
        /// The `admin.socket` of the host's configuration.
        #[arg(long, short)]
        socket: PathBuf,
        /// `reload` (re-read the configuration and reload plugins) or `status`.
        command: String,
    },
}

/// A message is allocated on the thread that parsed it and freed on the one
/// that handled it; glibc's malloc serialises that on its arena locks
/// (7 % of the host's CPU in futex calls at 3000 calls/s). jemalloc cut the
/// per-hop p99 by about a fifth and kept memory per call under 4 KiB
/// (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    match cli.command.unwrap_or(Command::Demo) {
        Command::Run { config } => rt.block_on(run(config)),
        Command::Demo => rt.block_on(demo()),
        Command::Admin { socket, command } => rt.block_on(admin(socket, command)),
        Command::CheckPolicy {
            file,
            users,
            user_agent,
            supported,
        } => check_policy(file, users, user_agent, supported),
    }
}

fn check_policy(
    file: PathBuf,
    users: Vec<String>,
    user_agent: Option<String>,
    supported: Vec<String>,
) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let sample = check_policy::Sample {
        users,
        user_agent,
        supported,
    };
    let report = check_policy::report(&file.display().to_string(), &text, &sample)
        .map_err(anyhow::Error::msg)?;
    print!("{report}");
    Ok(())
}

async fn admin(socket: PathBuf, command: String) -> anyhow::Result<()> {
    let cmd = AdminCommand::parse(&command).map_err(anyhow::Error::msg)?;
    let reply = escalator_host::admin::request(&socket, cmd)
        .await
        .with_context(|| format!("talking to {}", socket.display()))?;
    println!("{reply}");
    if reply.starts_with("error") {
        anyhow::bail!("the host refused the command");
    }
    Ok(())
}

/// Re-read the configuration file and reload the plugins it lists. Other
/// settings (listen addresses, core, timers) take effect only on restart.
async fn reload(path: &Path, host: &HostHandle) -> String {
    let outcome = async {
        let cfg = Config::load(path)?;
        host.reload_plugins(&cfg.plugins).await
    }
    .await;
    match outcome {
        Ok(generation) => {
            tracing::info!(generation, "plugins reloaded");
            format!("reloaded: plugin generation {generation}")
        }
        Err(e) => {
            tracing::error!(
                error = format!("{e:#}"),
                "reload refused; the running plugins stay"
            );
            format!("error: {e:#}")
        }
    }
}

async fn run(path: PathBuf) -> anyhow::Result<()> {
    let cfg = Config::load(&path).with_context(|| format!("loading {}", path.display()))?;
    escalator_host::logging::init(&cfg.log.format, &cfg.log.level);
    if let Some(addr) = cfg.metrics.listen {
        escalator_host::metrics::install_exporter(addr)?;
        tracing::info!(%addr, "prometheus endpoint listening");
    }
    let host = escalator_host::host::start_with(&cfg, builtins::all()).await?;
    let (admin_tx, mut admin_rx) = mpsc::channel(8);
    if let Some(socket) = &cfg.admin.socket {
        escalator_host::admin::serve(socket, admin_tx)
            .with_context(|| format!("admin socket {}", socket.display()))?;
        tracing::info!(socket = %socket.display(), "admin socket listening");
    }
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading plugins");
                reload(&path, &host).await;
            }
            Some((cmd, reply)) = admin_rx.recv() => {
                let answer = match cmd {
                    AdminCommand::Reload => reload(&path, &host).await,
                    AdminCommand::Status => host.status().await.unwrap_or_else(|e| format!("error: {e}")),
                };
                let _ = reply.send(answer);
            }
        }
    }
    if let Some(socket) = &cfg.admin.socket {
        let _ = std::fs::remove_file(socket);
    }
    tracing::info!(grace_ms = cfg.shutdown.grace_ms, "shutting down");
    host.shutdown(Duration::from_millis(cfg.shutdown.grace_ms))
        .await;
    tracing::info!("stopped");
    Ok(())
}

async fn demo() -> anyhow::Result<()> {
    escalator_host::logging::init("human", "warn");
    let report = demo::run().await?;
    println!(
        "escalator demo: a legacy client's 1-to-1 chat escalated to an ad-hoc group, on loopback"
    );
    println!("alice: legacy IM client; escalator: this host with the escalation plugin;");
    println!("core: the operator side, where bob's client and the conference focus answer\n");
    print!("{}", report.ladder);
    println!("\nThe conference INVITE the host sent on alice's behalf, as the core received it:\n");
    println!("{}", report.conference_invite.replace("\r\n", "\n"));
    Ok(())
}
