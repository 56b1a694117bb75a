//! UDP and TCP transports on tokio. Messages are framed and parsed in the I/O
//! tasks (so parsing runs on every core) and handed to the core as events.

mod admission;
mod backlog;
#[cfg(target_os = "linux")]
mod drops;
mod inbox;
mod isolation;
mod tcp;
mod udp;
mod udp_batch;

pub use admission::RETRY_AFTER_SECONDS;
pub use inbox::{lanes, Closed, CoreInbox, Delivery, Lane, LaneReceivers, Lanes};

use crate::sip::framing::FramingError;
use crate::sip::message::ParseLimits;
use crate::sip::{ParseError, SipMessage};
use bytes::Bytes;
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Proto {
    Udp,
    Tcp,
}

impl Proto {
    pub fn is_reliable(self) -> bool {
        self == Proto::Tcp
    }

    pub fn via_name(self) -> &'static str {
        match self {
            Proto::Udp => "UDP",
            Proto::Tcp => "TCP",
        }
    }

    pub fn from_name(s: &str) -> Option<Proto> {
        match s.to_ascii_lowercase().as_str() {
            "udp" => Some(Proto::Udp),
            "tcp" => Some(Proto::Tcp),
            _ => None,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
        })
    }
}

pub type ConnId = u64;

/// Where a message came from, or where one is to be sent. For TCP, `conn`
/// names the connection (responses go back on the connection of the request).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Target {
    pub proto: Proto,
    pub addr: SocketAddr,
    pub conn: Option<ConnId>,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.proto, self.addr)
    }
}

/// The host's listening addresses per transport.
#[derive(Debug, Clone, Default)]
pub struct LocalAddrs {
    pub udp: Vec<SocketAddr>,
    pub tcp: Vec<SocketAddr>,
}

impl LocalAddrs {
    /// The address to advertise (Via, Contact) toward `remote`: one of the
    /// same family when there is one.
    pub fn for_remote(&self, proto: Proto, remote: SocketAddr) -> Option<SocketAddr> {
        let addrs = match proto {
            Proto::Udp => &self.udp,
            Proto::Tcp => &self.tcp,
        };
        addrs
            .iter()
            .copied()
            .find(|a| a.is_ipv4() == remote.is_ipv4())
            .or_else(|| addrs.first().copied())
    }
}

#[derive(Debug)]
pub enum InboundError {
    /// Refused by the grammar, or broken in its body or size; `head` is
    /// what the host can answer from (a lenient reading when the grammar
    /// refused the header section itself), `status` the answer RFC 3261
    /// names (400, 505 for another SIP version, 513 too large).
    BadMessage {
        head: Box<SipMessage>,
        error: String,
        status: u16,
        /// The problem's fixed name (`escalator_sip_parse_errors_total`).
        reason: &'static str,
    },
    /// Nothing usable could be parsed.
    Unparseable(String),
}

#[derive(Debug)]
pub struct Inbound {
    pub source: Target,
    pub local: SocketAddr,
    pub message: Result<SipMessage, InboundError>,
    /// When the bytes were read from the socket, before parsing.
    pub received: std::time::Instant,
}

#[derive(Debug)]
pub enum TransportEvent {
    Inbound(Inbound),
    /// A message could not be sent (TCP connect or write failed).
    SendFailed {
        target: Target,
        token: Option<u64>,
    },
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub max_headers: usize,
    /// SO_RCVBUF asked for each UDP socket (0: the kernel's default).
    pub udp_receive_buffer: usize,
    /// Sockets (each with its receive loop) per UDP listen address; None:
    /// two per CPU, 2 to 16. See `udp::bind_group`.
    pub udp_receivers: Option<usize>,
    /// A receive loop that finds more than this share (%) of its socket's
    /// buffer taken answers the new requests it reads 503 itself (see
    /// `backlog.rs`); None: never.
    pub shed_at_socket_fill: Option<u32>,
    /// Peers that may hold a UDP socket of their own at once, when one
    /// floods the socket it shares with others (see `isolation.rs`); 0:
    /// never.
    pub isolate_flooding_peers: usize,
    /// A socket of its own closes after reading nothing for this long.
    pub isolated_idle: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 64 * 1024,
            max_headers: 256,
            udp_receive_buffer: 0,
            udp_receivers: None,
            // The host's configuration turns it on (`limits` in the
            // config); a bare transport (a test UA) sheds nothing.
            shed_at_socket_fill: None,
            isolate_flooding_peers: 0,
            isolated_idle: std::time::Duration::from_secs(10),
        }
    }
}

