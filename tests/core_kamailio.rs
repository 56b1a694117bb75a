//! Calls through a real operator core: Kamailio (`examples/core/kamailio.cfg`,
//! record-routing proxy and registrar) between the host and the other
//! party, started by the test itself. Addresses: alice 127.0.0.1 (behind
//! the host, registered through it), host 127.0.0.2, Kamailio 127.0.0.5,
//! bob 127.0.0.6 (registered directly at Kamailio, or through the host),
//! focus 127.0.0.7. Sessions: every combination of transport (UDP, TCP),
//! caller (alice, bob) and bob's place (at the core, behind the host).

use escalator_e2e::focus::{self, AnswerCreator};
use escalator_e2e::kamailio::Kamailio;
use escalator_e2e::{SDP_ANSWER, SDP_OFFER};
use escalator_host::config::Config;
use escalator_host::host::{self, HostHandle};
use escalator_host::sip::SipMessage;
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

/// Where bob is: registered through the host (alice and bob both behind
/// it: the session crosses the host twice, joined by the core, and every
/// in-dialog request spirals host → core → host), or directly at Kamailio.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Bob {
    BehindTheHost,
    AtTheCore,
}

/// Who places the call; the other one hangs up.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Caller {
    Alice,
    Bob,
}

/// One party of a session: its user agent, its dialog, where it sends its
/// requests (its next hop) and where the other party's requests reach it
/// from.
struct Side<'a> {
    ua: &'a mut TestUa,
    next_hop: SocketAddr,
    dialog: Option<UaDialog>,
}

/// A side's dialog (borrowing only that field, not its user agent).
fn dlg(dialog: &mut Option<UaDialog>) -> anyhow::Result<&mut UaDialog> {
    dialog
        .as_mut()
        .ok_or_else(|| anyhow::anyhow!("no dialog yet"))
}

/// A full session through Kamailio: INVITE/200/ACK, a re-INVITE from each
/// side, a MESSAGE each way, BYE from the callee; then no call left on the
/// host. alice is always behind the host.
async fn session(proto: Proto, bob_at: Bob, caller: Caller) -> R {
    let Scene {
        core,
        host,
        host_addr,
        ladder,
        mut alice,
        mut bob,
    } = Scene::start(proto, None, Vec::new(), Ladder::default()).await?;
    register(&mut alice, host_addr).await?;
    let bob_next = match bob_at {
        Bob::BehindTheHost => host_addr,
        Bob::AtTheCore => core.addr,
    };
    register(&mut bob, bob_next).await?;
    let mut a = Side {
        ua: &mut alice,
        next_hop: host_addr,
        dialog: None,
    };
    let mut b = Side {
        ua: &mut bob,
        next_hop: bob_next,
        dialog: None,
    };
    let (x, y) = match caller {
        Caller::Alice => (&mut a, &mut b),
        Caller::Bob => (&mut b, &mut a),
    };
    // The callee is reached through the host when it is behind it.
    let callee_reached_from = if y.next_hop == host_addr {
        host_addr
    } else {
        core.addr
    };

    let callee_uri = format!("sip:{}@example.com", y.ua.name);
    let mut xd = x.ua.new_dialog(&callee_uri, x.next_hop);
    x.ua.send(
        x.next_hop,
        &xd.request(x.ua, "INVITE", Some(("application/sdp", SDP_OFFER))),
    );
    let (inv, from) = y.ua.expect_request("INVITE").await?;
    // Over TCP the host opens its own connection to a client (its source
    // port is ephemeral); reaching the client over the connection it
    // registered on is the edge's (flows, RFC 5626).
    assert_eq!(from.ip(), callee_reached_from.ip(), "{}", core.log_text());
    let yd = y.ua.accept_dialog(&inv, from);
    y.ua.send(
        from,
        &y.ua.reply(
            &inv,
            200,
            &yd.local_tag,
            Some(("application/sdp", SDP_ANSWER)),
        ),
    );
    let ok = x.ua.expect_response(200).await?;
    if x.next_hop == core.addr {
        assert!(
            ok.header("Record-Route").is_some(),
            "the host's 2xx carries the core's Record-Route"
        );
    }
    xd.update_from_response(&ok);
    x.ua.send(x.next_hop, &xd.ack(x.ua));
    let (ack, _) = y.ua.expect_request("ACK").await?;
    assert_eq!(ack.call_id(), inv.call_id(), "the ACK reached the callee");
    x.dialog = Some(xd);
    y.dialog = Some(yd);
    if bob_at == Bob::BehindTheHost {
        assert_eq!(host.stats.calls(), 2, "alice–core and core–bob");
    }

    // A re-INVITE from each side (target refresh through the core).
    reinvite(x, y).await?;
    reinvite(y, x).await?;
    message(x, y, "hello").await?;
    message(y, x, "hello back").await?;

    // BYE from the callee.
    hang_up(y, x).await?;
    no_call_left(host, &ladder).await
}

