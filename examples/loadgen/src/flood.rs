//! A flood: new calls offered far above what the target can take, for a
//! while, then a gentle rate, with one established call sending a MESSAGE
//! in its dialog every `probe_every` all along. It shows what overload
//! control is for: whether new calls are answered (relayed, or refused
//! 503 with Retry-After) instead of lost, whether the call in progress is
//! served throughout, and how soon after the flood the target serves every
//! new call again.

use crate::messages::{parse, Client};
use crate::record::Timeline;
use crate::uac::{Calls, Uac};
use crate::{bind, uas, LoadError};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);

#[derive(Debug, Clone)]
pub struct FloodSettings {
    /// The target (the host).
    pub target: SocketAddr,
    /// Where this process answers what the target relays (its next hop).
    pub server: SocketAddr,
    /// New calls per second during the flood, for `duration`.
    pub rate: f64,
    pub duration: Duration,
    /// New calls per second after the flood, for `after`.
    pub after_rate: f64,
    pub after: Duration,
    /// The established call's MESSAGE interval.
    pub probe_every: Duration,
    /// How long calls still in progress are waited for at the end.
    pub linger: Duration,
}

/// How the new calls of one phase were answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Phase {
    pub sent: usize,
    /// Relayed and answered 2xx by the server.
    pub relayed: usize,
    /// Refused 503 with Retry-After.
    pub shed: usize,
    /// Any other final response (a 503 without Retry-After included).
    pub other: usize,
    /// No final response at all.
    pub unanswered: usize,
    /// Answered (relayed or shed) within 1 s of the first INVITE, before
    /// a client's third retransmission.
    pub answered_in_1s: usize,
}

impl Phase {
    /// The share of new calls answered (relayed or shed) within 1 s.
    pub fn answered_in_1s_share(&self) -> f64 {
        if self.sent == 0 {
            return 1.0;
        }
        self.answered_in_1s as f64 / self.sent as f64
    }

    /// The share of new calls that got a final response (relayed or shed).
    pub fn answered_share(&self) -> f64 {
        if self.sent == 0 {
            return 1.0;
        }
        (self.relayed + self.shed) as f64 / self.sent as f64
    }
}

/// One MESSAGE of the established call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeMessage {
    /// Since the flood started.
    pub sent: Duration,
    /// Its final status, if one came.
    pub status: Option<u16>,
    /// From the first send to the final response.
    pub took: Option<Duration>,
    /// Times sent (1 + retransmissions).
    pub sends: u32,
}

#[derive(Debug, Clone)]
pub struct FloodReport {
    pub flood: Phase,
    pub after: Phase,
    /// Calls relayed (answered 2xx) per second during the flood: the
    /// target's capacity while saturated.
    pub relayed_per_s: f64,
    pub probes: Vec<ProbeMessage>,
    /// From the end of the flood to the start of the first call after
    /// which every call was relayed; None if the last ones still failed.
    pub recovered_after: Option<Duration>,
}

