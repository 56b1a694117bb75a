//! `escalator demo`: a host and two test user agents on loopback, one call
//! through the host, and the message ladder of everything that crossed the wire.

use crate::config::Config;
use crate::transport::Proto;
use crate::ua::{render_ladder, Ladder, TestUa};
use anyhow::Context;
use std::time::Duration;

pub const SDP_OFFER: &str = "v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=message 7654 TCP/MSRP *\r\na=accept-types:message/cpim text/plain\r\na=path:msrp://127.0.0.1:7654/a1b2;tcp\r\n";
pub const SDP_ANSWER: &str = "v=0\r\no=bob 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=message 7655 TCP/MSRP *\r\na=accept-types:message/cpim text/plain\r\na=path:msrp://127.0.0.1:7655/b1c2;tcp\r\n";

pub struct DemoReport {
    pub ladder: String,
}

/// Run one call alice → escalator → bob (the "core") and hang up.
pub async fn run() -> anyhow::Result<DemoReport> {
    let ladder = Ladder::default();
    let any = "127.0.0.1:0".parse()?;
    let mut alice = TestUa::bind("alice", Proto::Udp, any, ladder.clone()).await?;
    let mut bob = TestUa::bind("bob", Proto::Udp, any, ladder.clone()).await?;
    let mut cfg = Config::default();
    cfg.listen.udp = vec![any];
    cfg.listen.tcp = vec![any];
    cfg.core.address = bob.addr();
    let host = crate::host::start(&cfg)
        .await
        .context("starting the host")?;
    let host_addr = host.udp_addr().context("host has no UDP address")?;

    let mut a = alice.new_dialog("sip:bob@example.com", host_addr);
    let invite = a.request(&alice, "INVITE", Some(("application/sdp", SDP_OFFER)));
    alice.send(host_addr, &invite);
    let (inv, from) = bob.expect_request("INVITE").await?;
    let mut b = bob.accept_dialog(&inv, from);
    bob.send(from, &bob.reply(&inv, 180, &b.local_tag, None));
    alice.expect_response(180).await?;
    bob.send(
        from,
        &bob.reply(
            &inv,
            200,
            &b.local_tag,
            Some(("application/sdp", SDP_ANSWER)),
        ),
    );
    let ok = alice.expect_response(200).await?;
    a.update_from_response(&ok);
    alice.send(host_addr, &a.ack(&alice));
    bob.expect_request("ACK").await?;

    let msg = a.request(&alice, "MESSAGE", Some(("text/plain", "hello bob")));
    alice.send(host_addr, &msg);
    let (m, from) = bob.expect_request("MESSAGE").await?;
    bob.send(from, &bob.reply(&m, 200, &b.local_tag, None));
    alice.expect_response(200).await?;

    let bye = b.request(&bob, "BYE", None);
    bob.send(from, &bye);
    let (bye_in, _) = alice.expect_request("BYE").await?;
    alice.send(host_addr, &alice.reply(&bye_in, 200, &a.local_tag, None));
    bob.expect_response(200).await?;
    host.shutdown(Duration::from_secs(1)).await;
    Ok(DemoReport {
        ladder: render_ladder(&ladder),
    })
}