/// `x` hangs up on `y`: BYE, 200.
async fn hang_up(x: &mut Side<'_>, y: &mut Side<'_>) -> R {
    let bye = dlg(&mut x.dialog)?.request(x.ua, "BYE", None);
    x.ua.send(x.next_hop, &bye);
    let (bye, from) = y.ua.expect_request("BYE").await?;
    let tag = dlg(&mut y.dialog)?.local_tag.clone();
    y.ua.send(from, &y.ua.reply(&bye, 200, &tag, None));
    x.ua.expect_response(200).await?;
    Ok(())
}

/// `x` re-INVITEs `y` in their dialog; 200, ACK.
async fn reinvite(x: &mut Side<'_>, y: &mut Side<'_>) -> R {
    let re = dlg(&mut x.dialog)?.request(x.ua, "INVITE", Some(("application/sdp", SDP_OFFER)));
    x.ua.send(x.next_hop, &re);
    let (got, from) = y.ua.expect_request("INVITE").await?;
    let yd = dlg(&mut y.dialog)?;
    assert_eq!(got.call_id(), Some(yd.call_id.as_str()), "in the dialog");
    let tag = yd.local_tag.clone();
    y.ua.send(
        from,
        &y.ua
            .reply(&got, 200, &tag, Some(("application/sdp", SDP_ANSWER))),
    );
    let ok = x.ua.expect_response(200).await?;
    dlg(&mut x.dialog)?.update_from_response(&ok);
    let ack = dlg(&mut x.dialog)?.ack(x.ua);
    x.ua.send(x.next_hop, &ack);
    y.ua.expect_request("ACK").await?;
    Ok(())
}

