//! A sans-I/O rig for the B2BUA: the logic of one shard and its entities,
//! driven with messages as they would arrive from alice (a client) and from
//! the core, on tokio's paused clock. What the host sends is read back from
//! the entities' output, parsed. No socket anywhere: each race test says
//! its wire order and checks what leaves the host, message by message.

#![allow(dead_code)]

use bytes::Bytes;
use escalator_host::config::SourceMatch;
use escalator_host::entities::{EntitySettings, TimerKey};
use escalator_host::forward::{reason, response_to};
use escalator_host::logic::{B2bua, LogicSettings};
use escalator_host::plugins::PluginSet;
use escalator_host::routing::Router;
use escalator_host::sip::SipMessage;
use escalator_host::transaction::TimerConfig;
use escalator_host::transport::{LocalAddrs, Proto, Target};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub const HOST: &str = "127.0.0.2:5060";
pub const ALICE: &str = "127.0.0.1:5061";
pub const CORE: &str = "127.0.0.3:5060";
/// A second client behind the host (reached through the core).
pub const BOB: &str = "127.0.0.4:5062";

pub fn addr(a: &str) -> SocketAddr {
    a.parse().expect("literal address")
}

fn udp(a: &str) -> Target {
    Target {
        proto: Proto::Udp,
        addr: addr(a),
        conn: None,
    }
}

/// A message the host sent, and where.
#[derive(Debug, Clone)]
pub struct Sent {
    pub to: SocketAddr,
    pub msg: SipMessage,
}

impl Sent {
    pub fn is_request(&self, method: &str) -> bool {
        self.msg.method() == Some(method)
    }

    pub fn is_response(&self, status: u16, method: &str) -> bool {
        self.msg.status() == Some(status) && self.msg.cseq().is_some_and(|c| c.1 == method)
    }

    /// `"INVITE→core"`, `"487/INVITE→alice"`: for wire-order assertions.
    pub fn line(&self) -> String {
        let to = match self.to.to_string().as_str() {
            ALICE => "alice",
            CORE => "core",
            BOB => "bob",
            _ => "elsewhere",
        };
        match (self.msg.method(), self.msg.status(), self.msg.cseq()) {
            (Some(m), _, _) => format!("{m}→{to}"),
            (None, Some(s), Some((_, m))) => format!("{s}/{m}→{to}"),
            _ => format!("?→{to}"),
        }
    }
}

pub struct Rig {
    pub logic: B2bua,
}

impl Rig {
    /// One shard, UDP, default timers (T1 500 ms), Timer C 180 s; the core
    /// next hop is [`CORE`], which is also the only source "from the core".
    pub fn new() -> Rig {
        let entities = EntitySettings {
            timers: TimerConfig::default(),
            timer_c: Duration::from_secs(180),
        };
        let settings = LogicSettings {
            router: Router {
                core: udp(CORE),
                sources: vec![SourceMatch::Ip(addr(CORE).ip())],
            },
            max_calls: 1000,
            replaces_from_clients: false,
            pins: Arc::default(),
            shed_after: Some(Duration::from_millis(200)),
        };
        let locals = LocalAddrs {
            udp: vec![addr(HOST)],
            tcp: vec![],
        };
        let logic = B2bua::new(
            entities,
            settings,
            locals,
            Arc::new(PluginSet::empty()),
            (0, 1),
            Arc::new(|| 0),
        );
        Rig { logic }
    }

    fn deliver(&mut self, from: &str, msg: &SipMessage) {
        let bytes = msg.to_bytes();
        let parsed = SipMessage::parse(&bytes, Default::default()).expect("test message parses");
        self.logic.handle_inbound(udp(from), Ok(parsed));
    }

    /// Bytes from alice as the transport reads them (the edge's grammar).
    pub fn alice_sends_raw(&mut self, bytes: &[u8]) {
        let read = escalator_host::transport::parse_inbound(
            bytes,
            escalator_host::transport::Limits::default(),
        );
        self.logic.handle_inbound(udp(ALICE), read);
    }

    pub fn alice_sends(&mut self, msg: &SipMessage) {
        self.deliver(ALICE, msg)
    }

    pub fn core_sends(&mut self, msg: &SipMessage) {
        self.deliver(CORE, msg)
    }

