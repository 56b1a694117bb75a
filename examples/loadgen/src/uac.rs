//! The client side: starts calls on schedule, answers each 200 with ACK and
//! BYE, retransmits over UDP (RFC 3261 timers A/E, T1 = 500 ms, T2 = 4 s)
//! and gives up on a call after 64*T1.

use crate::messages::{classify, parse, Answer, Client};
use crate::record::{Final, Stamp, Timeline};
use std::collections::HashMap;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// INVITE sent, nothing heard: retransmit.
    Inviting,
    /// A provisional came: wait for the final response.
    Proceeding,
    /// BYE sent: retransmit until its response.
    Ending,
}

struct Pending {
    phase: Phase,
    request: Vec<u8>,
    next: Instant,
    interval: Duration,
    deadline: Instant,
}

impl Pending {
    fn new(phase: Phase, request: Vec<u8>, now: Instant) -> Self {
        Pending {
            phase,
            request,
            next: now + T1,
            interval: T1,
            deadline: now + 64 * T1,
        }
    }
}

/// Calls started and not yet ended, and how the ended ones went.
#[derive(Default)]
pub struct Calls {
    pending: Mutex<HashMap<usize, Pending>>,
    pub successful: AtomicUsize,
    pub failed: AtomicUsize,
}

impl Calls {
    fn table(&self) -> MutexGuard<'_, HashMap<usize, Pending>> {
        // A thread that panicked while holding the lock left a usable table.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn in_progress(&self) -> usize {
        self.table().len()
    }

    /// Counts every call still in progress as failed.
    pub fn abandon(&self) -> usize {
        let n = self.table().drain().count();
        self.failed.fetch_add(n, Ordering::Relaxed);
        n
    }
}

pub struct Uac {
    pub client: Client,
    pub socket: Arc<UdpSocket>,
    pub calls: Arc<Calls>,
    pub timeline: Arc<Timeline>,
    pub stop: Arc<AtomicBool>,
}

impl Uac {
    fn send(&self, bytes: &[u8]) {
        if let Err(e) = self.socket.send_to(bytes, self.client.target) {
            eprintln!("loadgen client: send to {}: {e}", self.client.target);
        }
    }

    /// Starts call `i` at each offset from `start`.
    pub fn start_calls(&self, start: Instant, offsets: &[Duration]) {
        lower_timer_slack();
        for (call, offset) in offsets.iter().enumerate() {
            let due = start + *offset;
            while let Some(wait) = due.checked_duration_since(Instant::now()) {
                if self.stop.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(wait);
            }
            let invite = self.client.invite(call);
            let now = Instant::now();
            self.calls
                .table()
                .insert(call, Pending::new(Phase::Inviting, invite.clone(), now));
            self.timeline.mark(call, Stamp::InviteSent, now);
            self.send(&invite);
        }
    }

    /// Handles responses until stopped.
    pub fn receive(&self) {
        let mut buf = vec![0u8; 65_536];
        while !self.stop.load(Ordering::Relaxed) {
            let Ok(len) = self.socket.recv(&mut buf) else {
                continue; // read timeout: look at `stop` again
            };
            let now = Instant::now();
            let Some(msg) = parse(&buf[..len]) else {
                continue;
            };
            let Some(call) = self.client.call_of(&msg) else {
                continue;
            };
            self.on_response(call, &msg, classify(&msg), now);
        }
    }

    fn on_response(
        &self,
        call: usize,
        msg: &escalator_sip::SipMessage,
        answer: Answer,
        now: Instant,
    ) {
        match answer {
            Answer::Trying => {
                if let Some(p) = self.calls.table().get_mut(&call) {
                    if p.phase == Phase::Inviting {
                        p.phase = Phase::Proceeding;
                    }
                }
            }
            Answer::InviteFinal(status) => {
                self.timeline.mark(call, Stamp::FinalArrived, now);
                self.timeline.mark_final(
                    call,
                    Final {
                        status,
                        retry_after: msg.header("Retry-After").is_some(),
                    },
                );
                self.on_final(call, msg, status, now)
            }
            Answer::ByeFinal(status) => {
                if self.calls.table().remove(&call).is_some() {
                    let outcome = if (200..300).contains(&status) {
                        &self.calls.successful
                    } else {
                        &self.calls.failed
                    };
                    outcome.fetch_add(1, Ordering::Relaxed);
                }
            }
            Answer::Other => {}
        }
    }

    fn on_final(&self, call: usize, msg: &escalator_sip::SipMessage, status: u16, now: Instant) {
        match status {
            200..=299 => {
                self.timeline.mark(call, Stamp::OkArrived, now);
                self.send(&self.client.ack(call, msg));
                let bye = {
                    let mut table = self.calls.table();
                    match table.get_mut(&call) {
                        Some(p) if p.phase != Phase::Ending => {
                            let bye = self.client.bye(call, msg);
                            *p = Pending::new(Phase::Ending, bye.clone(), now);
                            Some(bye)
                        }
                        _ => None, // a retransmitted 200: the ACK was enough
                    }
                };
                if let Some(bye) = bye {
                    self.send(&bye);
                }
            }
            _ => {
                self.send(&self.client.ack_error(call, msg));
                if self.calls.table().remove(&call).is_some() {
                    self.calls.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Retransmits and times out requests until stopped.
    pub fn retransmit(&self) {
        while !self.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(10));
            let now = Instant::now();
            let mut resend = Vec::new();
            {
                let mut table = self.calls.table();
                let before = table.len();
                table.retain(|_, p| now < p.deadline);
                self.calls
                    .failed
                    .fetch_add(before - table.len(), Ordering::Relaxed);
                for p in table.values_mut() {
                    if p.phase == Phase::Proceeding || now < p.next {
                        continue;
                    }
                    resend.push(p.request.clone());
                    p.interval = match p.phase {
                        Phase::Ending => (p.interval * 2).min(T2),
                        _ => p.interval * 2,
                    };
                    p.next = now + p.interval;
                }
            }
            for r in resend {
                self.send(&r);
            }
        }
    }
}

/// Wake up on time: Linux delays a sleeping thread's timer by up to 50 µs
/// by default, a seventh of the gap between calls at 2750 calls/s.
fn lower_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and only changes
    // this thread's timer slack.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
}
