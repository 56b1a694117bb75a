//! `escalator demo`: the host with the escalation plugin between a legacy
//! client (alice) and the operator's core, on loopback. alice and bob chat
//! 1-to-1; alice asks to add carol (REFER); the plugin turns the session
//! into an ad-hoc conference on alice's behalf. "core" stands for the
//! operator side: bob's client and the conference focus both answer there.

use anyhow::Context;
use escalator_host::config::{Config, PluginConfig};
use escalator_host::transport::Proto;
use escalator_testkit::sdp::{ANSWER as SDP_ANSWER, OFFER as SDP_OFFER};
use escalator_testkit::ua::{render_ladder, Ladder, TestUa};
use std::time::Duration;

const FRESH_OFFER: &str = "v=0\r\no=alice 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=message 7654 TCP/MSRP *\r\na=accept-types:message/cpim text/plain\r\na=path:msrp://127.0.0.1:7654/a1b2;tcp\r\n";
const FOCUS_ANSWER: &str = "v=0\r\no=focus 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=message 9000 TCP/MSRP *\r\na=accept-types:message/cpim text/plain\r\na=path:msrp://127.0.0.1:9000/conf-1;tcp\r\n";

const DEMO_POLICY: &str = r#"version = "demo"

[[legacy.rules]]
name = "demo-legacy-client"
verdict = "legacy"
user_agent = "^escalator-test-ua/alice"

[domains."example.com"]
factory_uri = "sip:conference-factory@example.com"
max_group_size = 10
"#;

pub struct DemoReport {
    pub ladder: String,
    pub conference_invite: String,
}

pub async fn run() -> anyhow::Result<DemoReport> {
    let ladder = Ladder::default();
    let any = "127.0.0.1:0".parse()?;
    let mut alice = TestUa::bind("alice", Proto::Udp, any, ladder.clone()).await?;
    let mut core = TestUa::bind("core", Proto::Udp, any, ladder.clone()).await?;
    alice.absorb_retransmissions = true;
    core.absorb_retransmissions = true;

    let dir = std::env::temp_dir().join(format!("escalator-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, DEMO_POLICY)?;
    let mut cfg = Config::default();
    cfg.listen.udp = vec![any];
    cfg.listen.tcp = vec![any];
    cfg.core.address = core.addr();
    cfg.plugins = vec![PluginConfig {
        path: "builtin:escalation".into(),
        failure_threshold: 10,
        config: format!("policy = {:?}", policy.display().to_string()).parse()?,
    }];
    let host = escalator_host::host::start_with(&cfg, crate::builtins::all())
        .await
        .context("starting the host")?;
    let host_addr = host.udp_addr().context("host has no UDP address")?;

    // The 1-to-1 session.
    let mut a = alice.new_dialog("sip:bob@example.com", host_addr);
    alice.send(
        host_addr,
        &a.request(&alice, "INVITE", Some(("application/sdp", SDP_OFFER))),
    );
    let (inv, from) = core.expect_request("INVITE").await?;
    let b = core.accept_dialog(&inv, from);
    core.send(
        from,
        &core.reply(
            &inv,
            200,
            &b.local_tag,
            Some(("application/sdp", SDP_ANSWER)),
        ),
    );
    let ok = alice.expect_response(200).await?;
    a.update_from_response(&ok);
    alice.send(host_addr, &a.ack(&alice));
    core.expect_request("ACK").await?;

    // alice asks to add carol.
    let mut refer = a.request(&alice, "REFER", None);
    refer.push_header("Refer-To", "<sip:carol@example.com>");
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
    let (conf, _) = core.expect_request("INVITE").await?;
    let focus = core.accept_dialog(&conf, from);
    core.send(
        from,
        &core.reply(
            &conf,
            200,
            &focus.local_tag,
            Some(("application/sdp", FOCUS_ANSWER)),
        ),
    );
    core.expect_request("ACK").await?;
    alice.expect_request("ACK").await?;
    let (n, _) = alice.expect_request("NOTIFY").await?;
    alice.send(host_addr, &alice.reply(&n, 200, &a.local_tag, None));

    // bob's client, replaced by the focus, ends the old dialog: absorbed.
    let mut b = b;
    core.send(from, &b.request(&core, "BYE", None));
    core.expect_response(200).await?;

    // alice now talks to the conference, then leaves.
    alice.send(
        host_addr,
        &a.request(&alice, "MESSAGE", Some(("text/plain", "hi all"))),
    );
    let (m, _) = core.expect_request("MESSAGE").await?;
    core.send(from, &core.reply(&m, 200, &focus.local_tag, None));
    alice.expect_response(200).await?;
    alice.send(host_addr, &a.request(&alice, "BYE", None));
    let (bye, _) = core.expect_request("BYE").await?;
    core.send(from, &core.reply(&bye, 200, &focus.local_tag, None));
    alice.expect_response(200).await?;

    host.shutdown(Duration::from_millis(200)).await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(DemoReport {
        ladder: render_ladder(&ladder),
        conference_invite: String::from_utf8_lossy(&conf.to_bytes()).into_owned(),
    })
}
