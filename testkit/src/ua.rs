//! A small scripted SIP user agent for end-to-end tests and the demo. It is
//! deliberately simple: the test says what to send and what to expect next,
//! and every message it sees or sends is recorded for a message ladder.

use bytes::Bytes;
use escalator_host::sip::{NameAddr, SipMessage};
use escalator_host::transport::{
    CoreInbox, Inbound, Limits, Proto, Target, Transport, TransportEvent,
};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

#[derive(Debug, thiserror::Error)]
pub enum UaError {
    #[error("{ua}: nothing received within {0:?}", ua = .1)]
    Timeout(Duration, String),
    #[error("{ua}: expected {expected}, got {got}")]
    Unexpected {
        ua: String,
        expected: String,
        got: String,
    },
    #[error("{0}: transport: {1}")]
    Transport(String, String),
}

/// One line of a message ladder.
#[derive(Debug, Clone)]
pub struct LadderEntry {
    pub at: Instant,
    pub from: String,
    pub to: String,
    pub summary: String,
}

pub type Ladder = Arc<Mutex<Vec<LadderEntry>>>;

pub struct TestUa {
    pub name: String,
    pub proto: Proto,
    transport: Transport,
    events: mpsc::Receiver<TransportEvent>,
    ladder: Ladder,
    pub default_timeout: Duration,
    /// Skip retransmitted requests (same Call-ID, CSeq and branch), as a
    /// real UA's transaction layer would. Off by default: some tests count them.
    pub absorb_retransmissions: bool,
    seen: std::collections::HashSet<(String, String, String)>,
}

impl TestUa {
    pub async fn bind(
        name: &str,
        proto: Proto,
        addr: SocketAddr,
        ladder: Ladder,
    ) -> Result<Self, UaError> {
        let (tx, rx) = mpsc::channel(1024);
        let (udp, tcp) = match proto {
            Proto::Udp => (vec![addr], vec![]),
            Proto::Tcp => (vec![], vec![addr]),
        };
        let transport = Transport::bind(&udp, &tcp, Limits::default(), CoreInbox::single(tx))
            .await
            .map_err(|e| UaError::Transport(name.into(), e.to_string()))?;
        // Record arrivals as they happen, not when the script reads them.
        let (fwd_tx, fwd_rx) = mpsc::channel(1024);
        let (rec_ladder, me) = (ladder.clone(), name.to_string());
        tokio::spawn(async move {
            let mut rx: mpsc::Receiver<TransportEvent> = rx;
            while let Some(ev) = rx.recv().await {
                if let TransportEvent::Inbound(Inbound { message: Ok(m), .. }) = &ev {
                    record(&rec_ladder, "escalator", &me, m);
                }
                if fwd_tx.send(ev).await.is_err() {
                    return;
                }
            }
        });
        let rx = fwd_rx;
        Ok(TestUa {
            name: name.into(),
            proto,
            transport,
            events: rx,
            ladder,
            default_timeout: Duration::from_secs(5),
            absorb_retransmissions: false,
            seen: Default::default(),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        match self.proto {
            Proto::Udp => self.transport.udp_addrs()[0],
            Proto::Tcp => self.transport.tcp_addrs()[0],
        }
    }

    pub fn contact(&self) -> String {
        escalator_host::forward::contact_value(self.proto, self.addr()).replacen(
            "<sip:",
            &format!("<sip:{}@", self.name),
            1,
        )
    }

    pub fn via(&self, branch: &str) -> String {
        escalator_host::forward::via_value(self.proto, self.addr(), branch)
    }

    pub fn send(&self, to: SocketAddr, msg: &SipMessage) {
        self.record(&self.name, "escalator", msg);
        let target = Target {
            proto: self.proto,
            addr: to,
            conn: None,
        };
        self.transport.send(&target, msg.to_bytes(), None);
    }

    /// Send raw bytes (for malformed-input tests).
    pub fn send_raw(&self, to: SocketAddr, data: &[u8]) {
        let target = Target {
            proto: self.proto,
            addr: to,
            conn: None,
        };
        self.transport
            .send(&target, Bytes::copy_from_slice(data), None);
    }

    fn record(&self, from: &str, to: &str, msg: &SipMessage) {
        record(&self.ladder, from, to, msg);
    }

    /// The next message, whatever it is.
    pub async fn recv_within(
        &mut self,
        wait: Duration,
    ) -> Result<(SipMessage, SocketAddr), UaError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let (msg, from) = self.recv_any(deadline, wait).await?;
            if self.absorb_retransmissions && msg.is_request() {
                let key = (
                    msg.call_id().unwrap_or_default().to_string(),
                    msg.header("CSeq").unwrap_or_default().to_string(),
                    msg.top_via()
                        .and_then(|v| v.branch().map(str::to_string))
                        .unwrap_or_default(),
                );
                if !self.seen.insert(key) {
                    continue;
                }
            }
            return Ok((msg, from));
        }
    }

