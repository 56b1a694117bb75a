//! Plugins loaded by the host from their built shared libraries, checked on
//! the wire: the example plugin, a panicking plugin, ABI and symbol checks,
//! the call-control actions, and reload.

use escalator_e2e::{loopback, plugin_config, plugin_lib, Rig, SDP_ANSWER, SDP_OFFER};
use escalator_host::config::Config;
use escalator_host::transport::Proto;
use escalator_testkit::ua::UaDialog;
use std::net::SocketAddr;

type R = anyhow::Result<()>;

async fn establish(
    rig: &mut Rig,
) -> anyhow::Result<(
    UaDialog,
    UaDialog,
    SocketAddr,
    escalator_host::sip::SipMessage,
)> {
    let e = rig.establish().await?;
    Ok((e.a, e.b, e.host, e.b_invite))
}

async fn hang_up_from_alice(rig: &mut Rig, a: &mut UaDialog, b: &UaDialog, host: SocketAddr) -> R {
    let bye = a.request(&rig.alice, "BYE", None);
    rig.alice.send(rig.host_for_alice, &bye);
    let (bye_b, _) = rig.bob.expect_request("BYE").await?;
    rig.bob
        .send(host, &rig.bob.reply(&bye_b, 200, &b.local_tag, None));
    rig.alice.expect_response(200).await?;
    assert!(rig.wait_calls(0).await);
    Ok(())
}

fn with_plugins(plugins: Vec<escalator_host::config::PluginConfig>) -> impl FnOnce(&mut Config) {
    move |c| c.plugins = plugins
}

#[tokio::test]
async fn example_plugin_adds_its_header_on_the_wire() -> R {
    let p = plugin_config(
        "escalator-example-plugin",
        "header = \"X-Operator\"\nvalue = \"v1\"",
        10,
    );
    let mut rig = Rig::with(Proto::Udp, Proto::Udp, loopback(), with_plugins(vec![p])).await;
    let (mut a, b, host, inv) = establish(&mut rig).await?;
    assert_eq!(inv.header("X-Operator"), Some("v1"), "initial INVITE");
    let mut refer = a.request(&rig.alice, "REFER", None);
    refer.push_header("Refer-To", "<sip:carol@example.com>");
    rig.alice.send(rig.host_for_alice, &refer);
    let (r, _) = rig.bob.expect_request("REFER").await?;
    assert_eq!(
        r.header("X-Operator"),
        Some("v1"),
        "in-dialog REFER, passed on"
    );
    assert_eq!(r.header("Refer-To"), Some("<sip:carol@example.com>"));
    rig.bob
        .send(host, &rig.bob.reply(&r, 202, &b.local_tag, None));
    rig.alice.expect_response(202).await?;
    hang_up_from_alice(&mut rig, &mut a, &b, host).await
}

#[tokio::test]
async fn a_plugin_that_panics_on_everything_leaves_calls_working() -> R {
    let p = plugin_config("escalator-test-plugin", "mode = \"panic\"", 0);
    let mut rig = Rig::with(Proto::Udp, Proto::Udp, loopback(), with_plugins(vec![p])).await;
    for _ in 0..3 {
        let (mut a, b, host, _) = establish(&mut rig).await?;
        hang_up_from_alice(&mut rig, &mut a, &b, host).await?;
    }
    let status = rig.host.status().await?;
    assert!(status.contains("scripted/0.0.1"), "{status}");
    assert!(
        !status.contains("disabled"),
        "threshold 0 never disables: {status}"
    );
    Ok(())
}

#[tokio::test]
async fn a_plugin_failing_past_its_threshold_is_disabled() -> R {
    let p = plugin_config("escalator-test-plugin", "mode = \"panic\"", 2);
    let mut rig = Rig::with(Proto::Udp, Proto::Udp, loopback(), with_plugins(vec![p])).await;
    let (mut a, b, host, _) = establish(&mut rig).await?;
    hang_up_from_alice(&mut rig, &mut a, &b, host).await?;
    let status = rig.host.status().await?;
    assert!(status.contains("scripted/0.0.1 (disabled)"), "{status}");
    Ok(())
}

