//! Client transactions (RFC 3261 sections 17.1.1 and 17.1.2).

use super::{Action, Timer, TimerConfig};
use crate::sip::{Method, SipMessage};
use bytes::Bytes;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// "Calling" for INVITE, "Trying" for non-INVITE.
    Calling,
    Proceeding,
    Completed,
    Accepted,
    Terminated,
}

/// The request in flight: kept only until a final response arrives (it is
/// needed for retransmissions, CANCEL and the ACK of a non-2xx). An INVITE
/// transaction lives on for 64*T1 after its 2xx; holding a copy of every
/// INVITE for those 32 s was most of the host's memory at high call rates.
#[derive(Debug)]
struct InFlight {
    request: SipMessage,
    wire: Bytes,
}

#[derive(Debug)]
pub struct ClientTx {
    invite: bool,
    state: ClientState,
    method: Method,
    offered: bool,
    in_flight: Option<InFlight>,
    reliable: bool,
    interval: Duration,
    cfg: TimerConfig,
    ack: Option<Bytes>,
}

impl ClientTx {
    /// Start a transaction for `request`; the first action sends it.
    pub fn start(request: SipMessage, reliable: bool, cfg: TimerConfig) -> (Self, Vec<Action>) {
        let method = request
            .request_method()
            .unwrap_or_else(|| Method::Extension(String::new()));
        let invite = method == Method::Invite;
        let wire = request.to_bytes();
        let tx = ClientTx {
            invite,
            state: ClientState::Calling,
            method,
            offered: !request.body.is_empty(),
            in_flight: Some(InFlight {
                request,
                wire: wire.clone(),
            }),
            reliable,
            interval: cfg.t1,
            cfg,
            ack: None,
        };
        let mut actions = vec![Action::Send(wire)];
        if !reliable {
            actions.push(Action::Schedule(
                if invite { Timer::A } else { Timer::E },
                cfg.t1,
            ));
        }
        actions.push(Action::Schedule(
            if invite { Timer::B } else { Timer::F },
            cfg.t64(),
        ));
        (tx, actions)
    }

    pub fn state(&self) -> ClientState {
        self.state
    }

    /// The request, while no final response has arrived.
    pub fn request(&self) -> Option<&SipMessage> {
        self.in_flight.as_ref().map(|f| &f.request)
    }

    pub fn method(&self) -> &Method {
        &self.method
    }

    pub fn is_invite(&self) -> bool {
        self.invite
    }

    /// Whether the request carried a body (an SDP offer, for INVITE).
    pub fn offered(&self) -> bool {
        self.offered
    }

    /// Re-send the request (while it is still held) and re-arm `timer`
    /// with the current interval.
    fn retransmit(&self, timer: Timer) -> Vec<Action> {
        let mut a: Vec<Action> = self
            .in_flight
            .as_ref()
            .map(|f| Action::Send(f.wire.clone()))
            .into_iter()
            .collect();
        a.push(Action::Schedule(timer, self.interval));
        a
    }

    pub fn on_response(&mut self, resp: SipMessage) -> Vec<Action> {
        let Some(status) = resp.status() else {
            return Vec::new();
        };
        use ClientState::*;
        match (self.invite, self.state, status) {
            (_, Calling | Proceeding, 100..=199) => {
                self.state = Proceeding;
                vec![Action::Deliver(resp)]
            }
            (true, Calling | Proceeding, 200..=299) => {
                self.state = Accepted;
                self.in_flight = None;
                vec![
                    Action::Schedule(Timer::M, self.cfg.t64()),
                    Action::Deliver(resp),
                ]
            }
            // Retransmitted 2xx: the dialog layer re-sends its ACK.
            (true, Accepted, 200..=299) => vec![Action::Deliver(resp)],
            (true, Calling | Proceeding, _) => {
                self.state = Completed;
                let Some(f) = self.in_flight.take() else {
                    return Vec::new();
                };
                let ack = build_ack(&f.request, &resp).to_bytes();
                self.ack = Some(ack.clone());
                let wait = if self.reliable {
                    Duration::ZERO
                } else {
                    Duration::from_secs(32)
                };
                vec![
                    Action::Send(ack),
                    Action::Schedule(Timer::D, wait),
                    Action::Deliver(resp),
                ]
            }
            (true, Completed, 300..=699) => {
                self.ack.clone().map(Action::Send).into_iter().collect()
            }
            (false, Calling | Proceeding, _) => {
                self.state = Completed;
                self.in_flight = None;
                let wait = if self.reliable {
                    Duration::ZERO
                } else {
                    self.cfg.t4
                };
                vec![Action::Schedule(Timer::K, wait), Action::Deliver(resp)]
            }
            _ => Vec::new(),
        }
    }

    pub fn on_timer(&mut self, timer: Timer) -> Vec<Action> {
        use ClientState::*;
        match (timer, self.state) {
            (Timer::A, Calling) => {
                self.interval *= 2;
                self.retransmit(Timer::A)
            }
            (Timer::E, Calling | Proceeding) => {
                self.interval = if self.state == Proceeding {
                    self.cfg.t2
                } else {
                    (self.interval * 2).min(self.cfg.t2)
                };
                self.retransmit(Timer::E)
            }
            (Timer::B, Calling) | (Timer::F, Calling | Proceeding) => self.terminate_with_timeout(),
            (Timer::D | Timer::K, Completed) | (Timer::M, Accepted) => {
                self.state = Terminated;
                self.ack = None;
                vec![Action::Terminated]
            }
            _ => Vec::new(),
        }
    }

    /// The transport could not deliver the request (RFC 3261 section 17.1.4).
    pub fn on_transport_error(&mut self) -> Vec<Action> {
        if matches!(self.state, ClientState::Calling | ClientState::Proceeding) {
            self.terminate_with_timeout()
        } else {
            Vec::new()
        }
    }

    fn terminate_with_timeout(&mut self) -> Vec<Action> {
        self.state = ClientState::Terminated;
        self.in_flight = None;
        vec![Action::Timeout, Action::Terminated]
    }
}

/// ACK for a non-2xx final response (RFC 3261 section 17.1.1.3): same
/// Request-URI, Call-ID, From, top Via and Route as the INVITE; To from the response.
pub fn build_ack(invite: &SipMessage, resp: &SipMessage) -> SipMessage {
    let mut ack = SipMessage::request("ACK", invite.request_uri().unwrap_or_default());
    if let Some(via) = invite.header_values("Via").first() {
        ack.push_header("Via", *via);
    }
    for name in ["Max-Forwards", "From"] {
        if let Some(v) = invite.header(name) {
            ack.push_header(name, v);
        }
    }
    let to = resp
        .header("To")
        .or_else(|| invite.header("To"))
        .unwrap_or_default();
    ack.push_header("To", to);
    if let Some(v) = invite.call_id() {
        ack.push_header("Call-ID", v);
    }
    if let Some((n, _)) = invite.cseq() {
        ack.push_header("CSeq", format!("{n} ACK"));
    }
    for route in invite.header_values("Route") {
        ack.push_header("Route", route);
    }
    ack.set_body(Bytes::new());
    ack
}
