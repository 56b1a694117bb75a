//! Bad input and failures: clear SIP errors, no crash, no lost calls.

use escalator_e2e::{loopback, Rig, SDP_OFFER};
use escalator_host::transport::Proto;
use std::net::SocketAddr;
use std::time::Duration;

type R = anyhow::Result<()>;

const OPTIONS: &str = "OPTIONS sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKrobust1\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.com>;tag=r1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: robust-1\r\n\
CSeq: 1 OPTIONS\r\n\
Content-Length: 0\r\n\r\n";

#[tokio::test]
async fn garbage_is_dropped_and_the_host_keeps_working() -> R {
    let mut rig = Rig::new(Proto::Udp, Proto::Udp).await;
    rig.alice
        .send_raw(rig.host_for_alice, b"\x00\x01 not sip at all\r\n\r\n");
    rig.alice.send_raw(
        rig.host_for_alice,
        b"INVITE sip:x SIP/2.0\r\nno colon here\r\n\r\n",
    );
    rig.alice.expect_silence(Duration::from_millis(200)).await?;
    // Still serving: an OPTIONS is relayed and answered.
    rig.alice.send_raw(rig.host_for_alice, OPTIONS.as_bytes());
    let (opt, host) = rig.bob.expect_request("OPTIONS").await?;
    rig.bob.send(host, &rig.bob.reply(&opt, 200, "b", None));
    let ok = rig.alice.expect_response(200).await?;
    assert_eq!(ok.call_id(), Some("robust-1"));
    Ok(())
}

#[tokio::test]
async fn request_missing_call_id_gets_400_naming_the_problem() -> R {
    let mut rig = Rig::new(Proto::Udp, Proto::Udp).await;
    let bad = OPTIONS.replace("Call-ID: robust-1\r\n", "");
    rig.alice.send_raw(rig.host_for_alice, bad.as_bytes());
    let r = rig.alice.expect_response(400).await?;
    assert!(r.header("Warning").unwrap().contains("missing Call-ID"));
    rig.bob.expect_silence(Duration::from_millis(200)).await?;
    Ok(())
}

#[tokio::test]
async fn short_body_gets_400_and_oversized_gets_513() -> R {
    let mut rig = Rig::with(Proto::Udp, Proto::Udp, loopback(), |c| {
        c.limits.max_message_bytes = 2048;
    })
    .await;
    let short = OPTIONS.replace("Content-Length: 0", "Content-Length: 50");
    rig.alice.send_raw(rig.host_for_alice, short.as_bytes());
    let r = rig.alice.expect_response(400).await?;
    assert!(r.header("Warning").unwrap().contains("Content-Length"));
    let big = OPTIONS.replace(
        "Content-Length: 0\r\n\r\n",
        &format!("X-Pad: {}\r\nContent-Length: 0\r\n\r\n", "a".repeat(3000)),
    );
    rig.alice.send_raw(rig.host_for_alice, big.as_bytes());
    rig.alice.expect_response(513).await?;
    rig.bob.expect_silence(Duration::from_millis(200)).await?;
    Ok(())
}

#[tokio::test]
async fn unknown_dialog_gets_481_and_max_forwards_zero_gets_483() -> R {
    let mut rig = Rig::new(Proto::Udp, Proto::Udp).await;
    let stray = OPTIONS
        .replace("OPTIONS sip", "INFO sip")
        .replace("1 OPTIONS", "1 INFO")
        .replace(
            "<sip:bob@example.com>\r\n",
            "<sip:bob@example.com>;tag=nope\r\n",
        );
    rig.alice.send_raw(rig.host_for_alice, stray.as_bytes());
    rig.alice.expect_response(481).await?;
    let hops = OPTIONS
        .replace("Max-Forwards: 70", "Max-Forwards: 0")
        .replace("robust1", "robust2");
    rig.alice.send_raw(rig.host_for_alice, hops.as_bytes());
    rig.alice.expect_response(483).await?;
    rig.bob.expect_silence(Duration::from_millis(200)).await?;
    Ok(())
}

