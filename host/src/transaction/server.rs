//! Server transactions (RFC 3261 sections 17.2.1 and 17.2.2, RFC 6026).

use super::{Action, Timer, TimerConfig};
use crate::sip::SipMessage;
use bytes::Bytes;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// "Proceeding" for INVITE (after 100 Trying), "Trying" for non-INVITE.
    Trying,
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
    Terminated,
}

#[derive(Debug)]
pub struct ServerTx {
    invite: bool,
    state: ServerState,
    last_response: Option<Bytes>,
    last_status: u16,
    reliable: bool,
    interval: Duration,
    cfg: TimerConfig,
    acked: bool,
}

impl ServerTx {
    pub fn new(invite: bool, reliable: bool, cfg: TimerConfig) -> Self {
        ServerTx {
            invite,
            state: ServerState::Trying,
            last_response: None,
            last_status: 0,
            reliable,
            interval: cfg.t1,
            cfg,
            acked: false,
        }
    }

    pub fn state(&self) -> ServerState {
        self.state
    }

    pub fn is_invite(&self) -> bool {
        self.invite
    }

    /// Status of the last response sent (0 when none).
    pub fn last_status(&self) -> u16 {
        self.last_status
    }

    /// Whether the transaction can still take a final response from its user.
    pub fn awaits_final(&self) -> bool {
        matches!(self.state, ServerState::Trying | ServerState::Proceeding)
    }

    /// A retransmission of the request arrived.
    pub fn on_retransmission(&mut self) -> Vec<Action> {
        match self.state {
            ServerState::Accepted | ServerState::Confirmed | ServerState::Terminated => Vec::new(),
            _ => self
                .last_response
                .clone()
                .map(Action::Send)
                .into_iter()
                .collect(),
        }
    }

    /// The transaction user sends a response.
    pub fn send_response(&mut self, resp: &SipMessage) -> Vec<Action> {
        let Some(status) = resp.status() else {
            return Vec::new();
        };
        if !self.awaits_final() {
            return Vec::new();
        }
        let wire = resp.to_bytes();
        self.last_response = Some(wire.clone());
        self.last_status = status;
        let mut actions = vec![Action::Send(wire)];
        if status < 200 {
            self.state = ServerState::Proceeding;
        } else if self.invite && status < 300 {
            // RFC 6026: stay to absorb retransmitted INVITEs; the 2xx is
            // retransmitted until the dialog's ACK arrives (section 13.3.1.4).
            self.state = ServerState::Accepted;
            self.interval = self.cfg.t1;
            actions.push(Action::Schedule(Timer::G, self.cfg.t1));
            actions.push(Action::Schedule(Timer::L, self.cfg.t64()));
        } else if self.invite {
            self.state = ServerState::Completed;
            self.interval = self.cfg.t1;
            if !self.reliable {
                actions.push(Action::Schedule(Timer::G, self.cfg.t1));
            }
            actions.push(Action::Schedule(Timer::H, self.cfg.t64()));
        } else {
            self.state = ServerState::Completed;
            let wait = if self.reliable {
                Duration::ZERO
            } else {
                self.cfg.t64()
            };
            actions.push(Action::Schedule(Timer::J, wait));
        }
        actions
    }

    /// An ACK matched this transaction (non-2xx) or its dialog (2xx).
    pub fn on_ack(&mut self) -> Vec<Action> {
        match self.state {
            ServerState::Completed => {
                self.state = ServerState::Confirmed;
                self.last_response = None;
                let wait = if self.reliable {
                    Duration::ZERO
                } else {
                    self.cfg.t4
                };
                vec![Action::Schedule(Timer::I, wait)]
            }
            ServerState::Accepted => {
                // The 2xx is no longer retransmitted: nothing left to keep.
                self.acked = true;
                self.last_response = None;
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    pub fn on_timer(&mut self, timer: Timer) -> Vec<Action> {
        use ServerState::*;
        match (timer, self.state) {
            (Timer::G, Completed) | (Timer::G, Accepted) if !self.acked => {
                self.interval = (self.interval * 2).min(self.cfg.t2);
                let mut a: Vec<Action> = self
                    .last_response
                    .clone()
                    .map(Action::Send)
                    .into_iter()
                    .collect();
                a.push(Action::Schedule(Timer::G, self.interval));
                a
            }
            (Timer::H, Completed) => {
                self.state = Terminated;
                vec![Action::Timeout, Action::Terminated]
            }
            (Timer::L, Accepted) => {
                self.state = Terminated;
                if self.acked {
                    vec![Action::Terminated]
                } else {
                    vec![Action::Timeout, Action::Terminated]
                }
            }
            (Timer::I, Confirmed) | (Timer::J, Completed) => {
                self.state = Terminated;
                vec![Action::Terminated]
            }
            _ => Vec::new(),
        }
    }
}
