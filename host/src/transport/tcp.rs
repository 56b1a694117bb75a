use super::{
    framing_error, ConnEntry, ConnId, Inbound, Outgoing, Proto, Shared, Target, TransportEvent,
};
use crate::sip::framing::Framer;
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection whose stream broke stays open for the answer to
/// the message that broke it.
const ANSWER_GRACE: Duration = Duration::from_millis(500);

pub(super) async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shared.cancel.cancelled() => return,
        };
        match accepted {
            Ok((stream, remote)) => {
                let (tx, rx) = mpsc::unbounded_channel();
                let id = register(&shared, remote, tx);
                tokio::spawn(run_connection(shared.clone(), id, stream, remote, rx));
            }
            Err(e) => {
                tracing::warn!(error = %e, "tcp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

fn register(
    shared: &Shared,
    remote: SocketAddr,
    writer: mpsc::UnboundedSender<Outgoing>,
) -> ConnId {
    let id = shared.next_conn_id();
    if let Ok(mut c) = shared.conns.lock() {
        c.by_id.insert(id, ConnEntry { remote, writer });
        c.by_remote.insert(remote, id);
    }
    id
}

fn unregister(shared: &Shared, id: ConnId) {
    if let Ok(mut c) = shared.conns.lock() {
        if let Some(e) = c.by_id.remove(&id) {
            if c.by_remote.get(&e.remote) == Some(&id) {
                c.by_remote.remove(&e.remote);
            }
        }
    }
}

pub(super) fn send(shared: &Arc<Shared>, target: &Target, data: Bytes, token: Option<u64>) {
    let existing = shared.conns.lock().ok().and_then(|c| {
        target
            .conn
            .filter(|id| c.by_id.contains_key(id))
            .or_else(|| c.by_remote.get(&target.addr).copied())
            .and_then(|id| c.by_id.get(&id).map(|e| e.writer.clone()))
    });
    if let Some(writer) = existing {
        if writer.send((data.clone(), token)).is_ok() {
            return;
        }
    }
    // Open a connection; messages sent meanwhile queue on its channel.
    let (tx, rx) = mpsc::unbounded_channel();
    let _ = tx.send((data, token));
    let id = register(shared, target.addr, tx);
    let shared = shared.clone();
    let target = target.clone();
    tokio::spawn(async move {
        let from = source_ip(&shared, target.addr);
        let connected =
            tokio::time::timeout(CONNECT_TIMEOUT, connect_from(from, target.addr)).await;
        match connected {
            Ok(Ok(stream)) => run_connection(shared, id, stream, target.addr, rx).await,
            Ok(Err(e)) => fail_queue(&shared, id, &target, rx, &e.to_string()),
            Err(_) => fail_queue(&shared, id, &target, rx, "connect timed out"),
        }
    });
}

/// The address our Via names toward `remote`: a listen address of its
/// family, unless that is the wildcard (then the kernel picks).
fn source_ip(shared: &Shared, remote: SocketAddr) -> Option<std::net::IpAddr> {
    shared
        .tcp_local
        .iter()
        .find(|a| a.is_ipv4() == remote.is_ipv4())
        .map(|a| a.ip())
        .filter(|ip| !ip.is_unspecified())
}

/// Connect to `remote` from `from` (any port), so the far side sees the
/// host at the address its Via and Contact name.
async fn connect_from(
    from: Option<std::net::IpAddr>,
    remote: SocketAddr,
) -> std::io::Result<TcpStream> {
    let Some(ip) = from else {
        return TcpStream::connect(remote).await;
    };
    let socket = if remote.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(ip, 0))?;
    socket.connect(remote).await
}

fn fail_queue(
    shared: &Shared,
    id: ConnId,
    target: &Target,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    why: &str,
) {
    tracing::warn!(%target, error = why, "tcp connect failed");
    unregister(shared, id);
    rx.close();
    while let Ok((_, token)) = rx.try_recv() {
        shared.report_failure(target.clone(), token);
    }
}

async fn run_connection(
    shared: Arc<Shared>,
    id: ConnId,
    stream: TcpStream,
    remote: SocketAddr,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
) {
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().unwrap_or(remote);
    let (mut reader, mut writer) = stream.into_split();
    let source = Target {
        proto: Proto::Tcp,
        addr: remote,
        conn: Some(id),
    };
    let write_shared = shared.clone();
    let write_target = source.clone();
    let write_task = tokio::spawn(async move {
        while let Some((data, token)) = rx.recv().await {
            if let Err(e) = writer.write_all(&data).await {
                tracing::warn!(target = %write_target, error = %e, "tcp write failed");
                write_shared.report_failure(write_target.clone(), token);
                break;
            }
        }
    });
    let mut framer = Framer::new(
        shared.limits.max_message_bytes,
        crate::sip::message::ParseLimits {
            max_headers: shared.limits.max_headers,
        },
    );
    let mut buf = vec![0u8; 16 * 1024];
    'read: loop {
        let n = tokio::select! {
            r = reader.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            _ = shared.cancel.cancelled() => break,
        };
        let received = std::time::Instant::now();
        framer.push(&buf[..n]);
        loop {
            let message = match framer.next_message() {
                // Parsed while framed, with the same grammar and limits.
                Ok(Some(framed)) => Ok(framed.message),
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(%remote, error = %e, "closing tcp connection");
                    let ev = TransportEvent::Inbound(Inbound {
                        source: source.clone(),
                        local,
                        message: Err(framing_error(e, framer.buffered())),
                        received,
                    });
                    shared.deliver(ev).await;
                    // The stream cannot be read on, but the answer to the
                    // refused message (400, 505, 513) leaves on it first.
                    tokio::select! {
                        _ = tokio::time::sleep(ANSWER_GRACE) => {}
                        _ = shared.cancel.cancelled() => {}
                    }
                    break 'read;
                }
            };
            let ev = TransportEvent::Inbound(Inbound {
                source: source.clone(),
                local,
                message,
                received,
            });
            if !shared.deliver(ev).await {
                break 'read;
            }
        }
    }
    unregister(&shared, id);
    write_task.abort();
}

#[cfg(test)]
mod tests {
    use crate::transport::{CoreInbox, Limits, Proto, Target, Transport};
    use bytes::Bytes;
    use std::net::SocketAddr;

    #[tokio::test]
    async fn connections_leave_from_the_listen_address() {
        let (tx, _rx) = tokio::sync::mpsc::channel(8);
        let listen: SocketAddr = "127.0.0.2:0".parse().expect("literal");
        let t = Transport::bind(&[], &[listen], Limits::default(), CoreInbox::single(tx))
            .await
            .expect("bind");
        let peer = tokio::net::TcpListener::bind("127.0.0.3:0")
            .await
            .expect("peer");
        let target = Target {
            proto: Proto::Tcp,
            addr: peer.local_addr().expect("address"),
            conn: None,
        };
        t.send(
            &target,
            Bytes::from_static(b"OPTIONS sip:x SIP/2.0\r\n\r\n"),
            None,
        );
        let (_stream, from) = peer.accept().await.expect("accept");
        assert_eq!(
            from.ip(),
            listen.ip(),
            "the address the Via names, not 127.0.0.1"
        );
        t.shutdown();
    }
}