/// Runs the flood and waits for its calls to end (or to time out).
pub fn flood(s: &FloodSettings) -> Result<FloodReport, LoadError> {
    for rate in [s.rate, s.after_rate] {
        if rate.is_nan() || rate <= 0.0 {
            return Err(LoadError::Rate(rate));
        }
    }
    let flood_calls = (s.rate * s.duration.as_secs_f64()).round() as usize;
    let after_calls = (s.after_rate * s.after.as_secs_f64()).round() as usize;
    let calls = flood_calls + after_calls;
    let timeline = Arc::new(Timeline::new(calls));
    let stop = Arc::new(AtomicBool::new(false));
    let server = bind(s.server)?;
    let socket = bind("127.0.0.1:0".parse().expect("literal"))?;
    let run = std::process::id();
    let uac = Arc::new(Uac {
        client: Client {
            local: socket.local_addr()?,
            target: s.target,
            run,
        },
        socket: Arc::new(socket),
        calls: Arc::new(Calls::default()),
        timeline: timeline.clone(),
        stop: stop.clone(),
    });
    let mut threads = Vec::new();
    {
        let (timeline, stop) = (timeline.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            uas::serve(server, timeline, stop)
        }));
    }
    // The call in progress, set up before the flood.
    let probe = Probe::establish(s.target, run.wrapping_add(1))?;
    for job in [Uac::receive, Uac::retransmit] {
        let uac = uac.clone();
        threads.push(std::thread::spawn(move || job(&uac)));
    }
    let start = Instant::now() + Duration::from_millis(20);
    let flood_end = start + s.duration;
    let probing = {
        let every = s.probe_every;
        let until = flood_end + s.after;
        std::thread::spawn(move || probe.run(start, every, until))
    };
    let mut offsets: Vec<Duration> = (0..flood_calls)
        .map(|i| Duration::from_secs_f64(i as f64 / s.rate))
        .collect();
    offsets.extend(
        (0..after_calls).map(|i| s.duration + Duration::from_secs_f64(i as f64 / s.after_rate)),
    );
    uac.start_calls(start, &offsets);
    let give_up = Instant::now() + s.linger;
    while uac.calls.in_progress() > 0 && Instant::now() < give_up {
        std::thread::sleep(Duration::from_millis(5));
    }
    let probes = probing.join().unwrap_or_default();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    uac.calls.abandon();
    let phase = |range: std::ops::Range<usize>| {
        let mut p = Phase::default();
        for call in range {
            p.sent += 1;
            let quick = timeline
                .answered_in(call)
                .is_some_and(|d| d <= Duration::from_secs(1));
            match timeline.final_of(call) {
                Some(f) if (200..300).contains(&f.status) => {
                    p.relayed += 1;
                    p.answered_in_1s += usize::from(quick);
                }
                Some(f) if f.status == 503 && f.retry_after => {
                    p.shed += 1;
                    p.answered_in_1s += usize::from(quick);
                }
                Some(_) => p.other += 1,
                None => p.unanswered += 1,
            }
        }
        p
    };
    let flood = phase(0..flood_calls);
    let after = phase(flood_calls..calls);
    let relayed = |c: usize| {
        timeline
            .final_of(c)
            .is_some_and(|f| (200..300).contains(&f.status))
    };
    let recovered_after = match (flood_calls..calls).rev().find(|c| !relayed(*c)) {
        None => Some(Duration::ZERO),
        Some(last_failed) if last_failed + 1 < calls => timeline
            .sent_at(last_failed + 1)
            .map(|at| (timeline.epoch() + at).saturating_duration_since(flood_end)),
        Some(_) => None,
    };
    Ok(FloodReport {
        flood,
        after,
        relayed_per_s: flood.relayed as f64 / s.duration.as_secs_f64(),
        probes,
        recovered_after,
    })
}

/// The established call and its MESSAGEs.
struct Probe {
    socket: UdpSocket,
    client: Client,
    /// The 200 that set the dialog up (its To tag).
    ok: escalator_sip::SipMessage,
}

/// The probe's call number (its Call-ID is `lg0-<run>@…`).
const PROBE_CALL: usize = 0;

