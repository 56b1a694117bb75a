//! Race: one peer sends back-to-back datagrams that must stay in order
//! (INVITE then CANCEL, ACK then BYE, NOTIFY 100 then NOTIFY 200, MESSAGE
//! 1..N of one dialog); several peers do so at once. Wire order per peer:
//! exactly the order sent. The transport must hand each peer's messages to
//! the core in that order, whichever of its receive loops reads them.

use escalator_host::sip::SipMessage;
use escalator_host::transport::{CoreInbox, Inbound, Limits, Transport, TransportEvent};
use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;
use tokio::sync::mpsc;

const PEERS: usize = 6;
/// Pairs per peer: 2 datagrams each.
const PAIRS: usize = 1500;
/// Pairs sent back to back before a short pause (so the kernel's buffers
/// are not what the test measures).
const BURST: usize = 5;

/// The two messages of pair `n`, each carrying its place in the peer's
/// sequence in `X-Seq`.
fn pair(n: usize, seq: usize) -> [String; 2] {
    let head = |method: &str, cseq: &str, branch: &str, to_tag: bool, x: usize| {
        let to = if to_tag { ";tag=t1" } else { "" };
        format!(
            "{method} sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK{branch}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=f{n}\r\nTo: <sip:bob@example.com>{to}\r\n\
             Call-ID: order-{n}@test\r\nCSeq: {cseq}\r\nX-Seq: {x}\r\n"
        )
    };
    let no_body = "Content-Length: 0\r\n\r\n";
    match n % 4 {
        0 => [
            format!(
                "{}{no_body}",
                head("INVITE", "1 INVITE", &format!("i{n}"), false, seq)
            ),
            format!(
                "{}{no_body}",
                head("CANCEL", "1 CANCEL", &format!("i{n}"), false, seq + 1)
            ),
        ],
        1 => [
            format!(
                "{}{no_body}",
                head("ACK", "1 ACK", &format!("a{n}"), true, seq)
            ),
            format!(
                "{}{no_body}",
                head("BYE", "2 BYE", &format!("b{n}"), true, seq + 1)
            ),
        ],
        2 => {
            let notify = |status: &str, cseq: u32, x: usize| {
                let body = format!("SIP/2.0 {status}\r\n");
                format!(
                    "{}Event: refer;id=2\r\nSubscription-State: active\r\nContent-Type: message/sipfrag\r\n\
                     Content-Length: {}\r\n\r\n{body}",
                    head("NOTIFY", &format!("{cseq} NOTIFY"), &format!("n{n}-{cseq}"), true, x),
                    body.len()
                )
            };
            [notify("100 Trying", 1, seq), notify("200 OK", 2, seq + 1)]
        }
        _ => {
            let message = |cseq: u32, x: usize| {
                let body = format!("message {cseq}");
                format!(
                    "{}Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                    head(
                        "MESSAGE",
                        &format!("{cseq} MESSAGE"),
                        &format!("m{n}-{cseq}"),
                        true,
                        x
                    ),
                    body.len()
                )
            };
            [message(1, seq), message(2, seq + 1)]
        }
    }
}

fn seq_of(m: &SipMessage) -> usize {
    m.header("X-Seq")
        .and_then(|s| s.parse().ok())
        .expect("every test message has X-Seq")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_peer_is_handed_to_the_core_in_the_order_it_sent() {
    let (tx, mut rx) = mpsc::channel(PEERS * PAIRS * 2);
    let limits = Limits {
        udp_receive_buffer: 4 << 20,
        // More loops than this machine may have CPUs: order must not
        // depend on there being few of them.
        udp_receivers: Some(4),
        ..Limits::default()
    };
    let any: SocketAddr = "127.0.0.1:0".parse().expect("literal");
    let transport = Transport::bind(&[any], &[], limits, CoreInbox::single(tx))
        .await
        .expect("bind");
    let to = transport.udp_addrs()[0];

    let senders: Vec<_> = (0..PEERS)
        .map(|p| {
            std::thread::spawn(move || {
                let socket = UdpSocket::bind("127.0.0.1:0").expect("bind peer");
                for burst in 0..PAIRS / BURST {
                    for i in 0..BURST {
                        let n = (burst * BURST + i) * PEERS + p;
                        let seq = 2 * (burst * BURST + i);
                        for m in pair(n, seq) {
                            socket.send_to(m.as_bytes(), to).expect("send");
                        }
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                socket.local_addr().expect("peer address")
            })
        })
        .collect();
    let peers: Vec<SocketAddr> = senders
        .into_iter()
        .map(|h| h.join().expect("sender"))
        .collect();

    let mut last: HashMap<SocketAddr, usize> = HashMap::new();
    let mut received: HashMap<SocketAddr, usize> = HashMap::new();
    let mut out_of_order = Vec::new();
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
        let TransportEvent::Inbound(Inbound {
            source, message, ..
        }) = ev
        else {
            continue;
        };
        let m = message.expect("well-formed test message");
        let seq = seq_of(&m);
        if let Some(&prev) = last.get(&source.addr) {
            if seq <= prev {
                out_of_order.push((source.addr, prev, seq, m.summary()));
            }
        }
        last.insert(source.addr, seq);
        *received.entry(source.addr).or_default() += 1;
    }
    transport.shutdown();

    assert!(
        out_of_order.is_empty(),
        "{} messages handed over after a later one of the same peer, e.g. {:?}",
        out_of_order.len(),
        &out_of_order[..out_of_order.len().min(5)]
    );
    // Losses would not hide a reordering, but the kernel should have
    // dropped next to nothing at this pace.
    for peer in peers {
        let got = received.get(&peer).copied().unwrap_or(0);
        assert!(
            got * 100 >= PAIRS * 2 * 95,
            "{peer}: {got} of {} received",
            PAIRS * 2
        );
    }
}
