//! UDP: binding a listen address, the receive loops and the send loop.
//!
//! Order: UDP itself promises none, but the host must not add reordering of
//! its own (a CANCEL handled before its INVITE, a BYE before the ACK, two
//! NOTIFYs swapped). A listen address is served by a group of sockets bound
//! with `SO_REUSEPORT` (Linux), one receive loop each: the kernel hashes a
//! datagram's addresses and ports to pick the socket, so all datagrams of
//! one peer are read by one loop, in arrival order, and handed to the core
//! in that order, while different peers are read and parsed in parallel.
//! A peer that floods its socket is moved to a socket of its own in the
//! group, without breaking that order (`isolation.rs`).

use super::isolation::{self, Own, HANDOVER_WAIT};
use super::udp_batch::{send_batch, BatchReader};
use super::{parse_inbound, Inbound, Lane, Proto, Shared, Target, TransportEvent};
use crate::metrics;
use bytes::Bytes;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

/// Binds `addr` for receiving with `count` sockets (see the module doc),
/// each asking for a receive buffer of `receive_buffer` bytes (0: the
/// kernel's default). Fails like a plain bind when the address is taken,
/// even by sockets that allow sharing it: a host started twice must not
/// quietly split a port with the first one.
pub(super) fn bind_group(
    addr: SocketAddr,
    count: usize,
    receive_buffer: usize,
) -> io::Result<Vec<UdpSocket>> {
    // A plain bind first: it conflicts with any socket on the address
    // (SO_REUSEPORT ones included) and picks the port when `addr` has none.
    let probe = std::net::UdpSocket::bind(addr)?;
    // Shared even when alone: a flooding peer's socket of its own joins
    // the group (`isolation.rs`).
    #[cfg(target_os = "linux")]
    let sockets = {
        let local = probe.local_addr()?;
        drop(probe);
        (0..count.max(1))
            .map(|_| shared_socket(local))
            .collect::<io::Result<Vec<_>>>()?
    };
    // Elsewhere SO_REUSEPORT does not spread one address's datagrams by
    // peer: one socket, one loop.
    #[cfg(not(target_os = "linux"))]
    let sockets = {
        let _ = count;
        vec![probe]
    };
    sockets
        .into_iter()
        .map(|s| {
            s.set_nonblocking(true)?;
            if receive_buffer > 0 {
                set_receive_buffer(&s, receive_buffer);
            }
            UdpSocket::from_std(s)
        })
        .collect()
}

/// A socket bound to `local` with `SO_REUSEPORT`, one of a group.
#[cfg(target_os = "linux")]
fn shared_socket(local: SocketAddr) -> io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(local), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_port(true)?;
    s.bind(&local.into())?;
    Ok(s.into())
}

/// Asks for a receive buffer of `bytes`, so a burst waits in the kernel
/// rather than being dropped. Failing that is worth a warning, not a stop.
fn set_receive_buffer(socket: &std::net::UdpSocket, bytes: usize) {
    let local = socket.local_addr().ok();
    let sock = socket2::SockRef::from(socket);
    if let Err(e) = sock.set_recv_buffer_size(bytes) {
        tracing::warn!(?local, bytes, error = %e, "cannot set the UDP receive buffer");
        return;
    }
    let Ok(reported) = sock.recv_buffer_size() else {
        return;
    };
    let granted = granted_receive_buffer(reported);
    if granted < bytes {
        tracing::warn!(
            ?local,
            asked = bytes,
            granted,
            "UDP receive buffer capped by the kernel; raise net.core.rmem_max to absorb bursts"
        );
    } else {
        tracing::debug!(?local, granted, "UDP receive buffer set");
    }
}

/// The usable size behind SO_RCVBUF's reading: Linux reports twice what it
/// granted (it counts its own bookkeeping).
pub(super) fn granted_receive_buffer(reported: usize) -> usize {
    if cfg!(target_os = "linux") {
        reported / 2
    } else {
        reported
    }
}

/// Datagrams read per system call at most (see `udp_batch.rs`).
const BATCH: usize = 8;

