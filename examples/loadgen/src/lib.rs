//! A paced SIP load generator for latency runs (`examples/load/load.py
//! --generator`). SIPp starts new calls in bursts (up to ~60 messages in one
//! millisecond at 3000 calls/s, see BENCHMARKS.md), so the delay it shows is
//! mostly queueing behind its own bursts. This generator starts calls at an
//! even pace or with Poisson arrivals (many independent clients), sends the
//! same messages as `examples/load/uac.xml` and `core-uas.xml`, and can be
//! the server too, so it times both hops with one clock. UDP only.

pub mod flood;
pub mod messages;
pub mod record;
pub mod schedule;
pub mod uac;
pub mod uas;

use messages::Client;
use record::{Stamp, Timeline};
use schedule::Arrivals;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use uac::{Calls, Uac};

#[derive(Debug, Error)]
pub enum LoadError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("socket setup: {0}")]
    Socket(#[from] std::io::Error),
    #[error("rate must be above 0 (got {0})")]
    Rate(f64),
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// Where calls are sent (the host, a proxy, or the server for a baseline).
    pub target: SocketAddr,
    /// The client's address (port 0: any).
    pub client: SocketAddr,
    /// If set, this process also answers calls there.
    pub server: Option<SocketAddr>,
    pub rate: f64,
    pub calls: usize,
    pub arrivals: Arrivals,
    pub seed: u64,
    /// Calls still in progress this long after the last one started count as failed.
    pub linger: Duration,
}

pub struct Report {
    pub successful: usize,
    pub failed: usize,
    /// From the first INVITE to the end of the last call.
    pub elapsed: Duration,
    pub timeline: Arc<Timeline>,
}

impl Report {
    /// Client to server through the target: INVITE sent until it arrived.
    pub fn invite_hop(&self) -> Vec<Duration> {
        self.timeline
            .delays(Stamp::InviteSent, Stamp::InviteArrived)
    }

    /// Server to client through the target: 200 sent until it arrived.
    pub fn ok_hop(&self) -> Vec<Duration> {
        self.timeline.delays(Stamp::OkSent, Stamp::OkArrived)
    }

    /// INVITE sent until its 200 arrived (both hops and the server).
    pub fn setup(&self) -> Vec<Duration> {
        self.timeline.delays(Stamp::InviteSent, Stamp::OkArrived)
    }
}

fn bind(addr: SocketAddr) -> Result<UdpSocket, LoadError> {
    let socket = UdpSocket::bind(addr).map_err(|source| LoadError::Bind { addr, source })?;
    socket.set_read_timeout(Some(Duration::from_millis(50)))?;
    large_receive_buffer(&socket);
    Ok(socket)
}

/// Asks for a 4 MiB receive buffer (the kernel caps it at rmem_max), so
/// the generator's own socket does not drop what a flood brings back and
/// retransmit for it: the drops measured must be the target's.
fn large_receive_buffer(socket: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let bytes: libc::c_int = 4 << 20;
    // SAFETY: SO_RCVBUF takes a c_int whose size is passed; the descriptor
    // is the socket's own, open for the call.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Runs the calls and waits for them to end (or to time out).
pub fn run(settings: &Settings) -> Result<Report, LoadError> {
    if settings.rate.is_nan() || settings.rate <= 0.0 {
        return Err(LoadError::Rate(settings.rate));
    }
    let timeline = Arc::new(Timeline::new(settings.calls));
    let stop = Arc::new(AtomicBool::new(false));
    let server = settings.server.map(bind).transpose()?;
    let socket = bind(settings.client)?;
    let uac = Arc::new(Uac {
        client: Client {
            local: socket.local_addr()?,
            target: settings.target,
            run: std::process::id(),
        },
        socket: Arc::new(socket),
        calls: Arc::new(Calls::default()),
        timeline: timeline.clone(),
        stop: stop.clone(),
    });
    let mut threads = Vec::new();
    if let Some(server) = server {
        let (timeline, stop) = (timeline.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            uas::serve(server, timeline, stop)
        }));
    }
    for job in [Uac::receive, Uac::retransmit] {
        let uac = uac.clone();
        threads.push(std::thread::spawn(move || job(&uac)));
    }
    let offsets = schedule::offsets(
        settings.arrivals,
        settings.rate,
        settings.calls,
        settings.seed,
    );
    let start = Instant::now() + Duration::from_millis(20);
    uac.start_calls(start, &offsets);
    let give_up = Instant::now() + settings.linger;
    while uac.calls.in_progress() > 0 && Instant::now() < give_up {
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    uac.calls.abandon();
    Ok(Report {
        successful: uac.calls.successful.load(Ordering::Relaxed),
        failed: uac.calls.failed.load(Ordering::Relaxed),
        elapsed,
        timeline,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    #[test]
    fn calls_straight_to_its_own_server_all_complete_and_are_timed() {
        let probe = UdpSocket::bind(loopback()).unwrap();
        let server = probe.local_addr().unwrap();
        drop(probe);
        let report = run(&Settings {
            target: server,
            client: loopback(),
            server: Some(server),
            rate: 500.0,
            calls: 40,
            arrivals: Arrivals::Poisson,
            seed: 3,
            linger: Duration::from_secs(10),
        })
        .unwrap();
        assert_eq!((report.successful, report.failed), (40, 0));
        assert_eq!(report.invite_hop().len(), 40);
        assert_eq!(report.ok_hop().len(), 40);
        assert_eq!(report.setup().len(), 40);
        assert_eq!(report.timeline.sent_ms().len(), 40);
    }

    #[test]
    fn calls_to_nobody_fail_after_the_linger_time() {
        let probe = UdpSocket::bind(loopback()).unwrap();
        let silent = probe.local_addr().unwrap();
        let report = run(&Settings {
            target: silent,
            client: loopback(),
            server: None,
            rate: 1000.0,
            calls: 5,
            arrivals: Arrivals::Even,
            seed: 0,
            linger: Duration::from_millis(200),
        })
        .unwrap();
        assert_eq!((report.successful, report.failed), (0, 5));
        assert!(report.invite_hop().is_empty());
        let mut buf = [0u8; 2048];
        probe
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let (len, _) = probe.recv_from(&mut buf).unwrap();
        assert!(buf[..len].starts_with(b"INVITE sip:service@"));
    }

    #[test]
    fn a_rate_of_zero_is_refused() {
        let mut s = Settings {
            target: loopback(),
            client: loopback(),
            server: None,
            rate: 0.0,
            calls: 1,
            arrivals: Arrivals::Even,
            seed: 0,
            linger: Duration::from_millis(10),
        };
        assert!(matches!(run(&s), Err(LoadError::Rate(_))));
        s.rate = f64::NAN;
        assert!(matches!(run(&s), Err(LoadError::Rate(_))));
    }
}
