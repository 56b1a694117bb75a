//! Race: a peer floods the UDP socket it shares with another peer while
//! the receive loop falls behind. It is moved to a socket of its own in
//! the middle of its flood: its messages must still reach the core in the
//! order it sent them (the old socket is read empty first), the other
//! peer must lose nothing, and once quiet the flooder is back on the
//! shared socket and still heard.

use escalator_host::sip::SipMessage;
use escalator_host::transport::{CoreInbox, Inbound, Limits, Transport, TransportEvent};
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;
use tokio::sync::mpsc;

const FLOOD: usize = 20_000;
const STEADY: usize = 200;

/// An in-dialog MESSAGE (never shed), its place in the peer's sequence
/// told by its CSeq (`seq + 1`).
fn message(call: &str, seq: usize) -> String {
    format!(
        "MESSAGE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK{call}{seq}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a\r\nTo: <sip:bob@example.com>;tag=b\r\n\
         Call-ID: {call}@test\r\nCSeq: {} MESSAGE\r\nContent-Length: 0\r\n\r\n",
        seq + 1
    )
}

fn seq_of(m: &SipMessage) -> usize {
    let (cseq, _) = m.cseq().expect("every test message has a CSeq");
    cseq as usize - 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_peer_is_moved_in_order_and_the_others_lose_nothing() {
    let (tx, mut rx) = mpsc::channel(FLOOD + STEADY + 16);
    let limits = Limits {
        udp_receive_buffer: 4 << 20,
        // One shared socket: both peers land on it.
        udp_receivers: Some(1),
        // Behind whenever a full read leaves anything waiting.
        shed_at_socket_fill: Some(0),
        isolate_flooding_peers: 1,
        isolated_idle: Duration::from_millis(500),
        ..Limits::default()
    };
    let any: SocketAddr = "127.0.0.1:0".parse().expect("literal");
    let transport = Transport::bind(&[any], &[], limits, CoreInbox::single(tx))
        .await
        .expect("bind");
    let to = transport.udp_addrs()[0];

    let flooder = UdpSocket::bind("127.0.0.1:0").expect("bind flooder");
    let flooder_addr = flooder.local_addr().expect("address");
    let steady = std::thread::spawn(move || {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind steady peer");
        for seq in 0..STEADY {
            socket
                .send_to(message("steady", seq).as_bytes(), to)
                .expect("send");
            std::thread::sleep(Duration::from_millis(1));
        }
        socket.local_addr().expect("address")
    });
    let flood = std::thread::spawn(move || {
        for seq in 0..FLOOD {
            // A full buffer loses the flooder's own datagrams, no one else's.
            let _ = flooder.send_to(message("flood", seq).as_bytes(), to);
        }
        flooder
    });
    let steady_addr = steady.join().expect("steady peer");
    let flooder = flood.join().expect("flooder");

    let (mut flood_seqs, mut steady_seqs) = (Vec::new(), Vec::new());
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
        let TransportEvent::Inbound(Inbound {
            source,
            message: Ok(m),
            ..
        }) = ev
        else {
            continue;
        };
        if source.addr == flooder_addr {
            flood_seqs.push(seq_of(&m));
        } else if source.addr == steady_addr {
            steady_seqs.push(seq_of(&m));
        }
    }
    assert_eq!(
        transport.isolated_peers(),
        vec![flooder_addr],
        "the flooder reads from a socket of its own"
    );
    assert!(
        flood_seqs.windows(2).all(|w| w[0] < w[1]),
        "the flooder's messages reached the core in the order sent"
    );
    assert!(
        flood_seqs.len() >= FLOOD / 10,
        "the flood was read across the move"
    );
    assert_eq!(
        steady_seqs,
        (0..STEADY).collect::<Vec<_>>(),
        "the peer sharing the socket lost nothing and kept its order"
    );

    // Quiet for longer than isolated_idle: back on the shared socket.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(transport.isolated_peers().is_empty(), "released when quiet");
    flooder
        .send_to(message("flood", FLOOD).as_bytes(), to)
        .expect("send");
    let back = tokio::time::timeout(Duration::from_secs(2), rx.recv())
        .await
        .expect("heard again")
        .expect("transport alive");
    let TransportEvent::Inbound(Inbound {
        source,
        message: Ok(m),
        ..
    }) = back
    else {
        panic!("an inbound message");
    };
    assert_eq!((source.addr, seq_of(&m)), (flooder_addr, FLOOD));
    transport.shutdown();
}
