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
use escalator_testkit::ua::{Ladder, TestUa, UaDialog};
use std::net::SocketAddr;

type R = anyhow::Result<()>;

fn addr(a: &str) -> SocketAddr {
    a.parse().expect("literal address")
}

/// Kamailio, a host in front of it, and alice (127.0.0.1) and bob
/// (127.0.0.6) as test user agents, all over one transport.
struct Scene {
    core: Kamailio,
    host: HostHandle,
    /// Where alice (and anyone behind the host) sends.
    host_addr: SocketAddr,
    ladder: Ladder,
    alice: TestUa,
    bob: TestUa,
}

impl Scene {
    /// `focus`: where the core routes the conference factory.
    async fn start(
        proto: Proto,
        focus: Option<SocketAddr>,
        plugins: Vec<escalator_host::config::PluginConfig>,
        ladder: Ladder,
    ) -> anyhow::Result<Scene> {
        let core = Kamailio::start("127.0.0.5", focus)?;
        let host = host_with(&core, plugins, proto).await?;
        let host_addr = match proto {
            Proto::Udp => host.udp_addr(),
            Proto::Tcp => host.tcp_addr(),
        }
        .expect("host address");
        let mut alice = TestUa::bind("alice", proto, addr("127.0.0.1:0"), ladder.clone()).await?;
        let mut bob = TestUa::bind("bob", proto, addr("127.0.0.6:0"), ladder.clone()).await?;
        alice.absorb_retransmissions = true;
        bob.absorb_retransmissions = true;
        Ok(Scene {
            core,
            host,
            host_addr,
            ladder,
            alice,
            bob,
        })
    }
}

/// A host whose core next hop (and only core source) is `core`.
async fn host_with(
    core: &Kamailio,
    plugins: Vec<escalator_host::config::PluginConfig>,
    toward_core: Proto,
) -> anyhow::Result<HostHandle> {
    let mut cfg = Config {
        plugins,
        ..Config::default()
    };
    cfg.listen.udp = vec![addr("127.0.0.2:0")];
    cfg.listen.tcp = vec![addr("127.0.0.2:0")];
    cfg.core.address = core.addr;
    cfg.core.transport = toward_core.to_string();
    cfg.core.sources = vec![core.addr.ip().to_string()];
    cfg.runtime.shards = 2;
    host::start(&cfg).await
}

/// The host returns to no call (state settles after the last message),
/// then stops.
async fn no_call_left(host: HostHandle, ladder: &Ladder) -> R {
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
        escalator_testkit::ua::render_ladder(ladder)
    );
    host.shutdown(std::time::Duration::from_millis(100)).await;
    Ok(())
}