/// `x` sends `y` an in-dialog MESSAGE, answered 200.
async fn message(x: &mut Side<'_>, y: &mut Side<'_>, text: &str) -> R {
    let m = dlg(&mut x.dialog)?.request(x.ua, "MESSAGE", Some(("text/plain", text)));
    x.ua.send(x.next_hop, &m);
    let (got, from) = y.ua.expect_request("MESSAGE").await?;
    assert_eq!(&got.body[..], text.as_bytes());
    let tag = dlg(&mut y.dialog)?.local_tag.clone();
    y.ua.send(from, &y.ua.reply(&got, 200, &tag, None));
    x.ua.expect_response(200).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_alice_behind_the_host_calls_bob_at_the_core() -> R {
    session(Proto::Udp, Bob::AtTheCore, Caller::Alice).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_bob_at_the_core_calls_alice_behind_the_host() -> R {
    session(Proto::Udp, Bob::AtTheCore, Caller::Bob).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_alice_calls_bob_both_behind_the_host() -> R {
    session(Proto::Udp, Bob::BehindTheHost, Caller::Alice).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_bob_calls_alice_both_behind_the_host() -> R {
    session(Proto::Udp, Bob::BehindTheHost, Caller::Bob).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_alice_behind_the_host_calls_bob_at_the_core() -> R {
    session(Proto::Tcp, Bob::AtTheCore, Caller::Alice).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_bob_at_the_core_calls_alice_behind_the_host() -> R {
    session(Proto::Tcp, Bob::AtTheCore, Caller::Bob).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_alice_calls_bob_both_behind_the_host() -> R {
    session(Proto::Tcp, Bob::BehindTheHost, Caller::Alice).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_bob_calls_alice_both_behind_the_host() -> R {
    session(Proto::Tcp, Bob::BehindTheHost, Caller::Bob).await
}

use escalator_testkit::sdp::FRESH_OFFER;

/// The escalation plugin, with alice's client as the legacy one and the
/// factory of example.com at the core.
fn escalation_plugin() -> escalator_host::config::PluginConfig {
    escalator_e2e::escalation_plugin(
        "version = \"kamailio-e2e\"\n\n[[legacy.rules]]\nname = \"old-test-clients\"\n\
         verdict = \"legacy\"\nuser_agent = \"^escalator-test-ua/alice\"\n\n\
         [triggers.custom]\nmethod = \"INFO\"\ncontent_type = \"application/vnd.example.add-user\"\n\
         format = \"lines\"\n\n\
         [domains.\"example.com\"]\nfactory_uri = \"sip:conference-factory@example.com\"\n\
         max_group_size = 6\n",
    )
    .0
}

/// Escalation with a record-routing core between the host and everyone
/// else: alice (legacy, behind the host) in a chat with bob (registered at
/// Kamailio) adds carol; the conference INVITE reaches the scripted focus
/// through Kamailio; the focus answers, then invites bob (with a Replaces
/// naming bob's own dialog) and carol through the core; bob's BYE of the
/// replaced dialog is absorbed, and MESSAGEs from alice and from bob reach
/// the focus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_through_a_record_routing_core() -> R {
    escalate_through_the_core(
        &["carol"],
        Bob::AtTheCore,
        true,
        AnswerCreator::BeforeInviting,
    )
    .await
}

/// alice and bob both behind the host, bob's client supports Replaces: the
/// focus's Replaces (naming the core's view of the 1-to-1) reaches bob
/// translated to the dialog bob knows; bob joins and ends his old dialog,
/// whose BYE crosses the core to alice's side and is absorbed there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_with_both_behind_the_host_and_bob_supporting_replaces() -> R {
    escalate_through_the_core(
        &["carol"],
        Bob::BehindTheHost,
        true,
        AnswerCreator::BeforeInviting,
    )
    .await
}

/// The same with a legacy bob: he sees a re-INVITE in his dialog with the
/// focus's offer, never a second call; the host ends the old dialog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_with_both_behind_the_host_and_a_legacy_bob() -> R {
    escalate_through_the_core(
        &["carol"],
        Bob::BehindTheHost,
        false,
        AnswerCreator::BeforeInviting,
    )
    .await
}

/// The focus invites everyone before it answers alice's host (as many do):
/// bob's BYE of the 1-to-1 arrives while the conference INVITE is pending
/// and is absorbed; alice joins when the focus answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_with_a_focus_that_invites_before_answering() -> R {
    escalate_through_the_core(
        &["carol"],
        Bob::AtTheCore,
        true,
        AnswerCreator::AfterInviting,
    )
    .await
}

/// The same with both behind the host: the BYE that bob's client sends
/// for the replaced dialog crosses the core while the conference is
/// pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_with_both_behind_the_host_and_a_focus_that_invites_first() -> R {
    escalate_through_the_core(
        &["carol"],
        Bob::BehindTheHost,
        true,
        AnswerCreator::AfterInviting,
    )
    .await
}

/// The same with a legacy bob behind the host and a focus that invites
/// first: the host hangs up the replaced dialog itself, during the wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_with_a_legacy_bob_and_a_focus_that_invites_first() -> R {
    escalate_through_the_core(
        &["carol"],
        Bob::BehindTheHost,
        false,
        AnswerCreator::AfterInviting,
    )
    .await
}

/// The same with a REFER that lists several targets (RFC 5368).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_target_escalation_through_a_record_routing_core() -> R {
    escalate_through_the_core(
        &["carol", "dave"],
        Bob::AtTheCore,
        true,
        AnswerCreator::BeforeInviting,
    )
    .await
}

/// An escalation under way through Kamailio: the 1-to-1 between alice
/// (legacy, behind the host) and bob, the invitees registered at the core,
/// the focus serving in a task, and alice's REFER answered up to her fresh
/// offer.
struct Escalating {
    core: Kamailio,
    host: HostHandle,
    host_addr: SocketAddr,
    ladder: Ladder,
    alice: TestUa,
    bob: TestUa,
    /// alice's and bob's dialogs of the 1-to-1.
    a: UaDialog,
    b: UaDialog,
    bob_next: SocketAddr,
    others: Vec<TestUa>,
    targets: Vec<String>,
    conference: tokio::task::JoinHandle<anyhow::Result<focus::Conference>>,
}

async fn escalation_started(
    invitees: &[&str],
    bob_at: Bob,
    bob_capable: bool,
    answer: AnswerCreator,
) -> anyhow::Result<Escalating> {
    let ladder = Ladder::default();
    let mut focus = TestUa::bind("focus", Proto::Udp, addr("127.0.0.7:0"), ladder.clone()).await?;
    focus.absorb_retransmissions = true;
    // Outlives the plugin's answer timeout (5 s), for the cells that wait for it.
    focus.default_timeout = std::time::Duration::from_secs(10);
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
    let bob_next = match bob_at {
        Bob::AtTheCore => core.addr,
        Bob::BehindTheHost => host_addr,
    };
    register(&mut bob, bob_next).await?;
    let mut others = Vec::new();
    for (i, name) in invitees.iter().enumerate() {
        let mut ua = TestUa::bind(
            name,
            Proto::Udp,
            addr(&format!("127.0.0.{}:0", 8 + i)),
            ladder.clone(),
        )
        .await?;
        ua.absorb_retransmissions = true;
        register(&mut ua, core.addr).await?;
        others.push(ua);
    }
    let conference = tokio::spawn(focus::serve(focus, core.addr, answer));

    // The 1-to-1 chat.
    let mut a = alice.new_dialog("sip:bob@example.com", host_addr);
    alice.send(
        host_addr,
        &a.request(&alice, "INVITE", Some(("application/sdp", SDP_OFFER))),
    );
    let (inv, via) = bob.expect_request("INVITE").await?;
    let b = bob.accept_dialog(&inv, via);
    let mut ok = bob.reply(
        &inv,
        200,
        &b.local_tag,
        Some(("application/sdp", SDP_ANSWER)),
    );
    if bob_capable {
        ok.push_header("Supported", "replaces");
    }
    bob.send(via, &ok);
    let ok = alice.expect_response(200).await?;
    a.update_from_response(&ok);
    alice.send(host_addr, &a.ack(&alice));
    bob.expect_request("ACK").await?;

    // alice adds carol (and dave, in one REFER with a list).
    let targets: Vec<String> = invitees
        .iter()
        .map(|n| format!("sip:{n}@example.com"))
        .collect();
    let refer = refer_for(&mut a, &alice, &targets);
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
    Ok(Escalating {
        core,
        host,
        host_addr,
        ladder,
        alice,
        bob,
        a,
        b,
        bob_next,
        others,
        targets,
        conference,
    })
}

/// The focus invites bob with a Replaces naming the 1-to-1. A capable bob
/// receives it naming his own dialog (RFC 3891 §3: to-tag = bob's tag,
/// from-tag = the host's), accepts and ends the old dialog; a legacy bob
/// behind the host sees a re-INVITE in his dialog instead. Returns bob's
/// dialog with the focus.
async fn bob_joins(e: &mut Escalating, bob_capable: bool) -> anyhow::Result<UaDialog> {
    let Escalating {
        ladder,
        bob,
        b,
        bob_next,
        ..
    } = e;
    let (join, from) = match bob.expect_request("INVITE").await {
        Ok(x) => x,
        Err(err) => {
            eprintln!("{}", escalator_testkit::ua::render_ladder(ladder));
            return Err(err.into());
        }
    };
    let bf = if bob_capable {
        let replaces = join.header("Replaces").unwrap_or_default().to_string();
        assert_eq!(
            replaces_fields(&replaces),
            (
                b.call_id.clone(),
                b.local_tag.clone(),
                b.remote_tag.clone().unwrap_or_default()
            ),
            "{replaces}"
        );
        let bf = bob.accept_dialog(&join, from);
        bob.send(
            from,
            &bob.reply(
                &join,
                200,
                &bf.local_tag,
                Some(("application/sdp", SDP_ANSWER)),
            ),
        );
        bob.expect_request("ACK").await?;
        bob.send(*bob_next, &b.request(bob, "BYE", None));
        bob.expect_response(200).await?;
        bf
    } else {
        assert_eq!(join.call_id(), Some(b.call_id.as_str()), "a re-INVITE");
        assert_eq!(join.header("Replaces"), None);
        assert_eq!(
            &join.body[..],
            focus::CONF_SDP.as_bytes(),
            "the focus's offer"
        );
        bob.send(
            from,
            &bob.reply(
                &join,
                200,
                &b.local_tag,
                Some(("application/sdp", SDP_ANSWER)),
            ),
        );
        bob.expect_request("ACK").await?;
        b.clone()
    };
    Ok(bf)
}

async fn escalate_through_the_core(
    invitees: &[&str],
    bob_at: Bob,
    bob_capable: bool,
    answer: AnswerCreator,
) -> R {
    let mut e = escalation_started(invitees, bob_at, bob_capable, answer).await?;
    let mut bf = bob_joins(&mut e, bob_capable).await?;
    let Escalating {
        core: _running,
        host,
        host_addr,
        ladder,
        mut alice,
        mut bob,
        mut a,
        bob_next,
        mut others,
        targets,
        conference,
        ..
    } = e;
    for ua in &mut others {
        joins(ua).await?;
    }

    // The focus answered (before or after inviting): alice is re-anchored
    // and told; bob's BYE of the 1-to-1 never reaches her, whether it came
    // before the focus's answer or after.
    let (alice_ack, _) = alice.expect_request("ACK").await?;
    assert_eq!(
        &alice_ack.body[..],
        focus::CONF_SDP.as_bytes(),
        "alice re-anchored"
    );
    let (n, _) = alice.expect_request("NOTIFY").await?;
    assert!(String::from_utf8_lossy(&n.body).contains("200 OK"));
    alice.send(host_addr, &alice.reply(&n, 200, &a.local_tag, None));
    alice
        .expect_silence(std::time::Duration::from_millis(300))
        .await?;

    let focus::Conference {
        ua: mut focus,
        invite: conf,
        creator: f,
        members,
    } = conference.await??;
    let mut invited: Vec<(String, u16)> = members
        .iter()
        .map(|(e, status, _)| (e.uri.clone(), *status))
        .collect();
    invited.sort();
    let mut expected = vec![("sip:bob@example.com".to_string(), 200)];
    expected.extend(targets.iter().map(|t| (t.clone(), 200)));
    expected.sort();
    assert_eq!(invited, expected, "bob and the invitees, all joined");
    let bob_at_focus = focus_tag_with(&members, "sip:bob@example.com");

    // alice's chat now leads to the focus, through the core; so does bob's.
    alice.send(
        host_addr,
        &a.request(&alice, "MESSAGE", Some(("text/plain", "hi all"))),
    );
    let (m, from) = focus.expect_request("MESSAGE").await?;
    assert_eq!(m.call_id(), conf.call_id());
    focus.send(from, &focus.reply(&m, 200, &f.local_tag, None));
    alice.expect_response(200).await?;
    bob.send(
        bob_next,
        &bf.request(&bob, "MESSAGE", Some(("text/plain", "bob here"))),
    );
    let (m, from) = focus.expect_request("MESSAGE").await?;
    assert_eq!(&m.body[..], b"bob here");
    focus.send(from, &focus.reply(&m, 200, &bob_at_focus, None));
    bob.expect_response(200).await?;

    alice.send(host_addr, &a.request(&alice, "BYE", None));
    let (bye, from) = focus.expect_request("BYE").await?;
    focus.send(from, &focus.reply(&bye, 200, &f.local_tag, None));
    alice.expect_response(200).await?;
    bob_leaves_the_focus((&mut bob, &mut bf, bob_next), &mut focus, &bob_at_focus).await?;
    no_call_left(host, &ladder).await
}

/// The focus invites bob first (bob leaves the 1-to-1 for it), then
/// cannot make the conference and refuses alice's INVITE with 480 (not
/// 503: a proxy turns that into 500): there is no 1-to-1 to go back to, so
/// alice's fresh offer is answered with bob's old SDP, she is told 480,
/// then hung up. Nothing is left on the host once bob leaves the focus too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conference_failing_after_bob_left_tells_alice_and_hangs_her_up() -> R {
    let mut e = escalation_started(
        &["carol"],
        Bob::BehindTheHost,
        true,
        AnswerCreator::RefuseAfterInviting(480),
    )
    .await?;
    let mut bf = bob_joins(&mut e, true).await?;
    let Escalating {
        core: _running,
        host,
        host_addr,
        ladder,
        mut alice,
        mut bob,
        a,
        bob_next,
        mut others,
        conference,
        ..
    } = e;
    joins(&mut others[0]).await?;

    let (ack, _) = alice.expect_request("ACK").await?;
    assert_eq!(&ack.body[..], SDP_ANSWER.as_bytes(), "bob's last answer");
    let (n, _) = alice.expect_request("NOTIFY").await?;
    assert!(String::from_utf8_lossy(&n.body).contains("480"), "told why");
    alice.send(host_addr, &alice.reply(&n, 200, &a.local_tag, None));
    let (bye, from) = alice.expect_request("BYE").await?;
    alice.send(from, &alice.reply(&bye, 200, &a.local_tag, None));

    let focus::Conference {
        ua: mut focus,
        members,
        ..
    } = conference.await??;
    let bob_at_focus = focus_tag_with(&members, "sip:bob@example.com");
    bob_leaves_the_focus((&mut bob, &mut bf, bob_next), &mut focus, &bob_at_focus).await?;
    no_call_left(host, &ladder).await
}

