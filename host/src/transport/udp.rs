use super::{parse_inbound, Inbound, Proto, Shared, Target, TransportEvent};
use bytes::Bytes;
use std::sync::Arc;
use tokio::net::UdpSocket;

pub(super) async fn receive_loop(
    shared: Arc<Shared>,
    socket: Arc<UdpSocket>,
    local: std::net::SocketAddr,
) {
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, from) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(v) => v,
                Err(e) => {
                    // ICMP port unreachable surfaces here on some systems; keep going.
                    tracing::debug!(error = %e, "udp receive error");
                    continue;
                }
            },
            _ = shared.cancel.cancelled() => return,
        };
        let received = std::time::Instant::now();
        let data = &buf[..n];
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
        if shared.events.send(ev).await.is_err() {
            return;
        }
        // Let the core handle it now: a receive loop with datagrams waiting
        // would otherwise keep its worker for a whole scheduling budget
        // (up to 128 datagrams), and the core would wait behind it.
        tokio::task::yield_now().await;
    }
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