/// A MESSAGE from alice to bob and one back, each answered 200; each
/// party sends its requests to its own next hop.
async fn messages_both_ways(
    (alice, a, alice_next): (&mut TestUa, &mut UaDialog, SocketAddr),
    (bob, b, bob_next): (&mut TestUa, &mut UaDialog, SocketAddr),
) -> R {
    alice.send(
        alice_next,
        &a.request(alice, "MESSAGE", Some(("text/plain", "hi bob"))),
    );
    let (m, from) = bob.expect_request("MESSAGE").await?;
    assert_eq!(&m.body[..], b"hi bob");
    bob.send(from, &bob.reply(&m, 200, &b.local_tag, None));
    alice.expect_response(200).await?;
    bob.send(
        bob_next,
        &b.request(bob, "MESSAGE", Some(("text/plain", "hi alice"))),
    );
    let (m, from) = alice.expect_request("MESSAGE").await?;
    assert_eq!(&m.body[..], b"hi alice");
    alice.send(from, &alice.reply(&m, 200, &a.local_tag, None));
    bob.expect_response(200).await?;
    Ok(())
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
    call_through_the_core(Proto::Udp).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_call_over_tcp_everywhere() -> R {
    call_through_the_core(Proto::Tcp).await
}

/// alice (behind the host) calls bob (registered at Kamailio), everything
/// over `proto`: INVITE, 200, ACK, a re-INVITE from each side, MESSAGEs
/// both ways, BYE from bob.
async fn call_through_the_core(proto: Proto) -> R {
    let Scene {
        core,
        host,
        host_addr,
        ladder,
        mut alice,
        mut bob,
    } = Scene::start(proto, None, Vec::new(), Ladder::default()).await?;
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

    // A re-INVITE from each side (target refresh through the core).
    alice.send(
        host_addr,
        &a.request(&alice, "INVITE", Some(("application/sdp", SDP_OFFER))),
    );
    let (re, from) = bob.expect_request("INVITE").await?;
    assert_eq!(re.call_id(), inv.call_id(), "in bob's dialog");
    bob.send(
        from,
        &bob.reply(
            &re,
            200,
            &b.local_tag,
            Some(("application/sdp", SDP_ANSWER)),
        ),
    );
    alice.expect_response(200).await?;
    alice.send(host_addr, &a.ack(&alice));
    bob.expect_request("ACK").await?;
    bob.send(
        core.addr,
        &b.request(&bob, "INVITE", Some(("application/sdp", SDP_ANSWER))),
    );
    let (re, from) = alice.expect_request("INVITE").await?;
    assert_eq!(re.call_id(), Some(a.call_id.as_str()), "in alice's dialog");
    alice.send(
        from,
        &alice.reply(&re, 200, &a.local_tag, Some(("application/sdp", SDP_OFFER))),
    );
    bob.expect_response(200).await?;
    bob.send(core.addr, &b.ack(&bob));
    alice.expect_request("ACK").await?;

    // MESSAGE both ways, in the dialog, through the core.
    messages_both_ways(
        (&mut alice, &mut a, host_addr),
        (&mut bob, &mut b, core.addr),
    )
    .await?;

    // BYE from bob's side, through the core and the host.
    bob.send(core.addr, &b.request(&bob, "BYE", None));
    let (bye, from) = alice.expect_request("BYE").await?;
    alice.send(from, &alice.reply(&bye, 200, &a.local_tag, None));
    bob.expect_response(200).await?;
    no_call_left(host, &ladder).await
}

/// The reverse: bob calls alice, who registered through the host (the
/// interim core config saves her binding with the host as its source). The
/// host answers the core's record-routed INVITE with a 200 that carries the
/// Record-Route (RFC 3261 §12.1.1), so bob's ACK and in-dialog requests
/// find their way back through the core.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bob_at_the_core_calls_alice_registered_through_the_host() -> R {
    let Scene {
        core,
        host,
        host_addr,
        ladder,
        mut alice,
        mut bob,
    } = Scene::start(Proto::Udp, None, Vec::new(), Ladder::default()).await?;
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

    messages_both_ways(
        (&mut alice, &mut a, host_addr),
        (&mut bob, &mut b, core.addr),
    )
    .await?;

    alice.send(host_addr, &a.request(&alice, "BYE", None));
    let (bye, from) = bob.expect_request("BYE").await?;
    bob.send(from, &bob.reply(&bye, 200, &b.local_tag, None));
    alice.expect_response(200).await?;
    no_call_left(host, &ladder).await
}