/// alice hangs up while the conference rings (the focus answered 180 and
/// holds): her 200 to the offerless re-INVITE is ACKed, her BYE answered,
/// bob (behind the host) gets a BYE for the 1-to-1 through the core, and
/// the focus a CANCEL; nothing is left on the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_hanging_up_while_the_conference_rings_ends_every_leg_through_the_core() -> R {
    let e = escalation_started(
        &["carol"],
        Bob::BehindTheHost,
        true,
        AnswerCreator::RingUntilCancelled,
    )
    .await?;
    let Escalating {
        core: _running,
        host,
        host_addr,
        ladder,
        mut alice,
        mut bob,
        mut a,
        b,
        conference,
        ..
    } = e;
    // Give the 180 time to reach the host first: no CANCEL before it.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    alice.send(host_addr, &a.request(&alice, "BYE", None));
    let (ack, _) = alice.expect_request("ACK").await?;
    assert_eq!(ack.call_id(), Some(a.call_id.as_str()));
    alice.expect_response(200).await?;
    let (bye, from) = bob.expect_request("BYE").await?;
    assert_eq!(bye.call_id(), Some(b.call_id.as_str()), "the 1-to-1 ends");
    bob.send(from, &bob.reply(&bye, 200, &b.local_tag, None));
    let done = conference.await??;
    assert!(done.members.is_empty(), "cancelled before inviting anyone");
    no_call_left(host, &ladder).await
}

