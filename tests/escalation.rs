//! The escalation plugin end to end: alice (a legacy client) in a 1-to-1
//! session through the host; "core" is the operator side, where both bob
//! (the peer) and the conference focus live, told apart by Request-URI.

use escalator_e2e::{loopback, Established, Rig, SDP_ANSWER, SDP_OFFER};
use escalator_escalation::multipart;
use escalator_host::sip::SipMessage;
use escalator_host::transport::Proto;
use std::time::Duration;

type R = anyhow::Result<()>;

use escalator_testkit::sdp::{CONFERENCE as CONF_SDP, FRESH_OFFER};

fn policy(extra: &str) -> String {
    format!(
        r#"version = "e2e"
{extra}
[[legacy.rules]]
name = "old-test-clients"
verdict = "legacy"
user_agent = "^escalator-test-ua/alice"

[domains."example.com"]
factory_uri = "sip:conference-factory@example.com"
max_group_size = 5
notify_user = true
"#
    )
}

/// A policy under which alice is a capable client.
fn capable_policy() -> String {
    policy("").replace("^escalator-test-ua/alice", "^SomeOtherClient/")
}

/// A rig whose host runs the escalation plugin with `policy_text`.
async fn rig_with(
    policy_text: &str,
    tweak: impl FnOnce(&mut escalator_host::config::Config),
) -> Rig {
    rig_with_path(policy_text, tweak).await.0
}

/// The same, with the policy file's path.
async fn rig_with_path(
    policy_text: &str,
    tweak: impl FnOnce(&mut escalator_host::config::Config),
) -> (Rig, std::path::PathBuf) {
    let (plugin, path) = escalator_e2e::escalation_plugin(policy_text);
    let mut rig = Rig::with(Proto::Udp, Proto::Udp, loopback(), move |c| {
        c.plugins = vec![plugin];
        tweak(c);
    })
    .await;
    rig.alice.absorb_retransmissions = true;
    (rig, path)
}

fn refer(s: &mut Established, rig: &Rig, refer_to: &str) -> SipMessage {
    let mut r = s.a.request(&rig.alice, "REFER", None);
    r.push_header("Refer-To", refer_to);
    r.push_header("Referred-By", "<sip:alice@example.com>");
    r
}

/// alice answers a NOTIFY 200 and returns its sipfrag.
async fn take_notify(rig: &mut Rig, s: &Established) -> anyhow::Result<(String, String)> {
    let (n, _) = rig.alice.expect_request("NOTIFY").await?;
    assert!(n.header("Event").unwrap().starts_with("refer"));
    assert_eq!(n.content_type(), Some("message/sipfrag;version=2.0"));
    rig.alice.send(
        rig.host_for_alice,
        &rig.alice.reply(&n, 200, &s.a.local_tag, None),
    );
    Ok((
        String::from_utf8_lossy(&n.body).trim_end().to_string(),
        n.header("Subscription-State")
            .unwrap_or_default()
            .to_string(),
    ))
}

/// alice answers the host's offerless re-INVITE with a fresh MSRP offer.
async fn give_fresh_offer(rig: &mut Rig, s: &Established) -> anyhow::Result<SipMessage> {
    let (reinvite, _) = rig.alice.expect_request("INVITE").await?;
    assert!(
        reinvite.body.is_empty(),
        "3pcc: the re-INVITE asks for an offer"
    );
    assert_eq!(
        reinvite.call_id(),
        Some(s.a.call_id.as_str()),
        "in alice's own dialog"
    );
    rig.alice.send(
        rig.host_for_alice,
        &rig.alice.reply(
            &reinvite,
            200,
            &s.a.local_tag,
            Some(("application/sdp", FRESH_OFFER)),
        ),
    );
    Ok(reinvite)
}

fn parts(invite: &SipMessage) -> Vec<multipart::Part> {
    multipart::split(&invite.body, invite.content_type().expect("content type"))
        .expect("multipart body")
}

/// The focus answers the conference INVITE `conf` 200 with its SDP; the
/// host ACKs it and re-anchors alice (her ACK carries that SDP). Returns
/// alice's ACK.
async fn focus_answers(
    rig: &mut Rig,
    s: &Established,
    conf: &SipMessage,
) -> anyhow::Result<SipMessage> {
    let focus = rig.bob.accept_dialog(conf, s.host);
    rig.bob.send(
        s.host,
        &rig.bob.reply(
            conf,
            200,
            &focus.local_tag,
            Some(("application/sdp", CONF_SDP)),
        ),
    );
    rig.bob.expect_request("ACK").await?;
    let (ack, _) = rig.alice.expect_request("ACK").await?;
    assert_eq!(&ack.body[..], CONF_SDP.as_bytes());
    Ok(ack)
}

