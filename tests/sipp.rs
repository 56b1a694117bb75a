//! Interop with SIPp (Debian package sip-tester), a peer we did not write:
//! SIPp's built-in `uac` scenario calls through the host to SIPp's `uas`.
//! Client side on 127.0.0.1, host on 127.0.0.2, core (uas) on 127.0.0.3.

use escalator_host::config::{Config, PluginConfig};
use escalator_host::host;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

const CALLS: u32 = 500;

fn sipp() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("sipp"))
            .find(|p| p.is_file())
    });
    found.expect("sipp not found: install it with `apt-get install -y sip-tester` (.ci/run does)")
}

/// A port free for both UDP and TCP on `ip`, for SIPp to bind. Ports are
/// handed out once per process, so tests running in parallel never share one.
fn free_port(ip: &str) -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let udp = std::net::UdpSocket::bind((ip, 0)).expect("bind udp");
        let port = udp.local_addr().expect("addr").port();
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) && std::net::TcpListener::bind((ip, port)).is_ok() {
            given.push(port);
            return port;
        }
    }
}

struct Outcome {
    successful: u64,
    failed: u64,
    reloads: usize,
    exit_ok: bool,
    log: String,
}

/// Read SuccessfulCall(C) and FailedCall(C) from the last line of SIPp's stats CSV.
fn read_stats(path: &std::path::Path) -> (u64, u64) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(';').collect();
    let last: Vec<&str> = lines.last().unwrap_or_default().split(';').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .and_then(|i| last.get(i))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (col("SuccessfulCall(C)"), col("FailedCall(C)"))
}

/// SIPp uac → host → SIPp uas. With `reload_every`, the host's plugins are
/// reloaded that often while the calls run.
async fn run_load(
    label: &str,
    transport: &str,
    plugins: Vec<PluginConfig>,
    reload_every: Option<Duration>,
) -> Outcome {
    let dir = std::env::temp_dir().join(format!("escalator-sipp-{label}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let uas_port = free_port("127.0.0.3");
    let uac_port = free_port("127.0.0.1");
    let mode = if transport == "tcp" { "t1" } else { "u1" };

    let mut cfg = Config::default();
    // The host binds port 0; SIPp is told the port it got.
    let any: SocketAddr = ([127, 0, 0, 2], 0).into();
    cfg.listen.udp = vec![any];
    cfg.listen.tcp = vec![any];
    cfg.core.address = ([127, 0, 0, 3], uas_port).into();
    cfg.core.transport = transport.into();
    cfg.core.sources = vec!["127.0.0.3".into()];
    cfg.plugins = plugins.clone();
    // The escalation plugin is linked in, as the `escalator` binary links it.
    let builtins = escalator_host::plugins::Builtins::none()
        .with("escalation", escalator_escalation::escalator_plugin_entry);
    let host = host::start_with(&cfg, builtins).await.expect("start host");
    let host_addr = if transport == "tcp" {
        host.tcp_addr()
    } else {
        host.udp_addr()
    }
    .expect("host address");

    let mut uas = Command::new(sipp())
        .args(["-sn", "uas", "-i", "127.0.0.3", "-p", &uas_port.to_string()])
        .args(["-t", mode, "-nostdin", "-m", &CALLS.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start sipp uas");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let stats = dir.join("uac_stats.csv");
    let uac = Command::new(sipp())
        .arg(host_addr.to_string())
        .args(["-sn", "uac", "-i", "127.0.0.1", "-p", &uac_port.to_string()])
        .args(["-t", mode, "-nostdin", "-m", &CALLS.to_string()])
        .args([
            "-r",
            "100",
            "-l",
            "200",
            "-timeout",
            "60s",
            "-timeout_error",
        ])
        .args(["-trace_stat", "-fd", "1", "-stf"])
        .arg(&stats)
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let mut uac = std::pin::pin!(tokio::time::timeout(Duration::from_secs(90), uac));
    let mut reloads = 0;
    let out = loop {
        tokio::select! {
            out = &mut uac => break out.expect("sipp uac finished in time").expect("run sipp uac"),
            _ = tokio::time::sleep(reload_every.unwrap_or(Duration::from_secs(3600))) => {
                host.reload_plugins(&plugins).await.expect("reload under load");
                reloads += 1;
            }
        }
    };
    let _ = uas.kill().await;
    host.shutdown(Duration::from_millis(100)).await;
    let (successful, failed) = read_stats(&stats);
    Outcome {
        successful,
        failed,
        reloads,
        exit_ok: out.status.success(),
        log: format!(
            "exit {:?}\n{}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout)
                .chars()
                .rev()
                .take(3000)
                .collect::<String>()
                .chars()
                .rev()
                .collect::<String>(),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn assert_all_succeeded(o: &Outcome) {
    assert!(o.exit_ok, "sipp uac reported failure:\n{}", o.log);
    assert_eq!(o.failed, 0, "{}", o.log);
    assert_eq!(o.successful, CALLS as u64, "{}", o.log);
}

async fn assert_all_calls_succeed(transport: &str) {
    let o = run_load(transport, transport, vec![], None).await;
    assert_all_succeeded(&o);
    println!(
        "sipp {transport}: {} successful, {} failed",
        o.successful, o.failed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_uac_to_uas_through_the_host_over_udp() {
    assert_all_calls_succeed("udp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_uac_to_uas_through_the_host_over_tcp() {
    assert_all_calls_succeed("tcp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_reloads_under_load_drop_no_call() {
    // The escalation plugin sees every request of the run; its policy and
    // instance are replaced every 300 ms while calls are set up and torn down.
    let policy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/default.toml");
    let plugin = PluginConfig {
        path: "builtin:escalation".into(),
        failure_threshold: 10,
        config: format!("policy = {:?}", policy.display().to_string())
            .parse()
            .expect("toml"),
    };
    let o = run_load(
        "reload",
        "udp",
        vec![plugin],
        Some(Duration::from_millis(300)),
    )
    .await;
    assert_all_succeeded(&o);
    assert!(o.reloads >= 5, "only {} reloads during the run", o.reloads);
    println!(
        "sipp with {} plugin reloads: {} successful, {} failed",
        o.reloads, o.successful, o.failed
    );
}
