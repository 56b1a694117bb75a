//! A peer that floods a UDP socket gets a socket of its own, so the peers
//! that shared the socket with it (the core, other clients, the calls in
//! progress) are no longer lost in its flood.
//!
//! The kernel picks one socket of a listen address's `SO_REUSEPORT` group
//! per datagram by a hash of its addresses (`udp.rs`), so one peer's flood
//! fills one socket, and every peer that hashes to the same socket loses
//! datagrams with it once the buffer overflows, whatever the receive loop
//! sheds. When a receive loop falls behind (its socket filling up, see
//! `backlog.rs`) and one peer sent at least half of what it just read
//! ([`dominant`]), the host opens one more socket in the group, bound to
//! the same address and *connected* to that peer: Linux delivers a
//! datagram to the group's socket connected to its exact source ahead of
//! the hash, and the hash skips connected sockets, so from then on the
//! peer's datagrams, and only its, land there, with a receive loop of their
//! own that sheds as any other.
//!
//! Order: datagrams the peer sent before the switch may still wait in the
//! old socket. The new loop reads nothing until the old one has read its
//! socket empty once (a read that did not fill a batch), which takes every
//! such datagram off, and handed it on, first (or for at most
//! [`HANDOVER_WAIT`]); so the peer's messages still reach the core in the
//! order they arrived.
//!
//! Release: a socket of its own that has read nothing for `isolated_idle`
//! (`Limits`) closes, and the peer is hashed onto the group again. At most
//! `isolate_flooding_peers` peers hold one at a time (0: never), so a
//! flood from many addresses cannot open sockets without bound.

use super::Shared;
use crate::metrics as m;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

/// How long a new socket of its own waits for the old one to be read
/// empty before it reads anyway.
pub(super) const HANDOVER_WAIT: Duration = Duration::from_secs(1);

/// The peer that sent at least half of `sources` (one read's datagrams),
/// if any: two peers sharing a flood evenly are isolated one read apart.
pub(super) fn dominant(sources: impl IntoIterator<Item = SocketAddr>) -> Option<SocketAddr> {
    let sources: Vec<SocketAddr> = sources.into_iter().collect();
    let half = sources.len().div_ceil(2);
    if sources.len() < 2 {
        return None;
    }
    sources
        .iter()
        .find(|&&s| sources.iter().filter(|&&o| o == s).count() >= half)
        .copied()
}

/// The peers that have a socket of their own now.
#[derive(Debug, Default)]
pub(super) struct Isolated(Mutex<HashSet<SocketAddr>>);

impl Isolated {
    /// Claims a place for `peer`: false when it has one already or `max`
    /// are taken.
    fn claim(&self, peer: SocketAddr, max: usize) -> bool {
        let Ok(mut peers) = self.0.lock() else {
            return false;
        };
        if peers.len() >= max || !peers.insert(peer) {
            return false;
        }
        metrics::gauge!(m::UDP_ISOLATED_PEERS).set(peers.len() as f64);
        true
    }

    fn release(&self, peer: SocketAddr) {
        if let Ok(mut peers) = self.0.lock() {
            peers.remove(&peer);
            metrics::gauge!(m::UDP_ISOLATED_PEERS).set(peers.len() as f64);
        }
    }

    #[cfg(test)]
    pub fn contains(&self, peer: SocketAddr) -> bool {
        self.0.lock().is_ok_and(|p| p.contains(&peer))
    }

    pub fn list(&self) -> Vec<SocketAddr> {
        self.0
            .lock()
            .map(|p| p.iter().copied().collect())
            .unwrap_or_default()
    }
}

/// What a receive loop serving one peer alone needs to know.
pub(super) struct Own {
    pub peer: SocketAddr,
    /// Sent by the loop the peer came from once it has read its socket
    /// empty (see the module doc).
    pub go: oneshot::Receiver<()>,
}

/// A socket of its own for a flooding peer, for the caller to read with a
/// receive loop of its own (`udp.rs`), and the signal its loop waits for.
pub(super) struct Moved {
    pub socket: Arc<UdpSocket>,
    pub own: Own,
    /// For the old loop to send once it has read its socket empty.
    pub go: oneshot::Sender<()>,
}

/// Gives `peer`, flooding the group at `local`, a socket of its own (see
/// the module doc); None when the peer is not moved (it has a socket
/// already, the limit is reached, or the socket could not be made:
/// logged).
pub(super) fn isolate(shared: &Shared, local: SocketAddr, peer: SocketAddr) -> Option<Moved> {
    let limits = shared.limits;
    if !shared.isolated.claim(peer, limits.isolate_flooding_peers) {
        return None;
    }
    let socket = match connected_socket(local, peer, limits.udp_receive_buffer) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            shared.isolated.release(peer);
            tracing::warn!(%peer, %local, error = %e, "cannot give a flooding peer a socket of its own");
            return None;
        }
    };
    metrics::counter!(m::UDP_ISOLATIONS).increment(1);
    tracing::warn!(%peer, %local, "peer floods its socket: moved to a socket of its own");
    shared.watch_drops(local, &socket);
    let (go, wait) = oneshot::channel();
    Some(Moved {
        socket,
        own: Own { peer, go: wait },
        go,
    })
}

/// The loop serving `peer` alone ends: its socket closes (the caller drops
/// it) and the peer goes back to the group.
pub(super) fn release(shared: &Shared, socket: &UdpSocket, peer: SocketAddr) {
    shared.unwatch_drops(socket);
    shared.isolated.release(peer);
    tracing::info!(%peer, "flooding peer quiet: back on the shared sockets");
}

/// A socket of the `SO_REUSEPORT` group at `local`, connected to `peer`.
fn connected_socket(
    local: SocketAddr,
    peer: SocketAddr,
    receive_buffer: usize,
) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(local), Type::DGRAM, Some(Protocol::UDP))?;
    #[cfg(unix)]
    s.set_reuse_port(true)?;
    if receive_buffer > 0 {
        // As for the group's sockets; the kernel may cap it (logged there).
        let _ = s.set_recv_buffer_size(receive_buffer);
    }
    s.bind(&local.into())?;
    s.connect(&peer.into())?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn the_dominant_peer_sent_at_least_half_of_a_read() {
        let (a, b, c) = (addr(1), addr(2), addr(3));
        assert_eq!(dominant([a, b, a, c, a, b, a, c]), Some(a));
        assert_eq!(dominant([b, a, a, b]), Some(b), "even: the first");
        assert_eq!(dominant([a, b, c, a, b, c, a, b]), None);
        assert_eq!(dominant([a, a, a]), Some(a));
        assert_eq!(dominant([a]), None, "one datagram says nothing");
        assert_eq!(dominant([]), None);
    }

    #[test]
    fn a_peer_holds_one_place_and_the_places_are_bounded() {
        let isolated = Isolated::default();
        assert!(isolated.claim(addr(1), 2));
        assert!(!isolated.claim(addr(1), 2), "has one already");
        assert!(isolated.claim(addr(2), 2));
        assert!(!isolated.claim(addr(3), 2), "the limit");
        isolated.release(addr(1));
        assert!(!isolated.contains(addr(1)));
        assert!(isolated.claim(addr(3), 2));
        assert!(!isolated.claim(addr(4), 0), "0: never");
    }
}