#[tokio::test]
async fn unanswered_invite_is_retransmitted_then_answered_408() -> R {
    let mut rig = Rig::with(Proto::Udp, Proto::Udp, loopback(), |c| {
        c.timers.t1_ms = 20;
        c.timers.t2_ms = 80;
    })
    .await;
    let mut a = rig
        .alice
        .new_dialog("sip:bob@example.com", rig.host_for_alice);
    let invite = a.request(&rig.alice, "INVITE", Some(("application/sdp", SDP_OFFER)));
    rig.alice.send(rig.host_for_alice, &invite);
    let mut invites = 0;
    while let Ok((m, _)) = rig.bob.recv_within(Duration::from_millis(1500)).await {
        assert_eq!(m.method(), Some("INVITE"));
        invites += 1;
    }
    // Timer A doubles from T1 = 20 ms until Timer B = 64*T1 = 1.28 s: 7 sends.
    assert_eq!(invites, 7);
    rig.alice.expect_response(408).await?;
    assert!(rig.wait_calls(0).await);
    Ok(())
}

#[tokio::test]
async fn unreachable_tcp_core_gets_503() -> R {
    // A port with nothing listening: connect is refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let mut rig = Rig::with(Proto::Udp, Proto::Tcp, loopback(), |c| {
        c.core.address = closed;
    })
    .await;
    let mut a = rig
        .alice
        .new_dialog("sip:bob@example.com", rig.host_for_alice);
    rig.alice
        .send(rig.host_for_alice, &a.request(&rig.alice, "INVITE", None));
    rig.alice.expect_response(503).await?;
    assert!(rig.wait_calls(0).await);
    Ok(())
}

#[tokio::test]
async fn draining_host_finishes_open_transactions_and_refuses_new_calls() -> R {
    let mut rig = Rig::new(Proto::Udp, Proto::Udp).await;
    let mut first = rig
        .alice
        .new_dialog("sip:bob@example.com", rig.host_for_alice);
    rig.alice.send(
        rig.host_for_alice,
        &first.request(&rig.alice, "INVITE", None),
    );
    rig.alice.expect_response(100).await?;
    let (inv, host) = rig.bob.expect_request("INVITE").await?;

    let done = rig.host.begin_drain(Duration::from_secs(5)).await;
    let mut second = rig
        .alice
        .new_dialog("sip:bob@example.com", rig.host_for_alice);
    rig.alice.send(
        rig.host_for_alice,
        &second.request(&rig.alice, "INVITE", None),
    );
    let r = rig.alice.expect_response(503).await?;
    assert_eq!(r.header("Retry-After"), Some("5"));
    assert_eq!(r.call_id(), Some(second.call_id.as_str()));

    // The call that was already in progress still completes.
    rig.bob.send(host, &rig.bob.reply(&inv, 486, "b", None));
    let busy = rig.alice.expect_response(486).await?;
    assert_eq!(busy.call_id(), Some(first.call_id.as_str()));
    rig.bob.expect_request("ACK").await?;
    // Bounded: the core stops by the grace deadline at the latest.
    tokio::time::timeout(Duration::from_secs(7), done).await??;
    Ok(())
}

#[tokio::test]
async fn request_looping_back_to_the_host_gets_482() -> R {
    // The host's core next hop is the host itself: the INVITE comes back
    // with our own Via and the same Request-URI.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let me: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut rig = Rig::with(Proto::Udp, Proto::Udp, loopback(), |c| {
        c.listen.udp = vec![me];
        c.core.address = me;
    })
    .await;
    let mut a = rig
        .alice
        .new_dialog("sip:bob@example.com", rig.host_for_alice);
    rig.alice
        .send(rig.host_for_alice, &a.request(&rig.alice, "INVITE", None));
    rig.alice.expect_response(482).await?;
    Ok(())
}