/// Reads one socket of a group, or, with `own`, the socket of one
/// flooding peer (`isolation.rs`), which ends once the peer is quiet.
pub(super) async fn receive_loop(
    shared: Arc<Shared>,
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    own: Option<Own>,
) {
    let mut reader = BatchReader::new(BATCH);
    let mut answers = Vec::with_capacity(BATCH);
    // Sockets of their own waiting for this loop to read its socket empty.
    let mut handovers: Vec<oneshot::Sender<()>> = Vec::new();
    let peer = match own {
        Some(Own { peer, go }) => {
            tokio::select! {
                _ = tokio::time::timeout(HANDOVER_WAIT, go) => {}
                _ = shared.cancel.cancelled() => return,
            }
            Some(peer)
        }
        None => None,
    };
    let idle = shared.limits.isolated_idle;
    loop {
        // Only a socket of its own ends when quiet (no clock read otherwise).
        let quiet = async {
            match peer {
                Some(_) => tokio::time::sleep(idle).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = reader.read(&socket) => if let Err(e) = r {
                // ICMP port unreachable surfaces here on some systems; keep going.
                tracing::debug!(error = %e, "udp receive error");
                continue;
            },
            _ = shared.cancel.cancelled() => return,
            _ = quiet => {
                if let Some(peer) = peer {
                    isolation::release(&shared, &socket, peer);
                }
                return;
            }
        }
        let received = std::time::Instant::now();
        // Falling behind (a full batch, and the socket filling up): new
        // requests read now are answered 503 here (see `backlog.rs`), and
        // a peer sending most of them gets a socket of its own.
        let behind = reader.was_full()
            && shared
                .limits
                .shed_at_socket_fill
                .is_some_and(|p| super::backlog::filled_over(&socket, p));
        if behind && peer.is_none() {
            let flooding = isolation::dominant(reader.datagrams().map(|(_, from)| from));
            if let Some(moved) = flooding.and_then(|f| isolation::isolate(&shared, local, f)) {
                handovers.push(moved.go);
                read_own_socket(shared.clone(), moved.socket, local, moved.own);
            }
        }
        for (data, from) in reader.datagrams() {
            if data.iter().all(|b| b.is_ascii_whitespace()) {
                continue; // keep-alive
            }
            let message = parse_inbound(data, shared.limits);
            let ev = TransportEvent::Inbound(Inbound {
                source: Target {
                    proto: Proto::Udp,
                    addr: from,
                    conn: None,
                },
                local,
                message,
                received,
            });
            if behind && Lane::of(&ev) == Lane::New {
                // Answered from this loop's own socket (the same address):
                // no hand-over to the send task while the loop is behind.
                let TransportEvent::Inbound(inbound) = ev else {
                    continue;
                };
                if let Some(bytes) = super::admission::answer(inbound, metrics::SHED_AT_SOCKET) {
                    answers.push((bytes, from));
                }
                continue;
            }
            if !shared.deliver(ev).await {
                return;
            }
        }
        if !answers.is_empty() {
            // One system call for the batch's 503s.
            send_batch(&socket, &answers);
            answers.clear();
        }
        if !reader.was_full() {
            // Read empty: whatever a moved peer sent before its move has
            // been handed on; its own loop may start.
            for go in handovers.drain(..) {
                let _ = go.send(());
            }
        }
        // The shards run on threads of their own (`host.rs`), so nothing
        // waits behind this loop but the other loops: one yield per batch.
        tokio::task::yield_now().await;
    }
}

/// Starts the receive loop of a flooding peer's socket of its own. Not
/// async: a loop cannot spawn its own kind from inside its body.
fn read_own_socket(shared: Arc<Shared>, socket: Arc<UdpSocket>, local: SocketAddr, own: Own) {
    tokio::spawn(receive_loop(shared, socket, local, Some(own)));
}

pub(super) fn send(shared: &Arc<Shared>, target: &Target, data: Bytes, token: Option<u64>) {
    let endpoint = shared
        .udp
        .iter()
        .find(|e| e.local.is_ipv4() == target.addr.is_ipv4());
    let Some(endpoint) = endpoint else {
        tracing::warn!(%target, "no UDP socket of the right address family");
        shared.report_failure(target.clone(), token);
        return;
    };
    if endpoint.out.send((data, target.addr, token)).is_err() {
        shared.report_failure(target.clone(), token);
    }
}

/// Sends what the core queued for one socket.
pub(super) async fn send_loop(
    shared: Arc<Shared>,
    socket: Arc<UdpSocket>,
    mut queue: tokio::sync::mpsc::UnboundedReceiver<(Bytes, std::net::SocketAddr, Option<u64>)>,
) {
    loop {
        let next = tokio::select! {
            n = queue.recv() => n,
            _ = shared.cancel.cancelled() => return,
        };
        let Some((data, addr, token)) = next else {
            return;
        };
        let sent = match socket.try_send_to(&data, addr) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                socket.send_to(&data, addr).await
            }
            other => other,
        };
        if let Err(e) = sent {
            let target = Target {
                proto: Proto::Udp,
                addr,
                conn: None,
            };
            tracing::warn!(%target, error = %e, "udp send failed");
            shared.report_failure(target, token);
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn any() -> SocketAddr {
        "127.0.0.1:0".parse().expect("literal")
    }

    #[tokio::test]
    async fn a_group_shares_one_address_and_each_socket_gets_the_buffer() {
        // Below the kernel's usual cap (net.core.rmem_max, 212992 by default).
        let group = bind_group(any(), 3, 150_000).expect("bind");
        assert_eq!(group.len(), 3);
        let local = group[0].local_addr().expect("address");
        assert_ne!(local.port(), 0);
        for s in &group {
            assert_eq!(s.local_addr().expect("address"), local);
            let reported = socket2::SockRef::from(s)
                .recv_buffer_size()
                .expect("SO_RCVBUF");
            assert_eq!(granted_receive_buffer(reported), 150_000);
        }
    }

    #[tokio::test]
    async fn an_address_in_use_is_refused_even_by_a_group() {
        let first = bind_group(any(), 2, 0).expect("bind");
        let taken = first[0].local_addr().expect("address");
        let err = bind_group(taken, 2, 0).expect_err("the address is taken");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        let plain = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let err = bind_group(plain.local_addr().expect("address"), 2, 0).expect_err("taken");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }
}
