//! Shared rig for end-to-end tests: a host between alice (client side) and
//! bob (standing in for the operator's core).

pub mod focus;
pub mod kamailio;
use escalator_host::config::Config;
use escalator_host::host::{self, HostHandle};
use escalator_host::sip::SipMessage;
use escalator_host::transport::Proto;
use escalator_testkit::ua::{Ladder, TestUa, UaDialog};
use std::net::SocketAddr;

pub const SDP_OFFER: &str = escalator_testkit::sdp::OFFER;
pub const SDP_ANSWER: &str = escalator_testkit::sdp::ANSWER;

pub struct Rig {
    pub host: HostHandle,
    pub alice: TestUa,
    pub bob: TestUa,
    /// Where alice sends (the host's address for alice's transport).
    pub host_for_alice: SocketAddr,
    pub ladder: Ladder,
}

/// The shared library of a plugin crate built as a dependency of this crate
/// (cargo puts it beside the test binaries).
pub fn plugin_lib(crate_name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("deps directory");
    let file = format!("lib{}.so", crate_name.replace('-', "_"));
    let path = deps.join(&file);
    assert!(path.is_file(), "{file} was not built next to the tests");
    path
}

/// A `[[plugins]]` entry with its config table parsed from TOML text.
pub fn plugin_config(
    crate_name: &str,
    config: &str,
    failure_threshold: u32,
) -> escalator_host::config::PluginConfig {
    escalator_host::config::PluginConfig {
        path: plugin_lib(crate_name),
        failure_threshold,
        config: config.parse().expect("plugin config is TOML"),
    }
}

/// The escalation plugin's `[[plugins]]` entry (answer timeout 5 s) with
/// `policy_text` written to a policy file of its own under the temporary
/// directory; returns the entry and the file's path (tests rewrite it).
pub fn escalation_plugin(
    policy_text: &str,
) -> (escalator_host::config::PluginConfig, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "escalator-e2e-{}-{}",
        std::process::id(),
        escalator_host::dialog::random_token(8)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("policy.toml");
    std::fs::write(&path, policy_text).expect("policy file");
    let plugin = plugin_config(
        "escalator-escalation",
        &format!("policy = \"{}\"\nanswer_timeout_ms = 5000", path.display()),
        10,
    );
    (plugin, path)
}

pub fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("literal address")
}

/// A free UDP address on loopback (bound once, then released).
pub fn free_udp_port() -> SocketAddr {
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind probe");
    probe.local_addr().expect("probe address")
}

/// A host on loopback, UDP only, with `shards` core shards, whose core is
/// `server` (a load generator's server side).
pub async fn host_toward(server: SocketAddr, shards: usize) -> anyhow::Result<HostHandle> {
    let mut cfg = Config::default();
    cfg.listen.udp = vec![loopback()];
    cfg.listen.tcp = vec![];
    cfg.core.address = server;
    cfg.core.transport = "udp".into();
    cfg.runtime.shards = shards;
    host::start(&cfg).await
}