    pub fn bob_sends(&mut self, msg: &SipMessage) {
        self.deliver(BOB, msg)
    }

    /// Everything the host sent since the last call, in order.
    pub fn sent(&mut self) -> Vec<Sent> {
        let mut out = Vec::new();
        while let Some(t) = self.logic.entities_mut().poll_transmit() {
            let msg = SipMessage::parse(&t.bytes, Default::default()).expect("the host sends SIP");
            out.push(Sent {
                to: t.target.addr,
                msg,
            });
        }
        out
    }

    /// Let `d` pass on the paused clock, firing every timer that falls due.
    pub async fn run_for(&mut self, d: Duration) {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let key: Option<TimerKey> = tokio::select! {
                biased;
                key = self.logic.entities_mut().next_timer() => Some(key),
                _ = tokio::time::sleep_until(deadline) => None,
            };
            match key {
                Some(key) => self.logic.handle_timer(key),
                None => return,
            }
        }
    }

    pub fn calls(&self) -> usize {
        self.logic.entities().calls().call_count()
    }

    pub fn transactions(&self) -> usize {
        self.logic.entities().transaction_count()
    }
}

/// alice's side of her call: builds what alice sends.
pub struct Alice {
    pub call_id: String,
    pub tag: String,
    pub cseq: u32,
    pub remote_tag: Option<String>,
}

impl Alice {
    pub fn new(call: &str) -> Alice {
        Alice {
            call_id: format!("{call}@alice"),
            tag: "a1".into(),
            cseq: 0,
            remote_tag: None,
        }
    }

    /// A request in (or opening) alice's dialog, with a fresh branch.
    pub fn request(&mut self, method: &str, branch: &str) -> SipMessage {
        if method != "ACK" && method != "CANCEL" {
            self.cseq += 1;
        }
        let mut m = SipMessage::request(method, "sip:bob@example.com");
        m.push_header("Via", format!("SIP/2.0/UDP {ALICE};branch=z9hG4bK{branch}"));
        m.push_header("Max-Forwards", "70");
        m.push_header("From", format!("<sip:alice@example.com>;tag={}", self.tag));
        match &self.remote_tag {
            Some(t) => m.push_header("To", format!("<sip:bob@example.com>;tag={t}")),
            None => m.push_header("To", "<sip:bob@example.com>"),
        }
        m.push_header("Call-ID", self.call_id.clone());
        m.push_header("CSeq", format!("{} {method}", self.cseq));
        if method == "INVITE" {
            m.push_header("Contact", format!("<sip:alice@{ALICE}>"));
            m.push_header("Content-Type", "application/sdp");
            m.set_body(Bytes::from_static(
                b"v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\ns=-\r\n",
            ));
        } else {
            m.set_body(Bytes::new());
        }
        m
    }

    /// The CANCEL of `invite` (same branch and CSeq number, RFC 3261 §9.1).
    pub fn cancel(&self, invite: &SipMessage) -> SipMessage {
        let mut c = SipMessage::request("CANCEL", invite.request_uri().unwrap_or_default());
        for name in ["Via", "Max-Forwards", "From", "To", "Call-ID"] {
            c.push_header(name, invite.header(name).unwrap_or_default());
        }
        c.push_header(
            "CSeq",
            format!("{} CANCEL", invite.cseq().map_or(1, |c| c.0)),
        );
        c.set_body(Bytes::new());
        c
    }

    /// The ACK of a non-2xx final response to `invite` (its branch).
    pub fn ack_failure(&self, invite: &SipMessage, resp: &SipMessage) -> SipMessage {
        let mut a = SipMessage::request("ACK", invite.request_uri().unwrap_or_default());
        for name in ["Via", "Max-Forwards", "From", "Call-ID"] {
            a.push_header(name, invite.header(name).unwrap_or_default());
        }
        a.push_header("To", resp.header("To").unwrap_or_default());
        a.push_header("CSeq", format!("{} ACK", invite.cseq().map_or(1, |c| c.0)));
        a.set_body(Bytes::new());
        a
    }
}

/// A peer's response to a request the host sent (`tag` on the To; a
/// Contact on 1xx/2xx to dialog-making requests).
pub fn reply(req: &SipMessage, status: u16, tag: &str, contact: &str) -> SipMessage {
    let mut r = response_to(req, status, reason(status), Some(tag));
    if (101..300).contains(&status) {
        r.push_header("Contact", format!("<sip:peer@{contact}>"));
    }
    r.set_body(Bytes::new());
    r
}