/// alice's MESSAGE leaves on the conference dialog of `conf`.
async fn message_reaches_the_conference(
    rig: &mut Rig,
    s: &mut Established,
    conf: &SipMessage,
) -> R {
    let m =
        s.a.request(&rig.alice, "MESSAGE", Some(("text/plain", "hi all")));
    rig.alice.send(rig.host_for_alice, &m);
    let (got, _) = rig.bob.expect_request("MESSAGE").await?;
    assert_eq!(got.call_id(), conf.call_id());
    Ok(())
}

/// Check that 1-to-1 session still works both ways.
async fn still_one_to_one(rig: &mut Rig, s: &mut Established) -> R {
    let m =
        s.a.request(&rig.alice, "MESSAGE", Some(("text/plain", "still there?")));
    rig.alice.send(rig.host_for_alice, &m);
    let (got, _) = rig.bob.expect_request("MESSAGE").await?;
    assert_eq!(got.call_id(), s.b_invite.call_id(), "on the 1-to-1 dialog");
    rig.bob
        .send(s.host, &rig.bob.reply(&got, 200, &s.b.local_tag, None));
    rig.alice.expect_response(200).await?;
    let back =
        s.b.request(&rig.bob, "MESSAGE", Some(("text/plain", "yes")));
    rig.bob.send(s.host, &back);
    let (got, _) = rig.alice.expect_request("MESSAGE").await?;
    rig.alice.send(
        rig.host_for_alice,
        &rig.alice.reply(&got, 200, &s.a.local_tag, None),
    );
    rig.bob.expect_response(200).await?;
    Ok(())
}

#[tokio::test]
async fn single_refer_escalates_to_a_conference_and_keeps_alices_dialog() -> R {
    let mut rig = rig_with(&policy(""), |_| {}).await;
    let mut s = rig.establish().await?;
    let r = refer(
        &mut s,
        &rig,
        "<sip:carol@example.com?Replaces=smuggled%3Bto-tag%3Dx&Require=evil>",
    );
    rig.alice.send(rig.host_for_alice, &r);
    let accepted = rig.alice.expect_response(202).await?;
    assert_eq!(accepted.cseq(), r.cseq());
    assert_eq!(take_notify(&mut rig, &s).await?.0, "SIP/2.0 100 Trying");
    give_fresh_offer(&mut rig, &s).await?;

    // The conference INVITE, as the core receives it.
    let (conf, _) = rig.bob.expect_request("INVITE").await?;
    assert_eq!(
        conf.request_uri(),
        Some("sip:conference-factory@example.com"),
        "step 2"
    );
    assert!(
        conf.header("From")
            .unwrap()
            .contains("sip:alice@example.com"),
        "step 1"
    );
    assert_ne!(conf.call_id(), s.b_invite.call_id(), "step 1: a new dialog");
    assert_eq!(conf.header("Require"), Some("recipient-list-invite"));
    assert!(
        conf.content_type()
            .unwrap()
            .starts_with("multipart/mixed;boundary="),
        "step 7"
    );
    let p = parts(&conf);
    assert_eq!(
        p[0].body,
        FRESH_OFFER.as_bytes(),
        "step 8: alice's fresh offer, a=path included"
    );
    let list = escalator_escalation::resource_list::parse(&p[1].body, 10)?;
    assert_eq!(
        list[0], "sip:carol@example.com",
        "steps 3-4, smuggled headers removed"
    );
    // Step 9: Replaces names bob's dialog as bob knows it.
    let expected =
        escalator_escalation::invite::peer_entry(&escalator_escalation::invite::PeerDialog {
            uri: "sip:bob@example.com".into(),
            call_id: s.b_invite.call_id().unwrap().into(),
            peer_tag: s.b.local_tag.clone(),
            our_tag: s.b_invite.from_tag().unwrap(),
        });
    assert_eq!(list[1], expected);

    // The focus answers; the host ACKs it and re-anchors alice with the answer.
    let focus = rig.bob.accept_dialog(&conf, s.host);
    rig.bob.send(
        s.host,
        &rig.bob.reply(
            &conf,
            200,
            &focus.local_tag,
            Some(("application/sdp", CONF_SDP)),
        ),
    );
    let (ack, _) = rig.bob.expect_request("ACK").await?;
    assert_eq!(ack.call_id(), conf.call_id());
    let (alice_ack, _) = rig.alice.expect_request("ACK").await?;
    assert_eq!(
        &alice_ack.body[..],
        CONF_SDP.as_bytes(),
        "alice's media now goes to the conference"
    );
    let (frag, state) = take_notify(&mut rig, &s).await?;
    assert_eq!(frag, "SIP/2.0 200 OK");
    assert!(state.starts_with("terminated"));

    // bob's client replaced its dialog: its BYE on the old one is absorbed.
    let bye = s.b.request(&rig.bob, "BYE", None);
    rig.bob.send(s.host, &bye);
    rig.bob.expect_response(200).await?;
    rig.alice.expect_silence(Duration::from_millis(300)).await?;

    // alice's dialog now leads to the conference.
    let m =
        s.a.request(&rig.alice, "MESSAGE", Some(("text/plain", "hi all")));
    rig.alice.send(rig.host_for_alice, &m);
    let (got, _) = rig.bob.expect_request("MESSAGE").await?;
    assert_eq!(got.call_id(), conf.call_id());
    rig.bob
        .send(s.host, &rig.bob.reply(&got, 200, &focus.local_tag, None));
    rig.alice.expect_response(200).await?;
    let bye = s.a.request(&rig.alice, "BYE", None);
    rig.alice.send(rig.host_for_alice, &bye);
    let (got, _) = rig.bob.expect_request("BYE").await?;
    assert_eq!(
        got.call_id(),
        conf.call_id(),
        "alice's BYE ends the conference leg"
    );
    rig.bob
        .send(s.host, &rig.bob.reply(&got, 200, &focus.local_tag, None));
    rig.alice.expect_response(200).await?;
    assert!(rig.wait_calls(0).await, "{}", rig.ladder());
    Ok(())
}