/// Waits (up to `within`) for `host` to hold no call; its last status line
/// either way, for the assertion.
pub async fn status_when_idle(
    host: &HostHandle,
    within: std::time::Duration,
) -> anyhow::Result<String> {
    let give_up = std::time::Instant::now() + within;
    loop {
        let status = host.status().await?;
        if status.starts_with("calls=0 ") || std::time::Instant::now() >= give_up {
            return Ok(status);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

impl Rig {
    pub async fn new(alice_proto: Proto, bob_proto: Proto) -> Rig {
        Rig::with(alice_proto, bob_proto, loopback(), |_| {}).await
    }

    pub async fn with(
        alice_proto: Proto,
        bob_proto: Proto,
        bind: SocketAddr,
        tweak: impl FnOnce(&mut Config),
    ) -> Rig {
        let ladder = Ladder::default();
        let alice = TestUa::bind("alice", alice_proto, bind, ladder.clone())
            .await
            .expect("bind alice");
        let bob = TestUa::bind("bob", bob_proto, bind, ladder.clone())
            .await
            .expect("bind bob");
        let mut cfg = Config::default();
        cfg.listen.udp = vec![bind];
        cfg.listen.tcp = vec![bind];
        cfg.core.address = bob.addr();
        cfg.core.transport = bob_proto.to_string();
        // More shards than this machine may have CPUs, so every test runs
        // calls across shards whatever it runs on.
        cfg.runtime.shards = 3;
        tweak(&mut cfg);
        let host = host::start(&cfg).await.expect("start host");
        let host_for_alice = match alice_proto {
            Proto::Udp => host.udp_addr(),
            Proto::Tcp => host.tcp_addr(),
        }
        .expect("host address");
        Rig {
            host,
            alice,
            bob,
            host_for_alice,
            ladder,
        }
    }

    /// alice sends an INVITE (with `sdp` as offer) and bob receives it.
    pub async fn offer_call(&mut self, sdp: Option<&str>) -> anyhow::Result<Offered> {
        let mut alice = self
            .alice
            .new_dialog("sip:bob@example.com", self.host_for_alice);
        let invite = alice.request(&self.alice, "INVITE", sdp.map(|s| ("application/sdp", s)));
        self.alice.send(self.host_for_alice, &invite);
        let (at_bob, host) = self.bob.expect_request("INVITE").await?;
        Ok(Offered {
            alice,
            invite,
            at_bob,
            host,
        })
    }

    /// A 1-to-1 session alice → host → bob: INVITE with an SDP offer, 200
    /// with the answer, ACK through.
    pub async fn establish(&mut self) -> anyhow::Result<Established> {
        let Offered {
            alice: mut a,
            at_bob,
            host,
            ..
        } = self.offer_call(Some(SDP_OFFER)).await?;
        let b = self.bob.accept_dialog(&at_bob, host);
        let ok = self.bob.reply(
            &at_bob,
            200,
            &b.local_tag,
            Some(("application/sdp", SDP_ANSWER)),
        );
        self.bob.send(host, &ok);
        let ok = self.alice.expect_response(200).await?;
        a.update_from_response(&ok);
        self.alice.send(self.host_for_alice, &a.ack(&self.alice));
        self.bob.expect_request("ACK").await?;
        Ok(Established {
            a,
            b,
            host,
            b_invite: at_bob,
        })
    }

    pub fn ladder(&self) -> String {
        escalator_testkit::ua::render_ladder(&self.ladder)
    }

    /// Wait until the host reports `calls` active calls (state settles after
    /// the last message of a flow is processed).
    pub async fn wait_calls(&self, calls: usize) -> bool {
        for _ in 0..100 {
            if self.host.stats.calls() == calls {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        false
    }
}

/// An INVITE from alice as sent, and as bob received it.
pub struct Offered {
    pub alice: UaDialog,
    pub invite: SipMessage,
    pub at_bob: SipMessage,
    /// The host address bob received it from.
    pub host: SocketAddr,
}

/// Log lines written while the guard lives, on this thread (use with a
/// current-thread tokio test, where the host runs on the test's thread).
#[derive(Clone, Default)]
pub struct LogCapture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl LogCapture {
    pub fn start() -> (tracing::subscriber::DefaultGuard, LogCapture) {
        let capture = LogCapture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (tracing::subscriber::set_default(subscriber), capture)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().map(|b| b.clone()).unwrap_or_default()).into_owned()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An established 1-to-1 session.
pub struct Established {
    /// alice's side of her dialog with the host.
    pub a: UaDialog,
    /// bob's side of his dialog with the host.
    pub b: UaDialog,
    /// The host address bob talks to.
    pub host: SocketAddr,
    /// The INVITE as bob received it (leg B's Call-ID and the host's tag).
    pub b_invite: SipMessage,
}