/// The focus refuses at once: alice's fresh offer is answered with bob's
/// SDP, she is told the status, and the 1-to-1 through the core goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_conference_leaves_the_one_to_one_through_the_core() -> R {
    let refused = AnswerCreator::RefuseAtOnce(486);
    rolled_back_through_the_core(refused, "486", Bob::BehindTheHost).await?;
    rolled_back_through_the_core(refused, "486", Bob::AtTheCore).await
}

/// A challenge to the conference INVITE (the client cannot answer it):
/// alice is told 403, the 1-to-1 goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenged_conference_is_reported_403_and_the_one_to_one_stays() -> R {
    let challenged = AnswerCreator::RefuseAtOnce(407);
    rolled_back_through_the_core(challenged, "403 Forbidden", Bob::BehindTheHost).await?;
    rolled_back_through_the_core(challenged, "403 Forbidden", Bob::AtTheCore).await
}

/// The conference never answers (100 Trying is all the host hears): at the plugin's answer timeout (5 s here) it is cancelled,
/// alice's pending 200 is ACKed with bob's SDP, she is told 408, and the
/// 1-to-1 goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conference_that_never_answers_is_cancelled_and_the_one_to_one_stays() -> R {
    rolled_back_through_the_core(
        AnswerCreator::SilentUntilCancelled,
        "408",
        Bob::BehindTheHost,
    )
    .await
}

