//! Drives transaction machines on tokio's paused clock through the same
//! [`TimerQueue`] the core uses, recording when each action happened.

use super::*;
use crate::timers::TimerQueue;
use tokio::time::Instant;

pub struct Sim {
    start: Instant,
    timers: TimerQueue<Timer>,
    /// (milliseconds since start, action) for every non-Schedule action.
    pub log: Vec<(u128, Action)>,
}

impl Sim {
    pub fn new() -> Self {
        Sim {
            start: Instant::now(),
            timers: TimerQueue::default(),
            log: Vec::new(),
        }
    }

    pub fn apply(&mut self, actions: Vec<Action>) {
        let at = self.start.elapsed().as_millis();
        for a in actions {
            match a {
                Action::Schedule(t, d) => self.timers.schedule(t, d),
                other => self.log.push((at, other)),
            }
        }
    }

    /// Fire timers into `machine` until `until` of virtual time has passed.
    pub async fn run_for(
        &mut self,
        until: Duration,
        mut machine: impl FnMut(Timer) -> Vec<Action>,
    ) {
        let deadline = self.start + until;
        loop {
            tokio::select! {
                t = self.timers.expired() => { let a = machine(t); self.apply(a); }
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
    }

    pub fn send_times(&self) -> Vec<u128> {
        self.log
            .iter()
            .filter(|(_, a)| matches!(a, Action::Send(_)))
            .map(|(t, _)| *t)
            .collect()
    }

    pub fn saw(&self, pred: impl Fn(&Action) -> bool) -> Option<u128> {
        self.log.iter().find(|(_, a)| pred(a)).map(|(t, _)| *t)
    }
}

fn req(method: &str) -> SipMessage {
    let mut m = SipMessage::request(method, "sip:b@10.0.0.2");
    m.push_header("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKsim");
    m.push_header("From", "<sip:a@x>;tag=f");
    m.push_header("To", "<sip:b@y>");
    m.push_header("Call-ID", "sim-1");
    m.push_header("CSeq", format!("1 {method}"));
    m.push_header("Route", "<sip:proxy;lr>");
    m.set_body(Bytes::new());
    m
}

fn resp(status: u16, method: &str) -> SipMessage {
    let mut m = SipMessage::response(status, "X");
    m.push_header("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKsim");
    m.push_header("From", "<sip:a@x>;tag=f");
    m.push_header("To", "<sip:b@y>;tag=t");
    m.push_header("Call-ID", "sim-1");
    m.push_header("CSeq", format!("1 {method}"));
    m.set_body(Bytes::new());
    m
}

fn is_timeout(a: &Action) -> bool {
    matches!(a, Action::Timeout)
}

fn is_terminated(a: &Action) -> bool {
    matches!(a, Action::Terminated)
}

#[tokio::test(start_paused = true)]
async fn client_invite_over_udp_retransmits_with_timer_a_then_times_out_with_b() {
    let mut sim = Sim::new();
    let (mut tx, a) = ClientTx::start(req("INVITE"), false, TimerConfig::default());
    sim.apply(a);
    sim.run_for(Duration::from_secs(40), |t| tx.on_timer(t))
        .await;
    assert_eq!(
        sim.send_times(),
        vec![0, 500, 1500, 3500, 7500, 15500, 31500]
    );
    assert_eq!(sim.saw(is_timeout), Some(32000));
}

#[tokio::test(start_paused = true)]
async fn client_invite_provisional_stops_retransmission_and_timer_b() {
    let mut sim = Sim::new();
    let (mut tx, a) = ClientTx::start(req("INVITE"), false, TimerConfig::default());
    sim.apply(a);
    sim.run_for(Duration::from_millis(600), |t| tx.on_timer(t))
        .await;
    let a = tx.on_response(resp(180, "INVITE"));
    sim.apply(a);
    sim.run_for(Duration::from_secs(60), |t| tx.on_timer(t))
        .await;
    assert_eq!(sim.send_times(), vec![0, 500]);
    assert_eq!(sim.saw(is_timeout), None, "B does not apply in Proceeding");
}

#[tokio::test(start_paused = true)]
async fn client_invite_acks_non_2xx_and_every_retransmission_of_it() {
    let mut sim = Sim::new();
    let (mut tx, a) = ClientTx::start(req("INVITE"), false, TimerConfig::default());
    sim.apply(a);
    let a = tx.on_response(resp(486, "INVITE"));
    sim.apply(a);
    let a = tx.on_response(resp(486, "INVITE"));
    sim.apply(a);
    let acks: Vec<_> = sim
        .log
        .iter()
        .filter_map(|(_, a)| match a {
            Action::Send(b) => Some(b.clone()),
            _ => None,
        })
        .skip(1)
        .collect();
    assert_eq!(acks.len(), 2);
    let ack = SipMessage::parse(&acks[0], Default::default()).unwrap();
    assert_eq!(ack.method(), Some("ACK"));
    assert_eq!(ack.cseq(), Some((1, "ACK".into())));
    assert_eq!(ack.to_tag().as_deref(), Some("t"));
    assert_eq!(ack.top_via().unwrap().branch(), Some("z9hG4bKsim"));
    assert_eq!(ack.header("Route"), Some("<sip:proxy;lr>"));
    assert_eq!(
        sim.log
            .iter()
            .filter(|(_, a)| matches!(a, Action::Deliver(_)))
            .count(),
        1,
        "the retransmitted final is absorbed"
    );
    sim.run_for(Duration::from_secs(40), |t| tx.on_timer(t))
        .await;
    assert_eq!(sim.saw(is_terminated), Some(32000), "Timer D = 32 s");
}

#[tokio::test(start_paused = true)]
async fn client_non_invite_timer_e_caps_at_t2_and_f_times_out() {
    let mut sim = Sim::new();
    let (mut tx, a) = ClientTx::start(req("BYE"), false, TimerConfig::default());
    sim.apply(a);
    sim.run_for(Duration::from_secs(40), |t| tx.on_timer(t))
        .await;
    assert_eq!(
        sim.send_times(),
        vec![0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    assert_eq!(sim.saw(is_timeout), Some(32000));
}

#[tokio::test(start_paused = true)]
async fn client_non_invite_completed_waits_t4_then_terminates() {
    let mut sim = Sim::new();
    let (mut tx, a) = ClientTx::start(req("MESSAGE"), false, TimerConfig::default());
    sim.apply(a);
    let a = tx.on_response(resp(200, "MESSAGE"));
    sim.apply(a);
    sim.run_for(Duration::from_secs(10), |t| tx.on_timer(t))
        .await;
    assert_eq!(sim.send_times(), vec![0]);
    assert_eq!(sim.saw(is_terminated), Some(5000));
}

#[tokio::test(start_paused = true)]
async fn reliable_client_never_retransmits() {
    let mut sim = Sim::new();
    let (mut tx, a) = ClientTx::start(req("INVITE"), true, TimerConfig::default());
    sim.apply(a);
    sim.run_for(Duration::from_secs(40), |t| tx.on_timer(t))
        .await;
    assert_eq!(sim.send_times(), vec![0]);
    assert_eq!(sim.saw(is_timeout), Some(32000));
}

#[tokio::test(start_paused = true)]
async fn client_transport_error_is_a_timeout() {
    let (mut tx, _) = ClientTx::start(req("OPTIONS"), true, TimerConfig::default());
    assert_eq!(
        tx.on_transport_error(),
        vec![Action::Timeout, Action::Terminated]
    );
}

#[tokio::test(start_paused = true)]
async fn server_invite_error_retransmits_with_g_until_ack_then_i() {
    let mut sim = Sim::new();
    let mut tx = ServerTx::new(true, false, TimerConfig::default());
    sim.apply(tx.send_response(&resp(100, "INVITE")));
    assert_eq!(
        tx.on_retransmission().len(),
        1,
        "100 re-sent on retransmitted INVITE"
    );
    sim.apply(tx.send_response(&resp(486, "INVITE")));
    sim.run_for(Duration::from_millis(3600), |t| tx.on_timer(t))
        .await;
    assert_eq!(sim.send_times(), vec![0, 0, 500, 1500, 3500]);
    sim.apply(tx.on_ack());
    sim.run_for(Duration::from_secs(20), |t| tx.on_timer(t))
        .await;
    assert_eq!(
        sim.send_times().len(),
        5,
        "no more retransmissions after ACK"
    );
    assert_eq!(sim.saw(is_terminated), Some(3600 + 5000), "Timer I = T4");
    assert_eq!(sim.saw(is_timeout), None);
}

#[tokio::test(start_paused = true)]
async fn server_invite_error_without_ack_times_out_with_h() {
    let mut sim = Sim::new();
    let mut tx = ServerTx::new(true, false, TimerConfig::default());
    sim.apply(tx.send_response(&resp(486, "INVITE")));
    sim.run_for(Duration::from_secs(40), |t| tx.on_timer(t))
        .await;
    assert_eq!(sim.saw(is_timeout), Some(32000));
}

#[tokio::test(start_paused = true)]
async fn server_invite_2xx_is_retransmitted_until_ack_and_absorbs_retransmitted_invite() {
    let mut sim = Sim::new();
    let mut tx = ServerTx::new(true, true, TimerConfig::default());
    sim.apply(tx.send_response(&resp(200, "INVITE")));
    assert!(
        tx.on_retransmission().is_empty(),
        "RFC 6026 Accepted absorbs the INVITE"
    );
    sim.run_for(Duration::from_millis(1600), |t| tx.on_timer(t))
        .await;
    assert_eq!(sim.send_times(), vec![0, 500, 1500]);
    sim.apply(tx.on_ack());
    sim.run_for(Duration::from_secs(40), |t| tx.on_timer(t))
        .await;
    assert_eq!(sim.send_times().len(), 3);
    assert_eq!(sim.saw(is_timeout), None);
    assert_eq!(sim.saw(is_terminated), Some(32000), "Timer L");
}

#[tokio::test(start_paused = true)]
async fn server_invite_2xx_without_ack_reports_timeout() {
    let mut sim = Sim::new();
    let mut tx = ServerTx::new(true, false, TimerConfig::default());
    sim.apply(tx.send_response(&resp(200, "INVITE")));
    sim.run_for(Duration::from_secs(40), |t| tx.on_timer(t))
        .await;
    assert_eq!(sim.saw(is_timeout), Some(32000));
}

#[tokio::test(start_paused = true)]
async fn server_non_invite_absorbs_then_replays_final_until_j() {
    let mut sim = Sim::new();
    let mut tx = ServerTx::new(false, false, TimerConfig::default());
    assert!(
        tx.on_retransmission().is_empty(),
        "nothing to replay in Trying"
    );
    sim.apply(tx.send_response(&resp(200, "BYE")));
    assert_eq!(tx.on_retransmission().len(), 1);
    assert!(
        tx.send_response(&resp(500, "BYE")).is_empty(),
        "only one final"
    );
    sim.run_for(Duration::from_secs(40), |t| tx.on_timer(t))
        .await;
    assert_eq!(
        sim.saw(is_terminated),
        Some(32000),
        "Timer J = 64*T1 on UDP"
    );
}

#[tokio::test(start_paused = true)]
async fn configured_t1_scales_every_timer() {
    let cfg = TimerConfig {
        t1: Duration::from_millis(100),
        t2: Duration::from_millis(400),
        t4: Duration::from_millis(500),
    };
    let mut sim = Sim::new();
    let (mut tx, a) = ClientTx::start(req("OPTIONS"), false, cfg);
    sim.apply(a);
    sim.run_for(Duration::from_secs(10), |t| tx.on_timer(t))
        .await;
    assert_eq!(sim.saw(is_timeout), Some(6400));
    assert_eq!(&sim.send_times()[..5], &[0, 100, 300, 700, 1100]);
}

#[tokio::test(start_paused = true)]
async fn client_keeps_the_request_only_until_a_final_response() {
    let mut sim = Sim::new();
    let (mut tx, a) = ClientTx::start(req("INVITE"), false, TimerConfig::default());
    sim.apply(a);
    assert!(tx.request().is_some(), "needed for CANCEL while calling");
    sim.apply(tx.on_response(resp(180, "INVITE")));
    assert!(tx.request().is_some(), "needed for CANCEL while ringing");
    sim.apply(tx.on_response(resp(200, "INVITE")));
    assert!(tx.request().is_none(), "dropped for the 32 s of Timer M");
    assert_eq!(tx.method(), &crate::sip::Method::Invite);
    assert!(tx.is_invite() && !tx.offered());
    sim.run_for(Duration::from_secs(40), |t| tx.on_timer(t))
        .await;
    assert_eq!(sim.send_times(), vec![0], "only the INVITE itself was sent");
    assert_eq!(sim.saw(is_terminated), Some(32000), "Timer M");
}
