//! Calls through a real operator core: Kamailio (`examples/core/kamailio.cfg`,
//! record-routing proxy and registrar) between the host and the other
//! party, started by the test itself. Addresses: alice 127.0.0.1 (behind
//! the host), host 127.0.0.2, Kamailio 127.0.0.5, bob 127.0.0.6 (registered
//! directly at Kamailio).

use escalator_e2e::kamailio::Kamailio;
use escalator_e2e::{SDP_ANSWER, SDP_OFFER};
use escalator_host::config::Config;
use escalator_host::host::{self, HostHandle};
use escalator_host::transport::Proto;
use escalator_testkit::ua::{Ladder, TestUa};
use std::net::SocketAddr;

type R = anyhow::Result<()>;

fn addr(a: &str) -> SocketAddr {
    a.parse().expect("literal address")
}

/// A host whose core next hop (and only core source) is `core`.
async fn host_before(core: &Kamailio) -> anyhow::Result<HostHandle> {
    let mut cfg = Config::default();
    cfg.listen.udp = vec![addr("127.0.0.2:0")];
    cfg.listen.tcp = vec![addr("127.0.0.2:0")];
    cfg.core.address = core.addr;
    cfg.core.transport = "udp".into();
    cfg.core.sources = vec![core.addr.ip().to_string()];
    cfg.runtime.shards = 2;
    host::start(&cfg).await
}

/// `ua` registers `user@example.com` at `registrar` with its own Contact.
async fn register(ua: &mut TestUa, registrar: SocketAddr) -> R {
    let mut d = ua.new_dialog(&format!("sip:{}@example.com", ua.name), registrar);
    let mut reg = d.request(ua, "REGISTER", None);
    reg.push_header("Contact", ua.contact());
    reg.push_header("Expires", "300");
    ua.send(registrar, &reg);
    ua.expect_response(200).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_behind_the_host_calls_bob_registered_at_a_record_routing_core() -> R {
    let core = Kamailio::start("127.0.0.5", None)?;
    let host = host_before(&core).await?;
    let host_addr = host.udp_addr().expect("host UDP address");
    let ladder = Ladder::default();
    let mut alice = TestUa::bind("alice", Proto::Udp, addr("127.0.0.1:0"), ladder.clone()).await?;
    let mut bob = TestUa::bind("bob", Proto::Udp, addr("127.0.0.6:0"), ladder.clone()).await?;
    alice.absorb_retransmissions = true;
    bob.absorb_retransmissions = true;
    register(&mut bob, core.addr).await?;

    // INVITE: alice → host → Kamailio (Record-Route, lookup) → bob.
    let mut a = alice.new_dialog("sip:bob@example.com", host_addr);
    alice.send(
        host_addr,
        &a.request(&alice, "INVITE", Some(("application/sdp", SDP_OFFER))),
    );
    let (inv, via_core) = bob.expect_request("INVITE").await?;
    assert_eq!(via_core, core.addr, "through the core");
    assert!(
        inv.header("Record-Route").is_some(),
        "the core record-routes:\n{}",
        core.log_text()
    );
    let mut b = bob.accept_dialog(&inv, via_core);
    bob.send(
        via_core,
        &bob.reply(
            &inv,
            200,
            &b.local_tag,
            Some(("application/sdp", SDP_ANSWER)),
        ),
    );
    let ok = alice.expect_response(200).await?;
    a.update_from_response(&ok);

    // ACK: the host's leg toward the core follows the core's route set.
    alice.send(host_addr, &a.ack(&alice));
    let (ack, _) = bob.expect_request("ACK").await?;
    assert_eq!(ack.call_id(), inv.call_id());

    // MESSAGE both ways, in the dialog, through the core.
    alice.send(
        host_addr,
        &a.request(&alice, "MESSAGE", Some(("text/plain", "hi bob"))),
    );
    let (m, from) = bob.expect_request("MESSAGE").await?;
    assert_eq!(&m.body[..], b"hi bob");
    bob.send(from, &bob.reply(&m, 200, &b.local_tag, None));
    alice.expect_response(200).await?;
    bob.send(
        core.addr,
        &b.request(&bob, "MESSAGE", Some(("text/plain", "hi alice"))),
    );
    let (m, from) = alice.expect_request("MESSAGE").await?;
    assert_eq!(&m.body[..], b"hi alice");
    alice.send(from, &alice.reply(&m, 200, &a.local_tag, None));
    bob.expect_response(200).await?;

    // BYE from bob's side, through the core and the host.
    bob.send(core.addr, &b.request(&bob, "BYE", None));
    let (bye, from) = alice.expect_request("BYE").await?;
    alice.send(from, &alice.reply(&bye, 200, &a.local_tag, None));
    bob.expect_response(200).await?;
    for _ in 0..100 {
        if host.stats.calls() == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        host.stats.calls(),
        0,
        "{}",
        escalator_testkit::ua::render_ladder(&ladder)
    );
    host.shutdown(std::time::Duration::from_millis(100)).await;
    Ok(())
}

/// The reverse: bob calls alice, who registered through the host (the
/// interim core config saves her binding with the host as its source). The
/// host answers the core's record-routed INVITE with a 200 that carries the
/// Record-Route (RFC 3261 §12.1.1), so bob's ACK and in-dialog requests
/// find their way back through the core.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bob_at_the_core_calls_alice_registered_through_the_host() -> R {
    let core = Kamailio::start("127.0.0.5", None)?;
    let host = host_before(&core).await?;
    let host_addr = host.udp_addr().expect("host UDP address");
    let ladder = Ladder::default();
    let mut alice = TestUa::bind("alice", Proto::Udp, addr("127.0.0.1:0"), ladder.clone()).await?;
    let mut bob = TestUa::bind("bob", Proto::Udp, addr("127.0.0.6:0"), ladder.clone()).await?;
    alice.absorb_retransmissions = true;
    bob.absorb_retransmissions = true;
    register(&mut alice, host_addr).await?;

    let mut b = bob.new_dialog("sip:alice@example.com", core.addr);
    bob.send(
        core.addr,
        &b.request(&bob, "INVITE", Some(("application/sdp", SDP_OFFER))),
    );
    let (inv, from_host) = alice.expect_request("INVITE").await?;
    assert_eq!(from_host, host_addr, "through the host");
    let mut a = alice.accept_dialog(&inv, from_host);
    alice.send(
        from_host,
        &alice.reply(
            &inv,
            200,
            &a.local_tag,
            Some(("application/sdp", SDP_ANSWER)),
        ),
    );
    let ok = bob.expect_response(200).await?;
    assert!(
        ok.header("Record-Route").is_some(),
        "the host's 2xx carries the core's Record-Route:\n{}",
        core.log_text()
    );
    b.update_from_response(&ok);
    bob.send(core.addr, &b.ack(&bob));
    alice.expect_request("ACK").await?;

    alice.send(
        host_addr,
        &a.request(&alice, "MESSAGE", Some(("text/plain", "hi bob"))),
    );
    let (m, from) = bob.expect_request("MESSAGE").await?;
    bob.send(from, &bob.reply(&m, 200, &b.local_tag, None));
    alice.expect_response(200).await?;
    bob.send(
        core.addr,
        &b.request(&bob, "MESSAGE", Some(("text/plain", "hi alice"))),
    );
    let (m, from) = alice.expect_request("MESSAGE").await?;
    alice.send(from, &alice.reply(&m, 200, &a.local_tag, None));
    bob.expect_response(200).await?;

    alice.send(host_addr, &a.request(&alice, "BYE", None));
    let (bye, from) = bob.expect_request("BYE").await?;
    bob.send(from, &bob.reply(&bye, 200, &b.local_tag, None));
    alice.expect_response(200).await?;
    for _ in 0..100 {
        if host.stats.calls() == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        host.stats.calls(),
        0,
        "{}",
        escalator_testkit::ua::render_ladder(&ladder)
    );
    host.shutdown(std::time::Duration::from_millis(100)).await;
    Ok(())
}