async fn rolled_back_through_the_core(answer: AnswerCreator, told: &str, bob_at: Bob) -> R {
    let e = escalation_started(&["carol"], bob_at, true, answer).await?;
    let Escalating {
        core: _running,
        host,
        host_addr,
        ladder,
        mut alice,
        mut bob,
        a,
        b,
        bob_next,
        conference,
        ..
    } = e;
    alice.default_timeout = std::time::Duration::from_secs(10);
    let (ack, _) = alice.expect_request("ACK").await?;
    assert_eq!(&ack.body[..], SDP_ANSWER.as_bytes(), "media stays with bob");
    let (n, _) = alice.expect_request("NOTIFY").await?;
    let frag = String::from_utf8_lossy(&n.body).to_string();
    assert!(frag.contains(told), "{frag}");
    alice.send(host_addr, &alice.reply(&n, 200, &a.local_tag, None));
    conference.await??;
    let mut x = Side {
        ua: &mut alice,
        next_hop: host_addr,
        dialog: Some(a),
    };
    let mut y = Side {
        ua: &mut bob,
        next_hop: bob_next,
        dialog: Some(b),
    };
    message(&mut x, &mut y, "still there?").await?;
    message(&mut y, &mut x, "yes").await?;
    hang_up(&mut x, &mut y).await?;
    no_call_left(host, &ladder).await
}

/// bob hangs up (a plain BYE, no Replaces) while the conference rings: the
/// BYE is answered and not relayed. The conference never answers, so at
/// the plugin's answer timeout (5 s here) it is cancelled; alice's pending
/// 200 is ACKed with bob's last SDP, she is told 408 and, the 1-to-1 being
/// gone, hung up. Nothing is left on the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bob_hanging_up_while_the_conference_rings_ends_with_alice_told() -> R {
    let mut e = escalation_started(
        &["carol"],
        Bob::BehindTheHost,
        true,
        AnswerCreator::RingUntilCancelled,
    )
    .await?;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let bye = e.b.request(&e.bob, "BYE", None);
    e.bob.send(e.bob_next, &bye);
    e.bob.expect_response(200).await?;
    e.alice.default_timeout = std::time::Duration::from_secs(10);
    let (ack, _) = e.alice.expect_request("ACK").await?;
    assert_eq!(&ack.body[..], SDP_ANSWER.as_bytes());
    let (n, _) = e.alice.expect_request("NOTIFY").await?;
    let frag = String::from_utf8_lossy(&n.body).to_string();
    assert!(frag.contains("408"), "{frag}");
    e.alice
        .send(e.host_addr, &e.alice.reply(&n, 200, &e.a.local_tag, None));
    let (bye, from) = e.alice.expect_request("BYE").await?;
    e.alice
        .send(from, &e.alice.reply(&bye, 200, &e.a.local_tag, None));
    (&mut e.conference).await??;
    no_call_left(e.host, &e.ladder).await
}