    async fn recv_any(
        &mut self,
        deadline: tokio::time::Instant,
        wait: Duration,
    ) -> Result<(SipMessage, SocketAddr), UaError> {
        let ev = tokio::time::timeout_at(deadline, self.events.recv())
            .await
            .map_err(|_| UaError::Timeout(wait, self.name.clone()))?;
        match ev {
            Some(TransportEvent::Inbound(Inbound {
                source,
                message: Ok(msg),
                ..
            })) => Ok((msg, source.addr)),
            Some(TransportEvent::Inbound(Inbound {
                message: Err(e), ..
            })) => Err(UaError::Transport(self.name.clone(), format!("{e:?}"))),
            Some(TransportEvent::SendFailed { target, .. }) => Err(UaError::Transport(
                self.name.clone(),
                format!("send to {target} failed"),
            )),
            None => Err(UaError::Transport(self.name.clone(), "closed".into())),
        }
    }

    pub async fn recv(&mut self) -> Result<(SipMessage, SocketAddr), UaError> {
        self.recv_within(self.default_timeout).await
    }

    /// The next request, which must have `method`.
    pub async fn expect_request(
        &mut self,
        method: &str,
    ) -> Result<(SipMessage, SocketAddr), UaError> {
        let (m, from) = self.recv().await?;
        if m.method() != Some(method) {
            return Err(self.unexpected(method, &m));
        }
        Ok((m, from))
    }

    /// The next response with `status`; 100 Trying is skipped unless asked for.
    pub async fn expect_response(&mut self, status: u16) -> Result<SipMessage, UaError> {
        loop {
            let (m, _) = self.recv().await?;
            if m.status() == Some(100) && status != 100 {
                continue;
            }
            if m.status() != Some(status) {
                return Err(self.unexpected(&status.to_string(), &m));
            }
            return Ok(m);
        }
    }

    /// Nothing but 100 Trying arrives for `wait`.
    pub async fn expect_silence(&mut self, wait: Duration) -> Result<(), UaError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv_within(left).await {
                Err(UaError::Timeout(..)) => return Ok(()),
                Err(e) => return Err(e),
                Ok((m, _)) if m.status() == Some(100) => continue,
                Ok((m, _)) => return Err(self.unexpected("nothing", &m)),
            }
        }
    }

    fn unexpected(&self, expected: &str, got: &SipMessage) -> UaError {
        UaError::Unexpected {
            ua: self.name.clone(),
            expected: expected.into(),
            got: got.summary(),
        }
    }

    /// A new outgoing dialog (not yet sent); `request` builds its INVITE.
    pub fn new_dialog(&self, to_uri: &str, peer: SocketAddr) -> UaDialog {
        UaDialog {
            call_id: format!("{}@{}", escalator_host::dialog::random_token(16), self.name),
            local_tag: escalator_host::dialog::new_tag(),
            remote_tag: None,
            local_uri: format!("<sip:{}@example.com>", self.name),
            remote_uri: format!("<{to_uri}>"),
            local_cseq: 0,
            remote_target: to_uri.into(),
            peer,
            invite_cseq: 0,
            route_set: Vec::new(),
        }
    }

    /// The dialog of an incoming initial INVITE, answered with `local_tag`.
    pub fn accept_dialog(&self, invite: &SipMessage, from: SocketAddr) -> UaDialog {
        let strip = |v: Option<&str>| {
            v.and_then(NameAddr::parse)
                .map(|mut n| {
                    n.remove_param("tag");
                    n.to_string()
                })
                .unwrap_or_default()
        };
        UaDialog {
            call_id: invite.call_id().unwrap_or_default().into(),
            local_tag: escalator_host::dialog::new_tag(),
            remote_tag: invite.from_tag(),
            local_uri: strip(invite.header("To")),
            remote_uri: strip(invite.header("From")),
            local_cseq: 0,
            remote_target: escalator_host::forward::contact_uri(invite).unwrap_or_default(),
            peer: from,
            invite_cseq: 0,
            route_set: invite
                .header_values("Record-Route")
                .iter()
                .map(|r| r.to_string())
                .collect(),
        }
    }

    /// A response to `req`; `tag` goes on the To when it has none.
    pub fn reply(
        &self,
        req: &SipMessage,
        status: u16,
        tag: &str,
        body: Option<(&str, &str)>,
    ) -> SipMessage {
        let mut r = escalator_host::forward::response_to(
            req,
            status,
            escalator_host::forward::reason(status),
            Some(tag),
        );
        if status > 100 && status < 300 {
            r.push_header("Contact", self.contact());
        }
        if let Some((ctype, b)) = body {
            r.push_header("Content-Type", ctype);
            r.set_body(Bytes::from(b.to_string()));
        }
        r
    }
}