/// Both parties behind the host, both registered through it: the session
/// crosses the host twice, joined by the core (alice's leg, a leg to the
/// core; a leg from the core, bob's leg). Every in-dialog request spirals
/// host → core → host and is matched to its dialog, not answered 482.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_and_bob_both_behind_the_host_talk_through_the_core() -> R {
    let Scene {
        core: _running, // held: the core runs until the test ends
        host,
        host_addr,
        ladder,
        mut alice,
        mut bob,
    } = Scene::start(Proto::Udp, None, Vec::new(), Ladder::default()).await?;
    register(&mut alice, host_addr).await?;
    register(&mut bob, host_addr).await?;

    let mut a = alice.new_dialog("sip:bob@example.com", host_addr);
    alice.send(
        host_addr,
        &a.request(&alice, "INVITE", Some(("application/sdp", SDP_OFFER))),
    );
    let (inv, from) = bob.expect_request("INVITE").await?;
    assert_eq!(from, host_addr, "bob is reached through the host");
    let mut b = bob.accept_dialog(&inv, from);
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
    assert_eq!(host.stats.calls(), 2, "alice–core and core–bob");

    // In-dialog requests both ways: each spirals through the core.
    messages_both_ways(
        (&mut alice, &mut a, host_addr),
        (&mut bob, &mut b, host_addr),
    )
    .await?;

    bob.send(host_addr, &b.request(&bob, "BYE", None));
    let (bye, from) = alice.expect_request("BYE").await?;
    alice.send(from, &alice.reply(&bye, 200, &a.local_tag, None));
    bob.expect_response(200).await?;
    no_call_left(host, &ladder).await
}

const FRESH_OFFER: &str = "v=0\r\no=alice 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=message 7654 TCP/MSRP *\r\na=accept-types:message/cpim text/plain\r\na=path:msrp://127.0.0.1:7654/fresh-a1;tcp\r\n";
const CONF_SDP: &str = "v=0\r\no=focus 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=message 9000 TCP/MSRP *\r\na=accept-types:message/cpim text/plain\r\na=path:msrp://127.0.0.1:9000/conf-9;tcp\r\n";

/// The escalation plugin, with alice's client as the legacy one and the
/// factory of example.com at the core.
fn escalation_plugin() -> escalator_host::config::PluginConfig {
    let dir = std::env::temp_dir().join(format!(
        "escalator-kamailio-e2e-{}-{}",
        std::process::id(),
        escalator_host::dialog::random_token(8)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        "version = \"kamailio-e2e\"\n\n[[legacy.rules]]\nname = \"old-test-clients\"\n\
         verdict = \"legacy\"\nuser_agent = \"^escalator-test-ua/alice\"\n\n\
         [domains.\"example.com\"]\nfactory_uri = \"sip:conference-factory@example.com\"\n\
         max_group_size = 5\n",
    )
    .expect("policy file");
    escalator_e2e::plugin_config(
        "escalator-escalation",
        &format!(
            "policy = \"{}\"\nanswer_timeout_ms = 5000",
            policy.display()
        ),
        10,
    )
}

/// Escalation with a record-routing core between the host and everyone
/// else: alice (legacy, behind the host) in a chat with bob (registered at
/// Kamailio) adds carol; the conference INVITE reaches the focus through
/// Kamailio, the focus's 200 and the host's ACK cross it, alice is
/// re-anchored, bob's BYE of the replaced dialog is absorbed, and alice's
/// MESSAGEs reach the focus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_through_a_record_routing_core() -> R {
    escalate_through_the_core(&["sip:carol@example.com"]).await
}

/// The same with a REFER that lists several targets (RFC 5368).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_target_escalation_through_a_record_routing_core() -> R {
    escalate_through_the_core(&["sip:carol@example.com", "sip:dave@example.net"]).await
}

