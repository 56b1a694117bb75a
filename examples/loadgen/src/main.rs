//! `escalator-loadgen`: paced calls through a target, timed per hop.
//! Flood mode (`--flood SECONDS`): see `flood.rs`.
//! Example (the host on 127.0.0.2:5060 with its core at 127.0.0.3:5080):
//!   escalator-loadgen --target 127.0.0.2:5060 --server 127.0.0.3:5080 --rate 2750 --calls 11000

use anyhow::Context;
use clap::Parser;
use escalator_loadgen::flood::FloodSettings;
use escalator_loadgen::record::{per_ms, percentile};
use escalator_loadgen::schedule::Arrivals;
use escalator_loadgen::{run, Settings};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "Paced SIP calls (INVITE, 200, ACK, BYE, 200) over UDP, timed per hop")]
struct Args {
    /// Where the calls go: the host, a proxy, or --server itself for a baseline.
    #[arg(long)]
    target: SocketAddr,
    /// The client's address.
    #[arg(long, default_value = "127.0.0.1:0")]
    client: SocketAddr,
    /// Also answer calls at this address (the target's next hop).
    #[arg(long)]
    server: Option<SocketAddr>,
    /// New calls per second.
    #[arg(long)]
    rate: f64,
    /// Number of calls.
    #[arg(long)]
    calls: usize,
    /// How calls are spread: even or poisson.
    #[arg(long, default_value = "poisson")]
    arrivals: Arrivals,
    /// Seed of the Poisson schedule.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds to wait for calls still in progress after the last one started.
    #[arg(long, default_value_t = 40)]
    linger: u64,
    /// Flood mode: new calls at --rate for this many seconds (evenly), then
    /// at --after-rate for --after seconds, while one established call sends
    /// a MESSAGE every --probe-ms; --server is required, --calls ignored.
    #[arg(long, value_name = "SECONDS")]
    flood: Option<f64>,
    #[arg(long, default_value_t = 100.0)]
    after_rate: f64,
    #[arg(long, default_value_t = 3.0, value_name = "SECONDS")]
    after: f64,
    #[arg(long, default_value_t = 100)]
    probe_ms: u64,
}

fn flood(args: &Args, seconds: f64) -> anyhow::Result<ExitCode> {
    let server = args.server.context("--flood needs --server")?;
    let r = escalator_loadgen::flood::flood(&FloodSettings {
        target: args.target,
        server,
        rate: args.rate,
        duration: Duration::from_secs_f64(seconds),
        after_rate: args.after_rate,
        after: Duration::from_secs_f64(args.after),
        probe_every: Duration::from_millis(args.probe_ms),
        linger: Duration::from_secs(args.linger),
    })
    .with_context(|| format!("flood against {}", args.target))?;
    let f = r.flood;
    println!(
        "loadgen: flood of {} new calls at {}/s for {seconds} s: {} relayed ({:.0}/s), {} shed 503+Retry-After, \
         {} other final, {} unanswered: {:.1} % answered, {:.1} % within 1 s",
        f.sent,
        args.rate,
        f.relayed,
        r.relayed_per_s,
        f.shed,
        f.other,
        f.unanswered,
        f.answered_share() * 100.0,
        f.answered_in_1s_share() * 100.0
    );
    let a = r.after;
    println!(
        "loadgen: after it, {} new calls at {}/s: {} relayed, {} shed, {} other, {} unanswered; \
         every call relayed from {} after the flood",
        a.sent,
        args.after_rate,
        a.relayed,
        a.shed,
        a.other,
        a.unanswered,
        r.recovered_after.map_or("never".to_string(), |d| format!(
            "{:.0} ms",
            d.as_secs_f64() * 1000.0
        )),
    );
    let ok = r.probes.iter().filter(|p| p.status == Some(200)).count();
    let retransmitted = r.probes.iter().filter(|p| p.sends > 1).count();
    let mut took: Vec<Duration> = r.probes.iter().filter_map(|p| p.took).collect();
    let (p50, max) = (
        ms(percentile(&mut took, 0.5)),
        ms(took.iter().max().copied()),
    );
    println!(
        "loadgen: established call: {} MESSAGEs, {ok} answered 200, {retransmitted} retransmitted; \
         answer p50 {p50:.1} ms, max {max:.1} ms",
        r.probes.len()
    );
    println!(
        "result flood_sent={} relayed={} shed={} other={} unanswered={} answered_pct={:.2} answered_1s_pct={:.2} relayed_per_s={:.0} \
         probes={} probes_ok={ok} probes_retransmitted={retransmitted} probe_p50_ms={p50:.2} probe_max_ms={max:.2} \
         recovered_ms={}",
        f.sent,
        f.relayed,
        f.shed,
        f.other,
        f.unanswered,
        f.answered_share() * 100.0,
        f.answered_in_1s_share() * 100.0,
        r.relayed_per_s,
        r.probes.len(),
        r.recovered_after
            .map_or("none".to_string(), |d| format!("{:.0}", d.as_secs_f64() * 1000.0)),
    );
    Ok(ExitCode::SUCCESS)
}

fn ms(d: Option<Duration>) -> f64 {
    d.map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}

fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    if let Some(seconds) = args.flood {
        return flood(&args, seconds);
    }
    let report = run(&Settings {
        target: args.target,
        client: args.client,
        server: args.server,
        rate: args.rate,
        calls: args.calls,
        arrivals: args.arrivals,
        seed: args.seed,
        linger: Duration::from_secs(args.linger),
    })
    .with_context(|| format!("load run against {}", args.target))?;
    println!(
        "loadgen: {} calls at {}/s ({:?}): {} successful, {} failed, {:.1} s",
        args.calls,
        args.rate,
        args.arrivals,
        report.successful,
        report.failed,
        report.elapsed.as_secs_f64()
    );
    if let Some((p50, p99, max, empty)) = per_ms(&report.timeline.sent_ms()) {
        println!(
            "loadgen: new calls per ms p50 {p50}, p99 {p99}, max {max}; {:.0} % of ms with none",
            empty * 100.0
        );
    }
    let mut hops = report.invite_hop();
    hops.extend(report.ok_hop());
    let mut setup = report.setup();
    let (p50, p99) = (
        ms(percentile(&mut hops, 0.5)),
        ms(percentile(&mut hops, 0.99)),
    );
    println!(
        "loadgen: client -> server and back through the target, per hop: p50 {p50:.3} ms, p99 {p99:.3} ms \
         ({} hops); INVITE to 200: p50 {:.3} ms, p99 {:.3} ms",
        hops.len(),
        ms(percentile(&mut setup, 0.5)),
        ms(percentile(&mut setup, 0.99)),
    );
    println!(
        "result successful={} failed={} hop_p50_ms={p50:.3} hop_p99_ms={p99:.3}",
        report.successful, report.failed
    );
    Ok(if report.failed == 0 && report.successful == args.calls {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