/// A request from the core in the dialog of the INVITE the host sent it
/// (`invite`), the core's tag being `core_tag`.
pub fn core_request(invite: &SipMessage, core_tag: &str, method: &str, cseq: u32) -> SipMessage {
    let mut m = SipMessage::request(method, &format!("sip:escalator@{HOST}"));
    m.push_header(
        "Via",
        format!("SIP/2.0/UDP {CORE};branch=z9hG4bKcore{method}{cseq}"),
    );
    m.push_header("Max-Forwards", "70");
    let to = invite.header("To").unwrap_or_default();
    m.push_header("From", format!("{to};tag={core_tag}"));
    m.push_header("To", invite.header("From").unwrap_or_default());
    m.push_header("Call-ID", invite.call_id().unwrap_or_default());
    m.push_header("CSeq", format!("{cseq} {method}"));
    if method == "INVITE" {
        m.push_header("Contact", format!("<sip:peer@{CORE}>"));
    }
    m.set_body(Bytes::new());
    m
}

/// The one message in `sent` that `pick` selects; fails with the list.
pub fn one(sent: &[Sent], what: &str, pick: impl Fn(&Sent) -> bool) -> SipMessage {
    let found: Vec<&Sent> = sent.iter().filter(|s| pick(s)).collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {what}, host sent: {:?}",
        lines(sent)
    );
    found[0].msg.clone()
}

pub fn lines(sent: &[Sent]) -> Vec<String> {
    sent.iter().map(Sent::line).collect()
}

/// alice's INVITE through the host: returns (alice's INVITE, the INVITE the
/// core received).
pub fn invite_through(rig: &mut Rig, alice: &mut Alice) -> (SipMessage, SipMessage) {
    let invite = alice.request("INVITE", "inv1");
    rig.alice_sends(&invite);
    let sent = rig.sent();
    assert_eq!(lines(&sent), ["100/INVITE→alice", "INVITE→core"]);
    (invite, sent[1].msg.clone())
}

/// alice's call through the host, answered 200 by the core (tag `c1`) and
/// ACKed: returns alice and the INVITE as the core received it.
pub fn established_call(rig: &mut Rig, call: &str) -> (Alice, SipMessage) {
    let mut alice = Alice::new(call);
    let (_, at_core) = invite_through(rig, &mut alice);
    rig.core_sends(&reply(&at_core, 200, "c1", CORE));
    let ok = one(&rig.sent(), "200", |s| s.is_response(200, "INVITE"));
    alice.remote_tag = ok.to_tag();
    rig.alice_sends(&alice.request("ACK", "ack1"));
    assert_eq!(lines(&rig.sent()), ["ACK→core"]);
    (alice, at_core)
}

/// A request as a proxy forwards it: its Via on top (RFC 3261 §16.6).
pub fn proxied(req: &SipMessage, branch: &str) -> SipMessage {
    let mut m = req.clone();
    m.headers.insert(
        0,
        escalator_host::sip::Header {
            name: "Via".into(),
            value: format!("SIP/2.0/UDP {CORE};branch=z9hG4bK{branch}"),
        },
    );
    m
}

/// A response as a proxy forwards it: its own Via (the top one) removed.
pub fn unproxied(resp: &SipMessage) -> SipMessage {
    let mut m = resp.clone();
    if let Some(i) = m
        .headers
        .iter()
        .position(|h| h.name.eq_ignore_ascii_case("Via"))
    {
        m.headers.remove(i);
    }
    m
}

/// The counter `name` per value of its label `label`, sorted (from a
/// metrics-util debugging recorder's snapshotter).
pub fn counted_by(
    snapshots: &metrics_util::debugging::Snapshotter,
    name: &str,
    label: &str,
) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = snapshots
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == name)
        .filter_map(|(key, _, _, value)| {
            let l = key.key().labels().find(|l| l.key() == label)?;
            match value {
                metrics_util::debugging::DebugValue::Counter(n) => Some((l.value().to_string(), n)),
                _ => None,
            }
        })
        .collect();
    out.sort();
    out
}