/// Both parties behind the host, both registered through it: the session
/// crosses the host twice, joined by the core (alice's leg, a leg to the
/// core; a leg from the core, bob's leg). Every in-dialog request spirals
/// host → core → host and is matched to its dialog, not answered 482.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_and_bob_both_behind_the_host_talk_through_the_core() -> R {
    let core = Kamailio::start("127.0.0.5", None)?;
    let host = host_before(&core).await?;
    let host_addr = host.udp_addr().expect("host UDP address");
    let ladder = Ladder::default();
    let mut alice = TestUa::bind("alice", Proto::Udp, addr("127.0.0.1:0"), ladder.clone()).await?;
    let mut bob = TestUa::bind("bob", Proto::Udp, addr("127.0.0.6:0"), ladder.clone()).await?;
    alice.absorb_retransmissions = true;
    bob.absorb_retransmissions = true;
    register(&mut alice, host_addr).await?;
    register(&mut bob, host_addr).await?;

    let mut a = alice.new_dialog("sip:bob@example.com", host_addr);
    alice.send(host_addr, &a.request(&alice, "INVITE", Some(("application/sdp", SDP_OFFER))));
    let (inv, from) = bob.expect_request("INVITE").await?;
    assert_eq!(from, host_addr, "bob is reached through the host");
    let mut b = bob.accept_dialog(&inv, from);
    bob.send(from, &bob.reply(&inv, 200, &b.local_tag, Some(("application/sdp", SDP_ANSWER))));
    let ok = alice.expect_response(200).await?;
    a.update_from_response(&ok);
    alice.send(host_addr, &a.ack(&alice));
    bob.expect_request("ACK").await?;
    assert_eq!(host.stats.calls(), 2, "alice–core and core–bob");

    // In-dialog requests both ways: each spirals through the core.
    alice.send(host_addr, &a.request(&alice, "MESSAGE", Some(("text/plain", "hi bob"))));
    let (m, from) = bob.expect_request("MESSAGE").await?;
    assert_eq!(&m.body[..], b"hi bob");
    bob.send(from, &bob.reply(&m, 200, &b.local_tag, None));
    alice.expect_response(200).await?;
    bob.send(host_addr, &b.request(&bob, "MESSAGE", Some(("text/plain", "hi alice"))));
    let (m, from) = alice.expect_request("MESSAGE").await?;
    assert_eq!(&m.body[..], b"hi alice");
    alice.send(from, &alice.reply(&m, 200, &a.local_tag, None));
    bob.expect_response(200).await?;

    bob.send(host_addr, &b.request(&bob, "BYE", None));
    let (bye, from) = alice.expect_request("BYE").await?;
    alice.send(from, &alice.reply(&bye, 200, &a.local_tag, None));
    bob.expect_response(200).await?;
    for _ in 0..100 {
        if host.stats.calls() == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        host.stats.calls(),
        0,
        "{}",
        escalator_testkit::ua::render_ladder(&ladder)
    );
    host.shutdown(std::time::Duration::from_millis(100)).await;
    Ok(())
}