/// Dialog state on the test UA's side.
#[derive(Debug, Clone)]
pub struct UaDialog {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: Option<String>,
    pub local_uri: String,
    pub remote_uri: String,
    pub local_cseq: u32,
    pub remote_target: String,
    pub peer: SocketAddr,
    pub invite_cseq: u32,
    /// Route headers of the requests this side sends (RFC 3261 §12.1):
    /// the Record-Route of the request that set the dialog up (UAS), or of
    /// its 2xx reversed (UAC).
    pub route_set: Vec<String>,
}

impl UaDialog {
    /// A new request in this dialog (Via and Contact from `ua`).
    pub fn request(&mut self, ua: &TestUa, method: &str, body: Option<(&str, &str)>) -> SipMessage {
        self.local_cseq += 1;
        if method == "INVITE" {
            self.invite_cseq = self.local_cseq;
        }
        self.build(ua, method, self.local_cseq, body)
    }

    pub fn ack(&self, ua: &TestUa) -> SipMessage {
        self.build(ua, "ACK", self.invite_cseq, None)
    }

    fn build(
        &self,
        ua: &TestUa,
        method: &str,
        cseq: u32,
        body: Option<(&str, &str)>,
    ) -> SipMessage {
        let mut m = SipMessage::request(method, &self.remote_target);
        m.push_header("Via", ua.via(&escalator_host::dialog::new_branch()));
        m.push_header("Max-Forwards", "70");
        for r in &self.route_set {
            m.push_header("Route", r.as_str());
        }
        m.push_header("From", format!("{};tag={}", self.local_uri, self.local_tag));
        match &self.remote_tag {
            Some(t) => m.push_header("To", format!("{};tag={t}", self.remote_uri)),
            None => m.push_header("To", self.remote_uri.clone()),
        }
        m.push_header("Call-ID", self.call_id.clone());
        m.push_header("CSeq", format!("{cseq} {method}"));
        if escalator_host::forward::sets_target(method) {
            m.push_header("Contact", ua.contact());
        }
        m.push_header("User-Agent", format!("escalator-test-ua/{}", ua.name));
        match body {
            Some((ctype, b)) => {
                m.push_header("Content-Type", ctype);
                m.set_body(Bytes::from(b.to_string()));
            }
            None => m.set_body(Bytes::new()),
        }
        m
    }

    /// Learn the remote tag, target and (from the first) route set from a
    /// 1xx/2xx response.
    pub fn update_from_response(&mut self, resp: &SipMessage) {
        if self.remote_tag.is_none() {
            self.remote_tag = resp.to_tag();
            self.route_set = resp
                .header_values("Record-Route")
                .iter()
                .rev()
                .map(|r| r.to_string())
                .collect();
        }
        if let Some(t) = escalator_host::forward::contact_uri(resp) {
            self.remote_target = t;
        }
    }
}

fn record(ladder: &Ladder, from: &str, to: &str, msg: &SipMessage) {
    if let Ok(mut l) = ladder.lock() {
        l.push(LadderEntry {
            at: Instant::now(),
            from: from.into(),
            to: to.into(),
            summary: msg.summary(),
        });
    }
}

/// Render a ladder as text, one line per message, in time order.
pub fn render_ladder(ladder: &Ladder) -> String {
    let mut entries = ladder.lock().map(|l| l.clone()).unwrap_or_default();
    entries.sort_by_key(|e| e.at);
    let Some(t0) = entries.first().map(|e| e.at) else {
        return String::new();
    };
    entries
        .iter()
        .map(|e| {
            format!(
                "{:>7.1} ms  {:>10} -> {:<10} {}\n",
                (e.at - t0).as_secs_f64() * 1000.0,
                e.from,
                e.to,
                e.summary
            )
        })
        .collect()
}