async fn start_error(plugins: Vec<escalator_host::config::PluginConfig>) -> String {
    let mut cfg = Config::default();
    cfg.listen.udp = vec![loopback()];
    cfg.listen.tcp = vec![];
    cfg.plugins = plugins;
    match escalator_host::host::start(&cfg).await {
        Ok(_) => panic!("host started with a bad plugin"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test]
async fn abi_mismatch_missing_symbol_and_bad_config_are_refused_clearly() {
    let e = start_error(vec![plugin_config("escalator-test-plugin-bad-abi", "", 10)]).await;
    assert!(e.contains("plugin ABI version 99 is not supported"), "{e}");
    assert!(
        e.contains(&format!(
            "this host speaks ABI version {}",
            escalator_plugin_api::ABI_VERSION
        )),
        "{e}"
    );
    let e = start_error(vec![plugin_config(
        "escalator-test-plugin-no-symbol",
        "",
        10,
    )])
    .await;
    assert!(e.contains("no `escalator_plugin_entry` symbol"), "{e}");
    let e = start_error(vec![plugin_config(
        "escalator-test-plugin",
        "mode = \"dance\"",
        10,
    )])
    .await;
    assert!(
        e.contains("scripted") && e.contains("refused its configuration"),
        "{e}"
    );
    assert!(e.contains("mode must be"), "{e}");
    let mut missing = plugin_config("escalator-example-plugin", "", 10);
    missing.path = plugin_lib("escalator-example-plugin").with_file_name("libnot_there.so");
    let e = start_error(vec![missing]).await;
    assert!(
        e.contains("libnot_there.so") && e.contains("cannot read"),
        "{e}"
    );
}

#[tokio::test]
async fn plugin_actions_that_would_smuggle_a_header_never_reach_the_wire() -> R {
    let p = plugin_config("escalator-test-plugin", "mode = \"inject\"", 10);
    let mut rig = Rig::with(Proto::Udp, Proto::Udp, loopback(), with_plugins(vec![p])).await;
    let (mut a, b, host, _) = establish(&mut rig).await?;

    let mut refer = a.request(&rig.alice, "REFER", None);
    refer.push_header("Refer-To", "<sip:carol@example.com>");
    rig.alice.send(rig.host_for_alice, &refer);
    // The plugin's 202 carried a bare CR LF in a header: the host's 500
    // goes instead, with nothing of the plugin's in it.
    let refused = rig.alice.expect_response(500).await?;
    assert_eq!(refused.cseq(), refer.cseq());
    assert!(refused.header("Injected").is_none() && refused.header("X-Note").is_none());
    // Neither its NOTIFY nor its new leg went out.
    rig.alice
        .expect_silence(std::time::Duration::from_millis(500))
        .await?;
    rig.bob
        .expect_silence(std::time::Duration::from_millis(300))
        .await?;
    // The call goes on.
    hang_up_from_alice(&mut rig, &mut a, &b, host).await
}

#[tokio::test]
async fn plugin_actions_notify_originate_a_leg_and_repair_legs() -> R {
    let p = plugin_config("escalator-test-plugin", "mode = \"actions\"", 10);
    let mut rig = Rig::with(Proto::Udp, Proto::Udp, loopback(), with_plugins(vec![p])).await;
    let (mut a, b, host, old_inv) = establish(&mut rig).await?;

    let mut refer = a.request(&rig.alice, "REFER", None);
    refer.push_header("Refer-To", "<sip:carol@example.com>");
    rig.alice.send(rig.host_for_alice, &refer);
    let accepted = rig.alice.expect_response(202).await?;
    assert_eq!(accepted.cseq(), refer.cseq());
    let (n1, _) = rig.alice.expect_request("NOTIFY").await?;
    assert_eq!(n1.header("Event"), Some("refer"));
    assert_eq!(&n1.body[..], b"SIP/2.0 100 Trying\r\n");
    assert_eq!(n1.call_id(), Some(a.call_id.as_str()), "in alice's dialog");
    rig.alice.send(
        rig.host_for_alice,
        &rig.alice.reply(&n1, 200, &a.local_tag, None),
    );

    // The new leg: a new dialog toward the core, with alice's last offer.
    let (conf_inv, _) = rig.bob.expect_request("INVITE").await?;
    assert_eq!(conf_inv.request_uri(), Some("sip:conf-factory@example.com"));
    assert_ne!(conf_inv.call_id(), old_inv.call_id());
    assert_ne!(
        conf_inv.call_id(),
        Some("ignored"),
        "the host owns the Call-ID"
    );
    assert_eq!(conf_inv.header("Supported"), Some("replaces"));
    assert_eq!(&conf_inv.body[..], SDP_OFFER.as_bytes());
    let focus = rig.bob.accept_dialog(&conf_inv, host);
    rig.bob.send(
        host,
        &rig.bob.reply(
            &conf_inv,
            200,
            &focus.local_tag,
            Some(("application/sdp", SDP_ANSWER)),
        ),
    );
    let (ack, _) = rig.bob.expect_request("ACK").await?;
    assert_eq!(
        ack.call_id(),
        conf_inv.call_id(),
        "host ACKs the plugin's INVITE"
    );
    let (bye_old, _) = rig.bob.expect_request("BYE").await?;
    assert_eq!(
        bye_old.call_id(),
        old_inv.call_id(),
        "old partner released with BYE"
    );
    rig.bob
        .send(host, &rig.bob.reply(&bye_old, 200, &b.local_tag, None));

    let (n2, _) = rig.alice.expect_request("NOTIFY").await?;
    assert_eq!(&n2.body[..], b"SIP/2.0 200 OK\r\n");
    assert!(n2
        .header("Subscription-State")
        .unwrap()
        .starts_with("terminated"));
    rig.alice.send(
        rig.host_for_alice,
        &rig.alice.reply(&n2, 200, &a.local_tag, None),
    );
    assert!(rig.wait_calls(1).await);

    // alice's dialog is now paired with the new leg.
    let msg = a.request(
        &rig.alice,
        "MESSAGE",
        Some(("text/plain", "hello conference")),
    );
    rig.alice.send(rig.host_for_alice, &msg);
    let (m, _) = rig.bob.expect_request("MESSAGE").await?;
    assert_eq!(m.call_id(), conf_inv.call_id());
    assert_eq!(&m.body[..], b"hello conference");
    rig.bob
        .send(host, &rig.bob.reply(&m, 200, &focus.local_tag, None));
    rig.alice.expect_response(200).await?;
    hang_up_from_alice(&mut rig, &mut a, &focus, host).await
}

#[tokio::test]
async fn reload_gives_new_calls_the_new_instance_and_keeps_calls_in_progress_on_the_old() -> R {
    let v1 = plugin_config(
        "escalator-example-plugin",
        "header = \"X-Gen\"\nvalue = \"v1\"",
        10,
    );
    let mut rig = Rig::with(Proto::Udp, Proto::Udp, loopback(), with_plugins(vec![v1])).await;
    let (mut a1, b1, host, inv1) = establish(&mut rig).await?;
    assert_eq!(inv1.header("X-Gen"), Some("v1"));

    let v2 = plugin_config(
        "escalator-example-plugin",
        "header = \"X-Gen\"\nvalue = \"v2\"",
        10,
    );
    let generation = rig.host.reload_plugins(&[v2]).await?;
    assert!(rig
        .host
        .status()
        .await?
        .contains(&format!("plugin_generation={generation}")));

    // The call in progress still runs on the old instance.
    let info = a1.request(&rig.alice, "INFO", None);
    rig.alice.send(rig.host_for_alice, &info);
    let (i, _) = rig.bob.expect_request("INFO").await?;
    assert_eq!(i.header("X-Gen"), Some("v1"));
    rig.bob
        .send(host, &rig.bob.reply(&i, 200, &b1.local_tag, None));
    rig.alice.expect_response(200).await?;

    // A new call gets the new one.
    let escalator_e2e::Offered { at_bob: inv2, .. } = rig.offer_call(Some(SDP_OFFER)).await?;
    assert_eq!(inv2.header("X-Gen"), Some("v2"));
    rig.bob.send(host, &rig.bob.reply(&inv2, 486, "busy", None));
    rig.bob.expect_request("ACK").await?;
    rig.alice.expect_response(486).await?;

    // A reload that fails keeps the running set.
    let bad = plugin_config("escalator-test-plugin-bad-abi", "", 10);
    assert!(rig.host.reload_plugins(&[bad]).await.is_err());
    assert!(rig
        .host
        .status()
        .await?
        .contains(&format!("plugin_generation={generation}")));
    hang_up_from_alice(&mut rig, &mut a1, &b1, host).await
}

#[tokio::test]
async fn replacing_the_library_file_takes_effect_for_new_calls_only() -> R {
    let dir = std::env::temp_dir().join(format!("escalator-swap-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let installed = dir.join("libplugin.so");
    std::fs::copy(plugin_lib("escalator-example-plugin"), &installed)?;
    // One config both libraries accept.
    let config = "header = \"X-Gen\"\nvalue = \"old\"\nmode = \"actions\"";
    let mut entry = plugin_config("escalator-example-plugin", config, 10);
    entry.path = installed.clone();
    let mut rig = Rig::with(
        Proto::Udp,
        Proto::Udp,
        loopback(),
        with_plugins(vec![entry.clone()]),
    )
    .await;
    let (mut a, b, host, inv) = establish(&mut rig).await?;
    assert_eq!(inv.header("X-Gen"), Some("old"));

    // Install another library at the same path and reload.
    std::fs::copy(plugin_lib("escalator-test-plugin"), &installed)?;
    rig.host.reload_plugins(&[entry]).await?;
    let status = rig.host.status().await?;
    assert!(status.contains("scripted/0.0.1"), "{status}");

    // The call in progress keeps the old library's instance.
    let info = a.request(&rig.alice, "INFO", None);
    rig.alice.send(rig.host_for_alice, &info);
    let (i, _) = rig.bob.expect_request("INFO").await?;
    assert_eq!(i.header("X-Gen"), Some("old"));
    rig.bob
        .send(host, &rig.bob.reply(&i, 200, &b.local_tag, None));
    rig.alice.expect_response(200).await?;

    // A new call is served by the new library, which adds no header.
    let escalator_e2e::Offered { at_bob: inv2, .. } = rig.offer_call(Some(SDP_OFFER)).await?;
    assert_eq!(inv2.header("X-Gen"), None);
    rig.bob.send(host, &rig.bob.reply(&inv2, 486, "busy", None));
    rig.bob.expect_request("ACK").await?;
    rig.alice.expect_response(486).await?;
    hang_up_from_alice(&mut rig, &mut a, &b, host).await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Builtin plugins are the embedding binary's: `builtin:NAME` resolves in the
/// registry the host was started with, at start and again on every reload;
/// an unknown name is refused with the registered ones listed.
#[tokio::test]
async fn builtins_given_at_start_resolve_again_on_reload() -> R {
    let policy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/default.toml");
    let entry = |name: &str| -> anyhow::Result<escalator_host::config::PluginConfig> {
        Ok(escalator_host::config::PluginConfig {
            path: format!("builtin:{name}").into(),
            failure_threshold: 10,
            config: format!("policy = {:?}", policy.display().to_string()).parse()?,
        })
    };
    let mut cfg = Config::default();
    cfg.listen.udp = vec![loopback()];
    cfg.listen.tcp = vec![];
    cfg.plugins = vec![entry("escalation")?];

    let e = start_error(cfg.plugins.clone()).await;
    assert!(
        e.contains("no builtin plugin named \"escalation\" (builtin: none)"),
        "{e}"
    );

    let builtins = escalator_host::plugins::Builtins::none()
        .with("escalation", escalator_escalation::escalator_plugin_entry);
    let host = escalator_host::host::start_with(&cfg, builtins).await?;
    let status = host.status().await?;
    assert!(status.contains("plugins=[escalation/"), "{status}");
    let generation = host.reload_plugins(&[entry("escalation")?]).await?;
    let status = host.status().await?;
    assert!(
        status.contains(&format!("plugin_generation={generation}"))
            && status.contains("plugins=[escalation/"),
        "{status}"
    );
    let e = match host.reload_plugins(&[entry("nope")?]).await {
        Ok(g) => panic!("reloaded an unknown builtin as generation {g}"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        e.contains("no builtin plugin named \"nope\" (builtin: escalation)"),
        "{e}"
    );
    assert!(host
        .status()
        .await?
        .contains(&format!("plugin_generation={generation}")));
    host.shutdown(std::time::Duration::from_millis(100)).await;
    Ok(())
}