/// After the escalation alice adds more users the way she added carol,
/// and the host turns each into what a capable client sends the focus: her
/// REFER for dave is relayed on the conference dialog; her REFER listing
/// erin and frank becomes one REFER per user (this focus does not list
/// `multiple-refer`); her custom request for grace becomes a REFER too.
/// Every NOTIFY alice gets carries her own REFER's id; grace's outcome comes
/// by MESSAGE; one conference only; her chat reaches the focus throughout;
/// then the group is full (6) and a further addition is refused 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn further_additions_go_to_the_focus_with_the_clients_own_ids() -> R {
    let mut e = escalation_started(
        &["carol"],
        Bob::AtTheCore,
        true,
        AnswerCreator::BeforeInviting,
    )
    .await?;
    let mut bf = bob_joins(&mut e, true).await?;
    joins(&mut e.others[0]).await?;
    let Escalating {
        core,
        host,
        host_addr,
        ladder,
        mut alice,
        mut bob,
        mut a,
        bob_next,
        conference,
        ..
    } = e;
    let (ack, _) = alice.expect_request("ACK").await?;
    assert_eq!(&ack.body[..], focus::CONF_SDP.as_bytes());
    let (n, _) = alice.expect_request("NOTIFY").await?;
    alice.send(host_addr, &alice.reply(&n, 200, &a.local_tag, None));
    let mut conf = conference.await??;
    let core_addr = core.addr;

    // dave: alice's REFER goes to the focus as it is; the focus's NOTIFYs
    // reach alice with the id of her REFER.
    let mut refer = a.request(&alice, "REFER", None);
    refer.push_header("Refer-To", "<sip:dave@example.com>");
    alice.send(host_addr, &refer);
    let (at_focus, users) = conf.take_refer().await?;
    assert_eq!(users, ["sip:dave@example.com"]);
    alice.expect_response(202).await?;
    let alices_id = format!("refer;id={}", refer.cseq().map_or(0, |c| c.0));
    for (frag, state) in [
        ("SIP/2.0 100 Trying\r\n", "active;expires=60"),
        ("SIP/2.0 200 OK\r\n", "terminated;reason=noresource"),
    ] {
        conf.notify(core_addr, &at_focus, frag, state);
        let (n, from) = alice.expect_request("NOTIFY").await?;
        assert_eq!(n.header("Event"), Some(alices_id.as_str()), "her own id");
        alice.send(from, &alice.reply(&n, 200, &a.local_tag, None));
        conf.ua.expect_response(200).await?;
    }

    chat_reaches_the_conference((&mut alice, &mut a, host_addr), &mut conf, "dave's in").await?;

    // erin and frank in one REFER with a list: one REFER each to the focus;
    // the focus's NOTIFYs for those are answered by the host; alice hears
    // 100 and 200 on her own REFER's id.
    let targets = [
        "sip:erin@example.com".to_string(),
        "sip:frank@example.com".to_string(),
    ];
    let list = refer_for(&mut a, &alice, &targets);
    alice.send(host_addr, &list);
    alice.expect_response(202).await?;
    let list_id = format!("refer;id={}", list.cseq().map_or(0, |c| c.0));
    let (n, from) = alice.expect_request("NOTIFY").await?;
    assert_eq!(n.header("Event"), Some(list_id.as_str()));
    assert!(String::from_utf8_lossy(&n.body).contains("100 Trying"));
    alice.send(from, &alice.reply(&n, 200, &a.local_tag, None));
    let mut referred = Vec::new();
    let mut refers = Vec::new();
    for _ in 0..2 {
        let (at_focus, users) = conf.take_refer().await?;
        referred.extend(users);
        refers.push(at_focus);
    }
    for at_focus in &refers {
        conf.notify(
            core_addr,
            at_focus,
            "SIP/2.0 200 OK\r\n",
            "terminated;reason=noresource",
        );
        conf.ua.expect_response(200).await?;
    }
    referred.sort();
    assert_eq!(referred, targets, "one REFER per user");
    let (n, from) = alice.expect_request("NOTIFY").await?;
    assert_eq!(n.header("Event"), Some(list_id.as_str()));
    assert!(String::from_utf8_lossy(&n.body).contains("200 OK"));
    alice.send(from, &alice.reply(&n, 200, &a.local_tag, None));

    chat_reaches_the_conference((&mut alice, &mut a, host_addr), &mut conf, "hi erin, frank")
        .await?;

    // grace by the custom request: 200, a REFER to the focus, a MESSAGE.
    let info = a.request(
        &alice,
        "INFO",
        Some((
            "application/vnd.example.add-user",
            "sip:grace@example.com\r\n",
        )),
    );
    alice.send(host_addr, &info);
    alice.expect_response(200).await?;
    let (_, users) = conf.take_refer().await?;
    assert_eq!(users, ["sip:grace@example.com"]);
    let (m, from) = alice.expect_request("MESSAGE").await?;
    assert_eq!(&m.body[..], b"Added to the chat: grace@example.com.");
    alice.send(from, &alice.reply(&m, 200, &a.local_tag, None));

    // The group is full: bob, carol, dave, erin, frank, grace.
    let mut one_more = a.request(&alice, "REFER", None);
    one_more.push_header("Refer-To", "<sip:heidi@example.com>");
    alice.send(host_addr, &one_more);
    let refused = alice.expect_response(403).await?;
    assert!(refused.header("Warning").is_some());

    chat_reaches_the_conference((&mut alice, &mut a, host_addr), &mut conf, "welcome").await?;

    alice.send(host_addr, &a.request(&alice, "BYE", None));
    let (bye, from) = conf.ua.expect_request("BYE").await?;
    conf.ua.send(
        from,
        &conf.ua.reply(&bye, 200, &conf.creator.local_tag, None),
    );
    alice.expect_response(200).await?;
    let bob_at_focus = focus_tag_with(&conf.members, "sip:bob@example.com");
    bob_leaves_the_focus((&mut bob, &mut bf, bob_next), &mut conf.ua, &bob_at_focus).await?;
    no_call_left(host, &ladder).await
}