async fn escalate_through_the_core(targets: &[&str]) -> R {
    let ladder = Ladder::default();
    let mut focus = TestUa::bind("focus", Proto::Udp, addr("127.0.0.7:0"), ladder.clone()).await?;
    focus.absorb_retransmissions = true;
    let Scene {
        core,
        host,
        host_addr,
        mut alice,
        mut bob,
        ..
    } = Scene::start(
        Proto::Udp,
        Some(focus.addr()),
        vec![escalation_plugin()],
        ladder.clone(),
    )
    .await?;
    register(&mut bob, core.addr).await?;

    // The 1-to-1 chat.
    let mut a = alice.new_dialog("sip:bob@example.com", host_addr);
    alice.send(
        host_addr,
        &a.request(&alice, "INVITE", Some(("application/sdp", SDP_OFFER))),
    );
    let (inv, via_core) = bob.expect_request("INVITE").await?;
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
    alice.send(host_addr, &a.ack(&alice));
    bob.expect_request("ACK").await?;

    // alice adds carol (and dave, in one REFER with a list).
    let refer = match targets {
        [one] => {
            let mut r = a.request(&alice, "REFER", None);
            r.push_header("Refer-To", format!("<{one}>"));
            r
        }
        many => {
            let list: Vec<String> = many.iter().map(|t| t.to_string()).collect();
            let xml = escalator_escalation::resource_list::build(&list);
            let mut r = a.request(
                &alice,
                "REFER",
                Some(("application/resource-lists+xml", &xml)),
            );
            r.push_header("Refer-To", "<cid:targets@alice.example.com>");
            r.push_header("Require", "multiple-refer");
            r.push_header("Content-Disposition", "recipient-list");
            r.push_header("Content-ID", "<targets@alice.example.com>");
            r
        }
    };
    alice.send(host_addr, &refer);
    alice.expect_response(202).await?;
    let (n, _) = alice.expect_request("NOTIFY").await?;
    alice.send(host_addr, &alice.reply(&n, 200, &a.local_tag, None));
    let (reinvite, _) = alice.expect_request("INVITE").await?;
    alice.send(
        host_addr,
        &alice.reply(
            &reinvite,
            200,
            &a.local_tag,
            Some(("application/sdp", FRESH_OFFER)),
        ),
    );

    // The conference INVITE reaches the focus through the core.
    let (conf, from) = focus.expect_request("INVITE").await?;
    assert_eq!(from, core.addr, "through the core");
    assert_eq!(
        conf.request_uri(),
        Some("sip:conference-factory@example.com")
    );
    assert!(
        conf.header("Record-Route").is_some(),
        "the core record-routes"
    );
    let body = String::from_utf8_lossy(&conf.body);
    for t in targets {
        assert!(body.contains(t), "{t} invited: {body}");
    }
    assert!(
        body.contains("Replaces="),
        "bob's entry carries Replaces: {body}"
    );
    let f = focus.accept_dialog(&conf, from);
    focus.send(
        from,
        &focus.reply(
            &conf,
            200,
            &f.local_tag,
            Some(("application/sdp", CONF_SDP)),
        ),
    );
    let (ack, _) = focus.expect_request("ACK").await?;
    assert_eq!(
        ack.call_id(),
        conf.call_id(),
        "the host's ACK crossed the core"
    );
    let (alice_ack, _) = alice.expect_request("ACK").await?;
    assert_eq!(
        &alice_ack.body[..],
        CONF_SDP.as_bytes(),
        "alice re-anchored"
    );
    let (n, _) = alice.expect_request("NOTIFY").await?;
    assert!(String::from_utf8_lossy(&n.body).contains("200 OK"));
    alice.send(host_addr, &alice.reply(&n, 200, &a.local_tag, None));

    // bob, replaced, ends the old dialog: absorbed, alice hears nothing.
    bob.send(core.addr, &b.request(&bob, "BYE", None));
    bob.expect_response(200).await?;
    alice
        .expect_silence(std::time::Duration::from_millis(300))
        .await?;

    // alice's chat now leads to the focus, through the core.
    alice.send(
        host_addr,
        &a.request(&alice, "MESSAGE", Some(("text/plain", "hi all"))),
    );
    let (m, from) = focus.expect_request("MESSAGE").await?;
    assert_eq!(m.call_id(), conf.call_id());
    focus.send(from, &focus.reply(&m, 200, &f.local_tag, None));
    alice.expect_response(200).await?;

    alice.send(host_addr, &a.request(&alice, "BYE", None));
    let (bye, from) = focus.expect_request("BYE").await?;
    focus.send(from, &focus.reply(&bye, 200, &f.local_tag, None));
    alice.expect_response(200).await?;
    no_call_left(host, &ladder).await
}
