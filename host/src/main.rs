use anyhow::Context;
use clap::{Parser, Subcommand};
use escalator_host::config::Config;
use std::path::PathBuf;
use std::time::Duration;

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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    match cli.command.unwrap_or(Command::Demo) {
        Command::Run { config } => rt.block_on(run(config)),
        Command::Demo => rt.block_on(demo()),
    }
}

async fn run(path: PathBuf) -> anyhow::Result<()> {
    let cfg = Config::load(&path).with_context(|| format!("loading {}", path.display()))?;
    escalator_host::logging::init(&cfg.log.format, &cfg.log.level);
    if let Some(addr) = cfg.metrics.listen {
        escalator_host::metrics::install_exporter(addr)?;
        tracing::info!(%addr, "prometheus endpoint listening");
    }
    let host = escalator_host::host::start(&cfg).await?;
    wait_for_termination().await;
    tracing::info!(grace_ms = cfg.shutdown.grace_ms, "shutting down");
    host.shutdown(Duration::from_millis(cfg.shutdown.grace_ms))
        .await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn demo() -> anyhow::Result<()> {
    escalator_host::logging::init("human", "warn");
    let report = escalator_host::demo::run().await?;
    println!("escalator demo: one call alice -> escalator (B2BUA) -> bob on loopback\n");
    print!("{}", report.ladder);
    println!("\ncall completed: INVITE/180/200/ACK, MESSAGE in dialog, BYE from bob.");
    Ok(())
}