/// alice's MESSAGE `text` reaches the one conference (its dialog), 200.
async fn chat_reaches_the_conference(
    (alice, a, host_addr): (&mut TestUa, &mut UaDialog, SocketAddr),
    conf: &mut focus::Conference,
    text: &str,
) -> R {
    alice.send(
        host_addr,
        &a.request(alice, "MESSAGE", Some(("text/plain", text))),
    );
    let (m, from) = conf.ua.expect_request("MESSAGE").await?;
    assert_eq!(m.call_id(), conf.invite.call_id(), "the one conference");
    assert_eq!(&m.body[..], text.as_bytes());
    conf.ua
        .send(from, &conf.ua.reply(&m, 200, &conf.creator.local_tag, None));
    alice.expect_response(200).await?;
    Ok(())
}

/// alice's REFER for `targets`: one Refer-To, or a resource list (RFC 5368).
fn refer_for(a: &mut UaDialog, alice: &TestUa, targets: &[String]) -> SipMessage {
    match targets {
        [one] => {
            let mut r = a.request(alice, "REFER", None);
            r.push_header("Refer-To", format!("<{one}>"));
            r
        }
        many => {
            let xml = escalator_escalation::resource_list::build(many);
            let mut r = a.request(
                alice,
                "REFER",
                Some(("application/resource-lists+xml", &xml)),
            );
            r.push_header("Refer-To", "<cid:targets@alice.example.com>");
            r.push_header("Require", "multiple-refer");
            r.push_header("Content-Disposition", "recipient-list");
            r.push_header("Content-ID", "<targets@alice.example.com>");
            r
        }
    }
}

/// `ua` accepts the focus's INVITE (200 with an answer) and gets its ACK.
async fn joins(ua: &mut TestUa) -> R {
    let (inv, from) = ua.expect_request("INVITE").await?;
    assert_eq!(inv.header("Replaces"), None, "only bob's entry replaces");
    let d = ua.accept_dialog(&inv, from);
    ua.send(
        from,
        &ua.reply(
            &inv,
            200,
            &d.local_tag,
            Some(("application/sdp", SDP_ANSWER)),
        ),
    );
    ua.expect_request("ACK").await?;
    Ok(())
}

/// The focus's tag in its dialog with `uri`.
fn focus_tag_with(members: &[(focus::Entry, u16, Option<UaDialog>)], uri: &str) -> String {
    members
        .iter()
        .find(|(e, ..)| e.uri == uri)
        .and_then(|(_, _, d)| d.as_ref())
        .map(|d| d.local_tag.clone())
        .unwrap_or_default()
}

/// bob hangs up on the focus (`tag`: the focus's tag in that dialog).
async fn bob_leaves_the_focus(
    (bob, bf, bob_next): (&mut TestUa, &mut UaDialog, SocketAddr),
    focus: &mut TestUa,
    tag: &str,
) -> R {
    bob.send(bob_next, &bf.request(bob, "BYE", None));
    let (bye, from) = focus.expect_request("BYE").await?;
    focus.send(from, &focus.reply(&bye, 200, tag, None));
    bob.expect_response(200).await?;
    Ok(())
}

/// A Replaces value's Call-ID, to-tag and from-tag.
fn replaces_fields(v: &str) -> (String, String, String) {
    let mut parts = v.split(';').map(str::trim);
    let call_id = parts.next().unwrap_or_default().to_string();
    let (mut to, mut from) = (String::new(), String::new());
    for p in parts {
        if let Some(t) = p.strip_prefix("to-tag=") {
            to = t.to_string();
        } else if let Some(f) = p.strip_prefix("from-tag=") {
            from = f.to_string();
        }
    }
    (call_id, to, from)
}
