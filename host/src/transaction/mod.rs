//! RFC 3261 section 17 transactions as pure state machines.
//!
//! A machine never touches sockets or clocks: it returns [`Action`]s that the
//! core carries out (send bytes to the transaction's peer, schedule a timer,
//! hand a message to the transaction user). Timers are never cancelled; a
//! machine ignores a timer that no longer applies to its state.
//!
//! INVITE transactions include the RFC 6026 "Accepted" state, so a
//! retransmitted INVITE or 2xx after the first 2xx is absorbed or handed to the
//! dialog instead of creating a new transaction.

mod client;
mod server;

pub use client::{ClientState, ClientTx};
pub use server::{ServerState, ServerTx};

use crate::sip::SipMessage;
use bytes::Bytes;
use std::time::Duration;

/// T1, T2 and T4 of RFC 3261 (defaults 500 ms, 4 s, 5 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl TimerConfig {
    /// 64*T1: Timers B, F, H, J (unreliable), L and M.
    pub fn t64(&self) -> Duration {
        self.t1 * 64
    }
}

/// The timers of RFC 3261 section 17 (and L, M of RFC 6026). Timer C
/// (section 16.6, how long an INVITE may ring) belongs to the transaction
/// user; the machines ignore it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    A,
    C,
    B,
    D,
    E,
    F,
    K,
    G,
    H,
    I,
    J,
    L,
    M,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send these bytes to the transaction's peer.
    Send(Bytes),
    Schedule(Timer, Duration),
    /// Hand a response (client) or ACK-less event to the transaction user.
    Deliver(SipMessage),
    /// No final response in time (Timer B or F), or no ACK for a final response (Timer H, L).
    Timeout,
    Terminated,
}

#[cfg(test)]
mod sim;
