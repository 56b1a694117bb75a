use super::{parse_inbound, Inbound, Proto, Shared, Target, TransportEvent};
use bytes::Bytes;
use std::sync::Arc;
use tokio::net::UdpSocket;

pub(super) async fn receive_loop(shared: Arc<Shared>, socket: Arc<UdpSocket>) {
    let local = match socket.local_addr() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "udp socket has no local address");
            return;
        }
    };
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
        });
        if shared.events.send(ev).await.is_err() {
            return;
        }
    }
}

pub(super) fn send(shared: &Arc<Shared>, target: &Target, data: Bytes, token: Option<u64>) {
    let socket = shared
        .udp
        .iter()
        .find(|s| {
            s.local_addr()
                .is_ok_and(|a| a.is_ipv4() == target.addr.is_ipv4())
        })
        .cloned();
    let Some(socket) = socket else {
        tracing::warn!(%target, "no UDP socket of the right address family");
        shared.report_failure(target.clone(), token);
        return;
    };
    match socket.try_send_to(&data, target.addr) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            let shared = shared.clone();
            let target = target.clone();
            tokio::spawn(async move {
                if let Err(e) = socket.send_to(&data, target.addr).await {
                    tracing::warn!(%target, error = %e, "udp send failed");
                    shared.report_failure(target, token);
                }
            });
        }
        Err(e) => {
            tracing::warn!(%target, error = %e, "udp send failed");
            shared.report_failure(target.clone(), token);
        }
    }
}