/// Parse one framed message, keeping the headers when only the body is wrong.
pub fn parse_inbound(data: &[u8], limits: Limits) -> Result<SipMessage, InboundError> {
    let pl = ParseLimits {
        max_headers: limits.max_headers,
    };
    if data.len() > limits.max_message_bytes {
        return Err(match SipMessage::parse_head(data, pl) {
            Ok((head, _)) => InboundError::BadMessage {
                head: Box::new(head),
                error: format!("message of {} bytes exceeds limit", data.len()),
                status: 513,
                reason: "too-large",
            },
            Err(e) => {
                InboundError::Unparseable(format!("oversized message ({} bytes): {e}", data.len()))
            }
        });
    }
    match SipMessage::parse(data, pl) {
        Ok(m) => Ok(m),
        Err(e @ (ParseError::ContentLength(_) | ParseError::ShortBody { .. })) => {
            match SipMessage::parse_head(data, pl) {
                Ok((head, _)) => Err(InboundError::BadMessage {
                    head: Box::new(head),
                    error: e.to_string(),
                    status: 400,
                    reason: e.label(),
                }),
                Err(e) => Err(InboundError::Unparseable(e.to_string())),
            }
        }
        // Refused by the grammar: answered 400 (when the request says enough
        // to be answered), never forwarded.
        Err(e) => match SipMessage::answerable_head(data) {
            Some(head) => Err(InboundError::BadMessage {
                head: Box::new(head),
                status: if matches!(e, ParseError::Version(_)) {
                    505
                } else {
                    400
                },
                error: e.to_string(),
                reason: e.label(),
            }),
            None => Err(InboundError::Unparseable(e.to_string())),
        },
    }
}

/// A framing error on a stream: answered (400, 505, or 513 when too
/// large) when the refused message says enough to be answered; the
/// connection closes after it either way.
pub(crate) fn framing_error(e: FramingError, buffered: &[u8]) -> InboundError {
    let status = match &e {
        FramingError::TooLarge(_) => 513,
        FramingError::Malformed(ParseError::Version(_)) => 505,
        _ => 400,
    };
    let reason = match &e {
        FramingError::TooLarge(_) => "too-large",
        FramingError::NoContentLength => "no-content-length",
        FramingError::Malformed(p) => p.label(),
    };
    match SipMessage::answerable_head(buffered) {
        Some(head) => InboundError::BadMessage {
            head: Box::new(head),
            error: format!("stream framing: {e}"),
            status,
            reason,
        },
        None => InboundError::Unparseable(format!("stream framing: {e}")),
    }
}

/// A message queued on a TCP connection, with the token to report on failure.
type Outgoing = (Bytes, Option<u64>);

struct ConnEntry {
    remote: SocketAddr,
    writer: mpsc::UnboundedSender<Outgoing>,
}

#[derive(Default)]
struct Conns {
    by_id: HashMap<ConnId, ConnEntry>,
    by_remote: HashMap<SocketAddr, ConnId>,
}

/// A UDP listen address (read once at bind time) and the queue of its
/// sender task: the core never makes a send syscall itself.
pub(crate) struct UdpEndpoint {
    local: SocketAddr,
    out: mpsc::UnboundedSender<(Bytes, SocketAddr, Option<u64>)>,
}

pub(crate) struct Shared {
    udp: Vec<UdpEndpoint>,
    tcp_local: Vec<SocketAddr>,
    conns: Mutex<Conns>,
    next_conn: AtomicU64,
    events: CoreInbox,
    limits: Limits,
    cancel: CancellationToken,
    /// Peers given a UDP socket of their own (`isolation.rs`).
    isolated: isolation::Isolated,
    /// The UDP sockets whose kernel drops are published (`drops.rs`).
    #[cfg(target_os = "linux")]
    watched: Arc<Mutex<drops::Watched>>,
}

/// Handle to the transports; cheap to clone.
#[derive(Clone)]
pub struct Transport {
    shared: Arc<Shared>,
}