#[tokio::test]
async fn oversized_tcp_stream_message_closes_only_that_connection() -> R {
    let mut rig = Rig::with(Proto::Tcp, Proto::Udp, loopback(), |c| {
        c.limits.max_message_bytes = 2048;
    })
    .await;
    let huge = OPTIONS.replace("Content-Length: 0", "Content-Length: 100000");
    rig.alice.send_raw(rig.host_for_alice, huge.as_bytes());
    // Answered 513 on the connection before it closes (RFC 3261 §21.5.14).
    rig.alice.expect_response(513).await?;
    rig.bob.expect_silence(Duration::from_millis(300)).await?;
    // A new connection works.
    let mut rig2 = Rig::new(Proto::Tcp, Proto::Udp).await;
    rig2.alice.send_raw(rig2.host_for_alice, OPTIONS.as_bytes());
    rig2.bob.expect_request("OPTIONS").await?;
    Ok(())
}

/// Request smuggling over TCP: a fold joins ` l: 0` to `Content-Length:
/// 466`, and the body is a whole INVITE. The framer reads the head as the
/// parser does, so the length is no number: 400 to the outer message, the
/// connection closed, and nothing (least of all the smuggled INVITE)
/// reaches the core. Another SIP version over TCP gets 505.
#[tokio::test]
async fn a_smuggled_request_over_tcp_gets_400_and_never_reaches_the_core() -> R {
    let mut rig = Rig::new(Proto::Tcp, Proto::Udp).await;
    let smuggled = "INVITE sip:smuggled@example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bKsmuggled\r\n\
Max-Forwards: 70\r\n\
From: <sip:eve@example.com>;tag=s1\r\n\
To: <sip:smuggled@example.com>\r\n\
Call-ID: smuggled-1\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 0\r\n\r\n";
    let outer = OPTIONS.replace(
        "Content-Length: 0\r\n",
        &format!("Content-Length: {}\r\n l: 0\r\n", smuggled.len()),
    ) + smuggled;
    rig.alice.send_raw(rig.host_for_alice, outer.as_bytes());
    let refused = rig.alice.expect_response(400).await?;
    assert!(
        refused
            .header("Warning")
            .unwrap_or_default()
            .contains("Content-Length"),
        "{}",
        refused.summary()
    );
    rig.bob.expect_silence(Duration::from_millis(700)).await?;

    let mut rig = Rig::new(Proto::Tcp, Proto::Udp).await;
    let future = OPTIONS.replacen("SIP/2.0\r\n", "SIP/7.0\r\n", 1);
    rig.alice.send_raw(rig.host_for_alice, future.as_bytes());
    rig.alice.expect_response(505).await?;
    rig.bob.expect_silence(Duration::from_millis(300)).await?;
    Ok(())
}

#[tokio::test]
async fn invite_ringing_past_timer_c_is_cancelled_and_answered_408() -> R {
    let mut rig = Rig::with(Proto::Udp, Proto::Udp, loopback(), |c| {
        c.timers.c_ms = 400;
    })
    .await;
    let escalator_e2e::Offered {
        at_bob: inv, host, ..
    } = rig.offer_call(Some(SDP_OFFER)).await?;
    rig.bob.send(host, &rig.bob.reply(&inv, 180, "b", None));
    rig.alice.expect_response(180).await?;
    // Each provisional moves Timer C on: nothing happens 200 ms after a 183.
    tokio::time::sleep(Duration::from_millis(200)).await;
    rig.bob.send(host, &rig.bob.reply(&inv, 183, "b", None));
    rig.alice.expect_response(183).await?;
    rig.bob.expect_silence(Duration::from_millis(200)).await?;

    let (cancel, _) = rig.bob.expect_request("CANCEL").await?;
    assert_eq!(
        cancel.top_via().unwrap().branch(),
        inv.top_via().unwrap().branch()
    );
    rig.alice.expect_response(408).await?;
    rig.bob.send(host, &rig.bob.reply(&cancel, 200, "b", None));
    rig.bob.send(host, &rig.bob.reply(&inv, 487, "b", None));
    rig.bob.expect_request("ACK").await?;
    assert!(rig.wait_calls(0).await, "no leg left behind");
    Ok(())
}