impl Probe {
    /// INVITE, 200, ACK through the target (retransmitting on T1).
    fn establish(target: SocketAddr, run: u32) -> Result<Probe, LoadError> {
        let socket = bind("127.0.0.1:0".parse().expect("literal"))?;
        socket.set_read_timeout(Some(Duration::from_millis(10)))?;
        let client = Client {
            local: socket.local_addr()?,
            target,
            run,
        };
        let invite = client.invite(PROBE_CALL);
        let ok = until_final(&socket, target, &invite, "INVITE")
            .filter(|m| m.status().is_some_and(|s| (200..300).contains(&s)));
        let Some(ok) = ok else {
            return Err(LoadError::Socket(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the probe call was not answered 2xx",
            )));
        };
        socket.send_to(&client.ack(PROBE_CALL, &ok), target)?;
        Ok(Probe { socket, client, ok })
    }

    /// A MESSAGE every `every` from `start` until `until`, each retransmitted
    /// like a UA does (timer E) until its final response; then BYE.
    fn run(self, start: Instant, every: Duration, until: Instant) -> Vec<ProbeMessage> {
        struct Pending {
            bytes: Vec<u8>,
            first: Instant,
            next: Instant,
            interval: Duration,
            sends: u32,
            done: Option<(u16, Duration)>,
        }
        let target = self.client.target;
        let mut sent: Vec<Pending> = Vec::new();
        let mut buf = vec![0u8; 65_536];
        let first_seq = 2u32;
        let mut due = start;
        loop {
            let now = Instant::now();
            if now >= due && due < until {
                let seq = first_seq + sent.len() as u32;
                let bytes = self.client.in_dialog(
                    "MESSAGE",
                    seq,
                    PROBE_CALL,
                    &self.ok,
                    &format!("{}m{seq}", self.client.run),
                );
                let _ = self.socket.send_to(&bytes, target);
                sent.push(Pending {
                    bytes,
                    first: now,
                    next: now + T1,
                    interval: T1,
                    sends: 1,
                    done: None,
                });
                due += every;
            }
            for p in sent
                .iter_mut()
                .filter(|p| p.done.is_none() && now >= p.next)
            {
                let _ = self.socket.send_to(&p.bytes, target);
                p.sends += 1;
                p.interval = (p.interval * 2).min(T2);
                p.next = now + p.interval;
            }
            let open = sent
                .iter()
                .any(|p| p.done.is_none() && now < p.first + 64 * T1);
            if due >= until && (!open || now >= until + Duration::from_secs(5)) {
                break;
            }
            let Ok(len) = self.socket.recv(&mut buf) else {
                continue;
            };
            let arrived = Instant::now();
            let Some(m) = parse(&buf[..len]) else {
                continue;
            };
            let (Some(status), Some((seq, method))) = (m.status(), m.cseq()) else {
                continue;
            };
            if method != "MESSAGE" || status < 200 {
                continue;
            }
            let index = (seq as usize).wrapping_sub(first_seq as usize);
            if let Some(p) = sent.get_mut(index).filter(|p| p.done.is_none()) {
                p.done = Some((status, arrived - p.first));
            }
        }
        let seq = first_seq + sent.len() as u32;
        let bye = self.client.in_dialog(
            "BYE",
            seq,
            PROBE_CALL,
            &self.ok,
            &format!("{}b{seq}", self.client.run),
        );
        until_final(&self.socket, target, &bye, "BYE");
        sent.iter()
            .map(|p| ProbeMessage {
                sent: p.first.saturating_duration_since(start),
                status: p.done.map(|d| d.0),
                took: p.done.map(|d| d.1),
                sends: p.sends,
            })
            .collect()
    }
}

/// Sends `request` (a `method`) on `socket` to `target`, retransmitting it
/// (T1 doubling up to T2) until its final response, which it returns, or
/// for at most 64*T1.
fn until_final(
    socket: &UdpSocket,
    target: SocketAddr,
    request: &[u8],
    method: &str,
) -> Option<escalator_sip::SipMessage> {
    let mut buf = vec![0u8; 65_536];
    let deadline = Instant::now() + 64 * T1;
    let mut next = Instant::now();
    let mut interval = T1;
    while Instant::now() < deadline {
        if Instant::now() >= next {
            let _ = socket.send_to(request, target);
            next = Instant::now() + interval;
            interval = (interval * 2).min(T2);
        }
        let Ok(len) = socket.recv(&mut buf) else {
            continue;
        };
        let answer = parse(&buf[..len]).filter(|m| {
            m.status().is_some_and(|s| s >= 200) && m.cseq().is_some_and(|(_, m)| m == method)
        });
        if answer.is_some() {
            return answer;
        }
    }
    None
}