impl Transport {
    /// Bind every listen address and start the receive tasks.
    pub async fn bind(
        udp: &[SocketAddr],
        tcp: &[SocketAddr],
        limits: Limits,
        events: CoreInbox,
    ) -> std::io::Result<Transport> {
        // Twice as many sockets as CPUs by default: two busy peers (a load
        // generator's two ends, a core and a big client) then seldom share
        // one loop, which would serve both alone.
        let receivers = limits.udp_receivers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(4, |n| (2 * n.get()).clamp(2, 16))
        });
        let mut udp_sockets = Vec::new();
        let mut udp_groups = Vec::new();
        for addr in udp {
            let group = udp::bind_group(*addr, receivers, limits.udp_receive_buffer)
                .map_err(|e| std::io::Error::new(e.kind(), format!("bind udp {addr}: {e}")))?;
            let local = group[0].local_addr()?;
            let (out, queue) = mpsc::unbounded_channel();
            let group: Vec<Arc<UdpSocket>> = group.into_iter().map(Arc::new).collect();
            udp_sockets.push(UdpEndpoint { local, out });
            udp_groups.push((group, local, queue));
        }
        let mut listeners = Vec::new();
        for addr in tcp {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| std::io::Error::new(e.kind(), format!("bind tcp {addr}: {e}")))?;
            listeners.push(l);
        }
        let shared = Arc::new(Shared {
            tcp_local: listeners
                .iter()
                .filter_map(|l| l.local_addr().ok())
                .collect(),
            udp: udp_sockets,
            conns: Mutex::new(Conns::default()),
            next_conn: AtomicU64::new(1),
            events,
            limits,
            cancel: CancellationToken::new(),
            isolated: isolation::Isolated::default(),
            #[cfg(target_os = "linux")]
            watched: Default::default(),
        });
        // One receive loop per socket of a group: each peer is read by one
        // loop, in arrival order; peers are spread over the loops.
        for (group, local, queue) in udp_groups {
            for socket in &group {
                shared.watch_drops(local, socket);
                tokio::spawn(udp::receive_loop(
                    shared.clone(),
                    socket.clone(),
                    local,
                    None,
                ));
            }
            // Sends leave through the group's first socket (same address).
            tokio::spawn(udp::send_loop(shared.clone(), group[0].clone(), queue));
        }
        #[cfg(target_os = "linux")]
        if !udp.is_empty() {
            tokio::spawn(drops::export(shared.watched.clone(), shared.cancel.clone()));
        }
        for l in listeners {
            tokio::spawn(tcp::accept_loop(shared.clone(), l));
        }
        Ok(Transport { shared })
    }

    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.shared.udp.iter().map(|e| e.local).collect()
    }

    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.shared.tcp_local.clone()
    }

    /// The listening addresses, as a plain value (for the layers that build
    /// Via and Contact without doing I/O).
    pub fn local_addrs(&self) -> LocalAddrs {
        LocalAddrs {
            udp: self.udp_addrs(),
            tcp: self.tcp_addrs(),
        }
    }

    pub fn supports(&self, proto: Proto) -> bool {
        match proto {
            Proto::Udp => !self.shared.udp.is_empty(),
            Proto::Tcp => !self.shared.tcp_local.is_empty(),
        }
    }

    /// Send without waiting. Failures come back as [`TransportEvent::SendFailed`].
    pub fn send(&self, target: &Target, data: Bytes, token: Option<u64>) {
        self.shared.send(target, data, token)
    }

    /// The peers that flooded a shared UDP socket and read from a socket
    /// of their own now (see `isolation.rs`).
    pub fn isolated_peers(&self) -> Vec<SocketAddr> {
        self.shared.isolated.list()
    }

    pub fn open_connections(&self) -> usize {
        self.shared.conns.lock().map(|c| c.by_id.len()).unwrap_or(0)
    }

    /// Stop every listener and connection task.
    pub fn shutdown(&self) {
        self.shared.cancel.cancel();
    }
}

impl Shared {
    /// Hands `ev` to the core (see `inbox.rs`), answering a new request
    /// 503 at the edge when its shard cannot take it; false once the core
    /// has stopped.
    async fn deliver(self: &Arc<Self>, ev: TransportEvent) -> bool {
        match self.events.send(ev).await {
            Ok(Delivery::Queued | Delivery::Dropped) => true,
            Ok(Delivery::Full(inbound)) => {
                admission::shed(self, *inbound, crate::metrics::SHED_AT_EDGE);
                true
            }
            Err(Closed) => false,
        }
    }

    fn send(self: &Arc<Self>, target: &Target, data: Bytes, token: Option<u64>) {
        match target.proto {
            Proto::Udp => udp::send(self, target, data, token),
            Proto::Tcp => tcp::send(self, target, data, token),
        }
    }

    /// Counts `socket`'s kernel drops under `local` from now on
    /// (`drops.rs`; Linux).
    fn watch_drops(&self, local: SocketAddr, socket: &UdpSocket) {
        #[cfg(target_os = "linux")]
        if let (Some(inode), Ok(mut w)) = (drops::socket_inode(socket), self.watched.lock()) {
            w.add(local, inode);
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (local, socket);
    }

    /// `socket` is closing: what it dropped stays counted.
    fn unwatch_drops(&self, socket: &UdpSocket) {
        #[cfg(target_os = "linux")]
        if let (Some(inode), Ok(mut w)) = (drops::socket_inode(socket), self.watched.lock()) {
            w.retire(inode);
        }
        #[cfg(not(target_os = "linux"))]
        let _ = socket;
    }

    fn report_failure(&self, target: Target, token: Option<u64>) {
        self.events
            .try_send(TransportEvent::SendFailed { target, token });
    }

    fn next_conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }
}