/// alice reads a readable MESSAGE from the host and accepts it.
async fn take_user_message(rig: &mut Rig, s: &Established) -> anyhow::Result<String> {
    let (m, _) = rig.alice.expect_request("MESSAGE").await?;
    rig.alice.send(
        rig.host_for_alice,
        &rig.alice.reply(&m, 200, &s.a.local_tag, None),
    );
    Ok(String::from_utf8_lossy(&m.body).into_owned())
}

/// alice REFERs carol: 202, NOTIFY 100, and the host's offerless re-INVITE,
/// which is returned unanswered.
async fn up_to_offer_request(rig: &mut Rig, s: &mut Established) -> anyhow::Result<SipMessage> {
    let r = refer(s, rig, "<sip:carol@example.com>");
    rig.alice.send(rig.host_for_alice, &r);
    rig.alice.expect_response(202).await?;
    take_notify(rig, s).await?;
    let (reinvite, _) = rig.alice.expect_request("INVITE").await?;
    Ok(reinvite)
}

/// Through the conference INVITE; returns it.
async fn up_to_conference_invite(rig: &mut Rig, s: &mut Established) -> anyhow::Result<SipMessage> {
    let r = refer(s, rig, "<sip:carol@example.com>");
    rig.alice.send(rig.host_for_alice, &r);
    rig.alice.expect_response(202).await?;
    take_notify(rig, s).await?;
    give_fresh_offer(rig, s).await?;
    let (conf, _) = rig.bob.expect_request("INVITE").await?;
    assert_eq!(
        conf.request_uri(),
        Some("sip:conference-factory@example.com")
    );
    Ok(conf)
}

/// After a failed conference: alice's fresh offer is answered with bob's
/// SDP, she is told why, and the 1-to-1 session works.
async fn rolled_back(rig: &mut Rig, s: &mut Established, status: &str) -> R {
    let (ack, _) = rig.alice.expect_request("ACK").await?;
    assert_eq!(&ack.body[..], SDP_ANSWER.as_bytes(), "media stays with bob");
    let (frag, state) = take_notify(rig, s).await?;
    assert!(frag.starts_with(&format!("SIP/2.0 {status}")), "{frag}");
    assert!(state.starts_with("terminated"));
    assert!(take_user_message(rig, s).await?.contains(status));
    still_one_to_one(rig, s).await
}

#[tokio::test]
async fn conference_refusal_leaves_the_one_to_one_session_intact() -> R {
    let mut rig = rig_with(&policy(""), |_| {}).await;
    let mut s = rig.establish().await?;
    let conf = up_to_conference_invite(&mut rig, &mut s).await?;
    rig.bob
        .send(s.host, &rig.bob.reply(&conf, 486, "focus", None));
    rig.bob.expect_request("ACK").await?;
    rolled_back(&mut rig, &mut s, "486").await
}

