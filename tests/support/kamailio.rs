//! Kamailio as the operator core (`examples/core/kamailio.cfg`): a
//! record-routing proxy and registrar, started by the tests themselves on
//! a loopback address of its own and stopped when dropped.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Kamailio {
    child: Child,
    /// Where it listens, UDP and TCP.
    pub addr: SocketAddr,
    log: PathBuf,
}

/// A UDP and TCP port free on `ip` now (handed out once per process).
pub fn free_port(ip: &str) -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let s = UdpSocket::bind((ip, 0)).expect("bind a probe");
        let p = s.local_addr().expect("probe address").port();
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&p) && std::net::TcpListener::bind((ip, p)).is_ok() {
            given.push(p);
            return p;
        }
    }
}

impl Kamailio {
    /// Start it on `ip` (a free port), with the conference factory routed
    /// to `focus` when given. Fails with Kamailio's own words when it does
    /// not come up within 10 s.
    pub fn start(ip: &str, focus: Option<SocketAddr>) -> anyhow::Result<Kamailio> {
        let cfg = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/core/kamailio.cfg");
        let port = free_port(ip);
        let addr: SocketAddr = format!("{ip}:{port}").parse()?;
        let log = std::env::temp_dir().join(format!(
            "escalator-kamailio-{}-{port}.log",
            std::process::id()
        ));
        let mut cmd = Command::new("kamailio");
        cmd.args(["-DD", "-E", "-f"])
            .arg(&cfg)
            .args(["-l", &format!("udp:{addr}"), "-l", &format!("tcp:{addr}")])
            .args(["-m", "64", "-M", "8"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        if let Some(f) = focus {
            cmd.args(["-A", &format!("FOCUS=\"sip:{f}\"")]);
        }
        let child = cmd.spawn().map_err(|e| {
            anyhow::anyhow!("cannot start kamailio (apt-get install kamailio): {e}")
        })?;
        let mut k = Kamailio { child, addr, log };
        k.wait_ready()?;
        Ok(k)
    }

    /// Ready when it answers an OPTIONS over UDP.
    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let probe = UdpSocket::bind("127.0.0.1:0")?;
        probe.set_read_timeout(Some(Duration::from_millis(200)))?;
        let me = probe.local_addr()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("kamailio exited ({status}):\n{}", self.log_text());
            }
            let options = format!(
                "OPTIONS sip:{a} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKprobe{n}\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:probe@{me}>;tag=p\r\nTo: <sip:{a}>\r\n\
                 Call-ID: probe-{n}@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
                a = self.addr,
                n = Instant::now().elapsed().as_nanos()
            );
            probe.send_to(options.as_bytes(), self.addr)?;
            if probe.recv_from(&mut buf).is_ok() {
                return Ok(());
            }
        }
        anyhow::bail!("kamailio did not answer within 10 s:\n{}", self.log_text())
    }

    /// What it logged so far (for failing tests).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        // SIGTERM lets the main process stop its children.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_file(&self.log);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