/// alice hangs up while the conference rings: her 200 to the offerless
/// re-INVITE is ACKed and her BYE answered; the 1-to-1's other leg gets a
/// BYE and the conference INVITE a CANCEL (it had answered 180); nothing
/// is left on the host.
#[tokio::test]
async fn alice_hanging_up_while_the_conference_rings_ends_every_leg() -> R {
    let mut rig = rig_with(&policy(""), |_| {}).await;
    let mut s = rig.establish().await?;
    let conf = up_to_conference_invite(&mut rig, &mut s).await?;
    rig.bob
        .send(s.host, &rig.bob.reply(&conf, 180, "focus", None));
    let bye = s.a.request(&rig.alice, "BYE", None);
    rig.alice.send(rig.host_for_alice, &bye);
    let (ack, _) = rig.alice.expect_request("ACK").await?;
    assert_eq!(ack.call_id(), Some(s.a.call_id.as_str()));
    rig.alice.expect_response(200).await?;
    // The core side: a BYE on the 1-to-1 and a CANCEL of the conference,
    // in either order.
    let mut seen = Vec::new();
    for _ in 0..2 {
        let (req, from) = rig.bob.recv().await?;
        let method = req.method().unwrap_or_default().to_string();
        rig.bob
            .send(from, &rig.bob.reply(&req, 200, &s.b.local_tag, None));
        if method == "CANCEL" {
            assert_eq!(req.call_id(), conf.call_id(), "the conference is cancelled");
            rig.bob
                .send(from, &rig.bob.reply(&conf, 487, "focus", None));
        } else {
            assert_eq!(req.call_id(), s.b_invite.call_id(), "the 1-to-1 ends");
        }
        seen.push(method);
    }
    seen.sort();
    assert_eq!(seen, ["BYE", "CANCEL"]);
    let (ack, _) = rig.bob.expect_request("ACK").await?;
    assert_eq!(ack.call_id(), conf.call_id(), "the 487 ACKed hop by hop");
    for _ in 0..100 {
        if rig.host.stats.calls() == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(rig.host.stats.calls(), 0, "no leg left");
    Ok(())
}

/// The ACK of a non-2xx final response: the INVITE's Via (same branch),
/// the response's To (RFC 3261 §17.1.1.3).
fn ack_of_failure(invite: &SipMessage, resp: &SipMessage) -> SipMessage {
    let mut ack = SipMessage::request("ACK", invite.request_uri().unwrap_or_default());
    for name in ["Via", "Max-Forwards", "From", "Call-ID"] {
        ack.push_header(name, invite.header(name).unwrap_or_default());
    }
    ack.push_header("To", resp.header("To").unwrap_or_default());
    let n = invite.cseq().map_or(0, |c| c.0);
    ack.push_header("CSeq", format!("{n} ACK"));
    ack.set_body(bytes::Bytes::new());
    ack
}

/// Glare on both sides during an escalation: alice's own re-INVITE crosses
/// the host's offerless one (the host answers hers 491, she answers the
/// host's 491, the host asks again after 0–2 s: alice made the Call-ID),
/// and bob's re-INVITE on the 1-to-1 while the conference is pending gets
/// 491 too. The escalation then completes.
#[tokio::test]
async fn glare_during_an_escalation_is_answered_491_and_retried() -> R {
    let mut rig = rig_with(&policy(""), |_| {}).await;
    let mut s = rig.establish().await?;
    let hosts = up_to_offer_request(&mut rig, &mut s).await?;
    let own =
        s.a.request(&rig.alice, "INVITE", Some(("application/sdp", FRESH_OFFER)));
    rig.alice.send(rig.host_for_alice, &own);
    let glare = rig.alice.expect_response(491).await?;
    rig.alice
        .send(rig.host_for_alice, &ack_of_failure(&own, &glare));
    rig.alice.send(
        rig.host_for_alice,
        &rig.alice.reply(&hosts, 491, &s.a.local_tag, None),
    );
    rig.alice.expect_request("ACK").await?;
    // Asked again within 2 s (plus the 5 s of the helper's wait).
    let again = give_fresh_offer(&mut rig, &s).await?;
    assert_ne!(again.header("CSeq"), hosts.header("CSeq"), "a new request");
    let (conf, _) = rig.bob.expect_request("INVITE").await?;
    assert_eq!(
        conf.request_uri(),
        Some("sip:conference-factory@example.com")
    );
    let bobs =
        s.b.request(&rig.bob, "INVITE", Some(("application/sdp", SDP_ANSWER)));
    rig.bob.send(s.host, &bobs);
    let refused = rig.bob.expect_response(491).await?;
    assert_eq!(refused.call_id(), s.b_invite.call_id());
    rig.bob.send(s.host, &ack_of_failure(&bobs, &refused));
    focus_answers(&mut rig, &s, &conf).await?;
    let (frag, _) = take_notify(&mut rig, &s).await?;
    assert!(frag.contains("200 OK"), "{frag}");
    Ok(())
}

/// A second add-user while the first is pending: one escalation per dialog,
/// so 500 with Retry-After (spec §4); the first one goes on.
#[tokio::test]
async fn a_second_trigger_while_one_is_pending_gets_500_with_retry_after() -> R {
    let mut rig = rig_with(&policy(""), |_| {}).await;
    let mut s = rig.establish().await?;
    let conf = up_to_conference_invite(&mut rig, &mut s).await?;
    let again = refer(&mut s, &rig, "<sip:dave@example.com>");
    rig.alice.send(rig.host_for_alice, &again);
    let refused = rig.alice.expect_response(500).await?;
    assert_eq!(refused.header("Retry-After"), Some("5"));
    rig.bob
        .send(s.host, &rig.bob.reply(&conf, 486, "focus", None));
    rig.bob.expect_request("ACK").await?;
    rolled_back(&mut rig, &mut s, "486").await
}

#[tokio::test]
async fn conference_timeout_leaves_the_one_to_one_session_intact() -> R {
    // T1 = 10 ms: Timer B fires after 640 ms.
    let mut rig = rig_with(&policy(""), |c| c.timers.t1_ms = 10).await;
    let mut s = rig.establish().await?;
    up_to_conference_invite(&mut rig, &mut s).await?;
    // The core never answers; it sees only retransmissions.
    while let Ok((m, _)) = rig.bob.recv_within(Duration::from_millis(900)).await {
        assert_eq!(m.method(), Some("INVITE"));
    }
    rolled_back(&mut rig, &mut s, "408").await
}

#[tokio::test]
async fn client_refusing_the_offer_request_leaves_the_session_intact() -> R {
    let mut rig = rig_with(&policy(""), |_| {}).await;
    let mut s = rig.establish().await?;
    let reinvite = up_to_offer_request(&mut rig, &mut s).await?;
    rig.alice.send(
        rig.host_for_alice,
        &rig.alice.reply(&reinvite, 488, &s.a.local_tag, None),
    );
    let (ack, _) = rig.alice.expect_request("ACK").await?;
    assert_eq!(
        ack.cseq().unwrap().0,
        reinvite.cseq().unwrap().0,
        "the host ACKs the 488 per hop"
    );
    let (frag, _) = take_notify(&mut rig, &s).await?;
    assert!(frag.starts_with("SIP/2.0 488"), "{frag}");
    assert!(take_user_message(&mut rig, &s).await?.contains("488"));
    still_one_to_one(&mut rig, &mut s).await
}

fn multi_refer(s: &mut Established, rig: &Rig, targets: &[&str]) -> SipMessage {
    let xml = escalator_escalation::resource_list::build(
        &targets.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
    );
    let mut r = s.a.request(
        &rig.alice,
        "REFER",
        Some(("application/resource-lists+xml", &xml)),
    );
    r.push_header("Refer-To", "<cid:targets@alice.example.com>");
    r.push_header("Require", "multiple-refer");
    r.push_header("Content-Disposition", "recipient-list");
    r.push_header("Content-ID", "<targets@alice.example.com>");
    r
}

#[tokio::test]
async fn multi_target_refer_lists_every_target_and_the_peer() -> R {
    let mut rig = rig_with(&policy(""), |_| {}).await;
    let mut s = rig.establish().await?;
    let r = multi_refer(
        &mut s,
        &rig,
        &["sip:carol@example.com", "sip:dave@example.net"],
    );
    rig.alice.send(rig.host_for_alice, &r);
    rig.alice.expect_response(202).await?;
    take_notify(&mut rig, &s).await?;
    give_fresh_offer(&mut rig, &s).await?;
    let (conf, _) = rig.bob.expect_request("INVITE").await?;
    let list = escalator_escalation::resource_list::parse(&parts(&conf)[1].body, 10)?;
    assert_eq!(
        &list[..2],
        &["sip:carol@example.com", "sip:dave@example.net"]
    );
    assert!(list[2].starts_with("sip:bob@example.com?Replaces="));
    Ok(())
}

#[tokio::test]
async fn group_too_large_is_refused_and_nothing_is_sent() -> R {
    let mut rig = rig_with(&policy(""), |_| {}).await;
    let mut s = rig.establish().await?;
    // 5 invitees + bob = 6 users on the list; the maximum is 5.
    let targets = [
        "sip:u1@example.com",
        "sip:u2@example.com",
        "sip:u3@example.com",
        "sip:u4@example.com",
        "sip:u5@example.com",
    ];
    let r = multi_refer(&mut s, &rig, &targets);
    rig.alice.send(rig.host_for_alice, &r);
    rig.alice.expect_response(202).await?;
    let (frag, state) = take_notify(&mut rig, &s).await?;
    assert_eq!(frag, "SIP/2.0 403 Group Too Large");
    assert!(state.starts_with("terminated"));
    assert!(take_user_message(&mut rig, &s)
        .await?
        .contains("maximum is 5"));
    rig.bob.expect_silence(Duration::from_millis(300)).await?;
    still_one_to_one(&mut rig, &mut s).await
}

/// alice's custom add-user request (an INFO listing carol) with the policy's
/// `[triggers.custom]` plus `extra`: answered 200, alice's fresh offer given;
/// returns the conference INVITE as the core got it.
async fn custom_request_up_to_conference(
    extra: &str,
) -> anyhow::Result<(Rig, Established, SipMessage)> {
    let custom = format!(
        "[triggers.custom]\nmethod = \"INFO\"\ncontent_type = \"application/vnd.example.add-user\"\nformat = \"lines\"\n{extra}"
    );
    let mut rig = rig_with(&policy(&custom), |_| {}).await;
    let mut s = rig.establish().await?;
    let info = s.a.request(
        &rig.alice,
        "INFO",
        Some((
            "application/vnd.example.add-user",
            "sip:carol@example.com\r\n",
        )),
    );
    rig.alice.send(rig.host_for_alice, &info);
    rig.alice.expect_response(200).await?;
    give_fresh_offer(&mut rig, &s).await?;
    let (conf, _) = rig.bob.expect_request("INVITE").await?;
    Ok((rig, s, conf))
}

/// The custom add-user request: answered 200 (no NOTIFY: it made no
/// subscription), the outcome told by a plain-text MESSAGE in alice's
/// dialog, worded by the policy's template (here the default).
#[tokio::test]
async fn custom_add_user_request_escalates_and_reports_by_message() -> R {
    let (mut rig, mut s, conf) = custom_request_up_to_conference("").await?;
    let list = escalator_escalation::resource_list::parse(&parts(&conf)[1].body, 10)?;
    assert_eq!(list[0], "sip:carol@example.com");
    focus_answers(&mut rig, &s, &conf).await?;
    assert_eq!(
        take_user_message(&mut rig, &s).await?,
        "Added to the chat: carol@example.com."
    );
    rig.alice.expect_silence(Duration::from_millis(300)).await?;
    // Other INFOs still pass through to the peer.
    let dtmf = s.a.request(
        &rig.alice,
        "INFO",
        Some(("application/dtmf-relay", "Signal=1\r\n")),
    );
    rig.alice.send(rig.host_for_alice, &dtmf);
    let (got, _) = rig.bob.expect_request("INFO").await?;
    assert_eq!(got.call_id(), conf.call_id(), "now toward the conference");
    Ok(())
}

/// A custom request that fails (the focus refuses): the 1-to-1 stays and
/// alice reads why, in the policy's own words.
#[tokio::test]
async fn a_failed_custom_request_reports_the_failure_by_message() -> R {
    let template = "failed_message = \"Sorry, {added} could not join ({reason}).\"\n";
    let (mut rig, mut s, conf) = custom_request_up_to_conference(template).await?;
    rig.bob
        .send(s.host, &rig.bob.reply(&conf, 486, "focus", None));
    rig.bob.expect_request("ACK").await?;
    let (ack, _) = rig.alice.expect_request("ACK").await?;
    assert_eq!(&ack.body[..], SDP_ANSWER.as_bytes(), "media stays with bob");
    let text = take_user_message(&mut rig, &s).await?;
    assert!(
        text.starts_with("Sorry, carol@example.com could not join (486 "),
        "{text}"
    );
    still_one_to_one(&mut rig, &mut s).await
}

#[tokio::test]
async fn refer_sub_false_gets_no_notify() -> R {
    let mut rig = rig_with(&policy(""), |_| {}).await;
    let mut s = rig.establish().await?;
    let mut r = refer(&mut s, &rig, "<sip:carol@example.com>");
    r.push_header("Refer-Sub", "false");
    r.push_header("Supported", "norefersub");
    rig.alice.send(rig.host_for_alice, &r);
    let accepted = rig.alice.expect_response(202).await?;
    assert_eq!(accepted.header("Refer-Sub"), Some("false"));
    give_fresh_offer(&mut rig, &s).await?;
    rig.bob.expect_request("INVITE").await?;
    Ok(())
}

async fn refer_passes_through(policy_text: &str) -> R {
    let mut rig = rig_with(policy_text, |_| {}).await;
    let mut s = rig.establish().await?;
    let r = refer(&mut s, &rig, "<sip:carol@example.com>");
    rig.alice.send(rig.host_for_alice, &r);
    let (got, _) = rig.bob.expect_request("REFER").await?;
    assert_eq!(
        got.header("Refer-To"),
        Some("<sip:carol@example.com>"),
        "untouched"
    );
    assert_eq!(got.call_id(), s.b_invite.call_id());
    rig.bob
        .send(s.host, &rig.bob.reply(&got, 202, &s.b.local_tag, None));
    rig.alice.expect_response(202).await?;
    rig.bob.expect_silence(Duration::from_millis(200)).await?;
    Ok(())
}

#[tokio::test]
async fn capable_client_refer_is_passed_through() -> R {
    refer_passes_through(&capable_policy()).await
}

#[tokio::test]
async fn client_outside_the_rollout_is_passed_through() -> R {
    refer_passes_through(&policy("[rollout]\npercent = 0\n")).await
}

#[tokio::test]
async fn shadow_mode_logs_the_invite_and_changes_nothing_on_the_wire() -> R {
    let (_guard, logs) = escalator_e2e::LogCapture::start();
    refer_passes_through(&policy("shadow = true")).await?;
    let text = logs.text();
    assert!(
        text.contains("escalate (rule old-test-clients"),
        "decision logged:\n{text}"
    );
    assert!(text.contains("shadow: call"), "{text}");
    assert!(
        text.contains("INVITE sip:conference-factory@example.com SIP/2.0"),
        "the full INVITE:\n{text}"
    );
    assert!(
        text.contains("Content-Disposition: recipient-list"),
        "{text}"
    );
    Ok(())
}

/// On a fresh call, the host takes alice's REFER over (202 from the host,
/// not the peer); the escalation is then ended (alice refuses the offer
/// request) and its traffic drained, so the next call starts clean.
async fn refer_is_escalated(rig: &mut Rig) -> R {
    let mut s = rig.establish().await?;
    let r = refer(&mut s, rig, "<sip:carol@example.com>");
    rig.alice.send(rig.host_for_alice, &r);
    let (m, _) = rig.alice.recv().await?;
    if m.status() != Some(202) {
        return Err(anyhow::anyhow!("unexpected {}", m.summary()));
    }
    while let Ok((m, _)) = rig.alice.recv_within(Duration::from_millis(300)).await {
        match m.method() {
            Some("INVITE") => rig.alice.send(
                rig.host_for_alice,
                &rig.alice.reply(&m, 488, &s.a.local_tag, None),
            ),
            Some("ACK") | None => {}
            Some(_) => rig.alice.send(
                rig.host_for_alice,
                &rig.alice.reply(&m, 200, &s.a.local_tag, None),
            ),
        }
    }
    rig.bob.expect_silence(Duration::from_millis(100)).await?;
    Ok(())
}

/// The REFER goes to the peer untouched.
async fn refer_reaches_the_peer(rig: &mut Rig) -> R {
    let mut s = rig.establish().await?;
    let r = refer(&mut s, rig, "<sip:carol@example.com>");
    rig.alice.send(rig.host_for_alice, &r);
    let (got, _) = rig.bob.expect_request("REFER").await?;
    rig.bob
        .send(s.host, &rig.bob.reply(&got, 202, &s.b.local_tag, None));
    rig.alice.expect_response(202).await?;
    Ok(())
}

#[tokio::test]
async fn policy_file_changes_are_picked_up_and_a_broken_file_is_refused() -> R {
    let capable = policy("").replace("verdict = \"legacy\"", "verdict = \"capable\"");
    let (mut rig, path) = rig_with_path(&capable, |_| {}).await;
    refer_reaches_the_peer(&mut rig).await?;
    // mtime granularity and the once-a-second check: wait a little over 1 s.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    std::fs::write(&path, policy(""))?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    refer_is_escalated(&mut rig).await?; // legacy under the new policy
    std::fs::write(&path, "[rollout]\npercent = \"lots\"\n")?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    refer_is_escalated(&mut rig).await?; // a broken file keeps the running policy
    Ok(())
}

#[tokio::test]
async fn refer_outside_a_dialog_is_refused() -> R {
    let mut rig = rig_with(&policy(""), |_| {}).await;
    let mut d = rig
        .alice
        .new_dialog("sip:bob@example.com", rig.host_for_alice);
    let mut r = d.request(&rig.alice, "REFER", None);
    r.push_header("Refer-To", "<sip:carol@example.com>");
    rig.alice.send(rig.host_for_alice, &r);
    let resp = rig.alice.expect_response(403).await?;
    assert!(resp.header("Warning").unwrap().contains("inside a session"));
    rig.bob.expect_silence(Duration::from_millis(200)).await?;
    Ok(())
}

#[tokio::test]
async fn malformed_refer_from_a_legacy_client_gets_a_clear_error() -> R {
    let mut rig = rig_with(&policy(""), |_| {}).await;
    let mut s = rig.establish().await?;
    let r = refer(&mut s, &rig, "<tel:+33123456>");
    rig.alice.send(rig.host_for_alice, &r);
    let resp = rig.alice.expect_response(416).await?;
    assert!(resp
        .header("Warning")
        .unwrap()
        .contains("unsupported URI scheme"));
    still_one_to_one(&mut rig, &mut s).await
}

#[tokio::test]
async fn reuse_offer_mode_sends_the_last_offer_then_reanchors_alice() -> R {
    let mut rig = rig_with(
        &policy("").replace(
            "max_group_size = 5",
            "max_group_size = 5\nmedia = \"reuse-offer\"",
        ),
        |_| {},
    )
    .await;
    let mut s = rig.establish().await?;
    let r = refer(&mut s, &rig, "<sip:carol@example.com>");
    rig.alice.send(rig.host_for_alice, &r);
    rig.alice.expect_response(202).await?;
    take_notify(&mut rig, &s).await?;
    // No re-INVITE first: the conference gets alice's offer from the 1-to-1 session.
    let (conf, _) = rig.bob.expect_request("INVITE").await?;
    assert_eq!(parts(&conf)[0].body, SDP_OFFER.as_bytes());
    let focus = rig.bob.accept_dialog(&conf, s.host);
    rig.bob.send(
        s.host,
        &rig.bob.reply(
            &conf,
            200,
            &focus.local_tag,
            Some(("application/sdp", CONF_SDP)),
        ),
    );
    rig.bob.expect_request("ACK").await?;
    // alice is re-INVITEd with the conference's SDP, answers, is ACKed.
    let (reinvite, _) = rig.alice.expect_request("INVITE").await?;
    assert_eq!(&reinvite.body[..], CONF_SDP.as_bytes());
    rig.alice.send(
        rig.host_for_alice,
        &rig.alice.reply(
            &reinvite,
            200,
            &s.a.local_tag,
            Some(("application/sdp", FRESH_OFFER)),
        ),
    );
    rig.alice.expect_request("ACK").await?;
    let (frag, _) = take_notify(&mut rig, &s).await?;
    assert_eq!(frag, "SIP/2.0 200 OK");
    message_reaches_the_conference(&mut rig, &mut s, &conf).await
}

#[tokio::test]
async fn a_failure_is_logged_with_its_reason() -> R {
    let (_guard, logs) = escalator_e2e::LogCapture::start();
    let mut rig = rig_with(&policy(""), |_| {}).await;
    let mut s = rig.establish().await?;
    let conf = up_to_conference_invite(&mut rig, &mut s).await?;
    rig.bob
        .send(s.host, &rig.bob.reply(&conf, 503, "focus", None));
    rig.bob.expect_request("ACK").await?;
    rolled_back(&mut rig, &mut s, "503").await?;
    let text = logs.text();
    assert!(
        text.contains("escalation failed (conference-refused: 503"),
        "log line with the reason:\n{text}"
    );
    Ok(())
}

/// Wire order: host → alice re-INVITE (no offer); alice → host 200 (offer),
/// retransmitted while the conference is pending, and again after the
/// host's ACK (the ACK crossed it, RFC 3261 §13.3.1.4). Each late 200 gets
/// the same ACK again; nothing else happens: one conference INVITE, one
/// final NOTIFY, and the session goes on in the conference.
#[tokio::test]
async fn a_200_to_the_offer_request_retransmitted_after_the_ack_gets_the_ack_again() -> R {
    let mut rig = rig_with(&policy(""), |_| {}).await;
    let mut s = rig.establish().await?;
    let reinvite = up_to_offer_request(&mut rig, &mut s).await?;
    let ok = rig.alice.reply(
        &reinvite,
        200,
        &s.a.local_tag,
        Some(("application/sdp", FRESH_OFFER)),
    );
    rig.alice.send(rig.host_for_alice, &ok);
    let (conf, _) = rig.bob.expect_request("INVITE").await?;
    // Retransmitted before the ACK: absorbed, no second conference.
    rig.alice.send(rig.host_for_alice, &ok);
    rig.bob.expect_silence(Duration::from_millis(200)).await?;
    rig.alice.expect_silence(Duration::from_millis(100)).await?;

    let ack = focus_answers(&mut rig, &s, &conf).await?;
    let (frag, _) = take_notify(&mut rig, &s).await?;
    assert_eq!(frag, "SIP/2.0 200 OK");

    // Retransmitted after the ACK: the same ACK again (alice now shows
    // retransmitted requests too).
    rig.alice.absorb_retransmissions = false;
    for _ in 0..2 {
        rig.alice.send(rig.host_for_alice, &ok);
        let (again, _) = rig.alice.expect_request("ACK").await?;
        assert_eq!(
            again.to_bytes(),
            ack.to_bytes(),
            "the same ACK, byte for byte"
        );
    }
    rig.bob.expect_silence(Duration::from_millis(200)).await?;

    // The session is in the conference.
    message_reaches_the_conference(&mut rig, &mut s, &conf).await
}

/// Wire order: alice → host REFER (a capable client: relayed to bob);
/// bob → host NOTIFY *before* its 202 (RFC 6665 §4.1.2.4 lets a NOTIFY
/// overtake the response). The host relays both; alice gets the NOTIFY,
/// her 200 reaches bob, and the 202 follows.
#[tokio::test]
async fn a_notify_before_the_202_of_a_relayed_refer_reaches_alice() -> R {
    let mut rig = rig_with(&capable_policy(), |_| {}).await;
    let mut s = rig.establish().await?;
    let r = refer(&mut s, &rig, "<sip:carol@example.com>");
    rig.alice.send(rig.host_for_alice, &r);
    let (got, _) = rig.bob.expect_request("REFER").await?;
    let mut notify = s.b.request(
        &rig.bob,
        "NOTIFY",
        Some(("message/sipfrag", "SIP/2.0 100 Trying")),
    );
    notify.push_header(
        "Event",
        format!("refer;id={}", got.cseq().map_or(0, |c| c.0)),
    );
    notify.push_header("Subscription-State", "active;expires=60");
    rig.bob.send(s.host, &notify);
    rig.bob
        .send(s.host, &rig.bob.reply(&got, 202, &s.b.local_tag, None));

    let (n, _) = rig.alice.expect_request("NOTIFY").await?;
    assert_eq!(&n.body[..], b"SIP/2.0 100 Trying");
    rig.alice.send(
        rig.host_for_alice,
        &rig.alice.reply(&n, 200, &s.a.local_tag, None),
    );
    let accepted = rig.alice.expect_response(202).await?;
    assert_eq!(accepted.cseq(), r.cseq());
    let ok = rig.bob.expect_response(200).await?;
    assert_eq!(ok.cseq().map(|c| c.1), Some("NOTIFY".to_string()));
    Ok(())
}
