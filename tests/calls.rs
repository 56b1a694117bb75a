//! Calls through the host on loopback, checked on the wire at both ends.

use escalator_e2e::{Rig, SDP_ANSWER, SDP_OFFER};
use escalator_host::sip::SipMessage;
use escalator_host::transport::Proto;
use escalator_testkit::ua::UaDialog;
use std::net::SocketAddr;
use std::time::Duration;

type R = anyhow::Result<()>;

/// alice calls bob; returns both dialogs and the host address bob talks to.
async fn establish(rig: &mut Rig) -> anyhow::Result<(UaDialog, UaDialog, SocketAddr, SipMessage)> {
    let escalator_e2e::Offered {
        alice: mut a,
        at_bob: inv,
        host,
        ..
    } = rig.offer_call(Some(SDP_OFFER)).await?;
    rig.alice.expect_response(100).await?;
    let b = rig.bob.accept_dialog(&inv, host);
    rig.bob
        .send(host, &rig.bob.reply(&inv, 180, &b.local_tag, None));
    rig.alice.expect_response(180).await?;
    let ok = rig.bob.reply(
        &inv,
        200,
        &b.local_tag,
        Some(("application/sdp", SDP_ANSWER)),
    );
    rig.bob.send(host, &ok);
    let ok = rig.alice.expect_response(200).await?;
    a.update_from_response(&ok);
    rig.alice.send(rig.host_for_alice, &a.ack(&rig.alice));
    rig.bob.expect_request("ACK").await?;
    Ok((a, b, host, inv))
}

#[tokio::test]
async fn basic_call_is_rewritten_per_leg_and_passes_the_rest_through() -> R {
    let mut rig = Rig::new(Proto::Udp, Proto::Udp).await;
    let mut a = rig
        .alice
        .new_dialog("sip:bob@example.com", rig.host_for_alice);
    let mut invite = a.request(&rig.alice, "INVITE", Some(("application/sdp", SDP_OFFER)));
    invite.push_header("X-Operator-Trace", "keep me, please");
    invite.set_header("Max-Forwards", "10");
    rig.alice.send(rig.host_for_alice, &invite);

    let trying = rig.alice.expect_response(100).await?;
    assert_eq!(trying.to_tag(), None);
    let (inv, host) = rig.bob.expect_request("INVITE").await?;
    // Leg B is a new dialog: own Call-ID, From tag, Via, Contact, CSeq space.
    assert_ne!(inv.call_id(), invite.call_id());
    assert_ne!(inv.from_tag(), invite.from_tag());
    assert_eq!(inv.header_values("Via").len(), 1, "only the host's Via");
    assert!(inv
        .top_via()
        .unwrap()
        .branch()
        .unwrap()
        .starts_with("z9hG4bK"));
    assert!(
        !inv.header("Contact").unwrap().contains("alice@"),
        "host's Contact"
    );
    assert_eq!(inv.header("Max-Forwards"), Some("9"));
    assert_eq!(inv.header("X-Operator-Trace"), Some("keep me, please"));
    assert_eq!(inv.request_uri(), Some("sip:bob@example.com"));
    assert_eq!(&inv.body[..], SDP_OFFER.as_bytes(), "body byte for byte");
    assert_eq!(
        inv.header("Content-Length"),
        Some(SDP_OFFER.len().to_string().as_str())
    );
    // The identity is kept: same From and To addresses.
    assert!(inv
        .header("From")
        .unwrap()
        .contains("sip:alice@example.com"));
    assert!(inv.header("To").unwrap().contains("sip:bob@example.com"));

    let mut b = rig.bob.accept_dialog(&inv, host);
    rig.bob
        .send(host, &rig.bob.reply(&inv, 180, &b.local_tag, None));
    let ringing = rig.alice.expect_response(180).await?;
    let a_tag = ringing.to_tag().expect("180 has a To tag");
    rig.bob.send(
        host,
        &rig.bob.reply(
            &inv,
            200,
            &b.local_tag,
            Some(("application/sdp", SDP_ANSWER)),
        ),
    );
    let ok = rig.alice.expect_response(200).await?;
    assert_eq!(
        ok.to_tag().as_deref(),
        Some(a_tag.as_str()),
        "same tag on 1xx and 2xx"
    );
    assert_eq!(ok.call_id(), invite.call_id());
    assert_eq!(ok.header_values("Via"), invite.header_values("Via"));
    assert_eq!(&ok.body[..], SDP_ANSWER.as_bytes());
    assert!(
        !ok.header("Contact").unwrap().contains("bob@"),
        "host's Contact toward alice"
    );
    a.update_from_response(&ok);
    rig.alice.send(rig.host_for_alice, &a.ack(&rig.alice));
    let (ack, _) = rig.bob.expect_request("ACK").await?;
    assert_eq!(ack.call_id(), inv.call_id());
    assert_eq!(ack.cseq(), Some((1, "ACK".into())));
    assert_eq!(ack.to_tag().as_deref(), Some(b.local_tag.as_str()));
    assert!(rig.wait_calls(1).await);

    // BYE from alice ends both legs.
    let bye = a.request(&rig.alice, "BYE", None);
    rig.alice.send(rig.host_for_alice, &bye);
    let (bye_b, _) = rig.bob.expect_request("BYE").await?;
    assert_eq!(bye_b.call_id(), inv.call_id());
    assert_eq!(
        bye_b.cseq(),
        Some((2, "BYE".into())),
        "leg B's own CSeq space"
    );
    rig.bob
        .send(host, &rig.bob.reply(&bye_b, 200, &b.local_tag, None));
    let ok = rig.alice.expect_response(200).await?;
    assert_eq!(ok.cseq(), Some((2, "BYE".into())));
    assert!(
        rig.wait_calls(0).await,
        "call released after BYE:\n{}",
        rig.ladder()
    );
    // A request in the ended dialog is refused.
    let late = b.request(&rig.bob, "INFO", None);
    rig.bob.send(host, &late);
    rig.bob.expect_response(481).await?;
    Ok(())
}

#[tokio::test]
async fn cancel_before_answer_reaches_both_sides() -> R {
    let mut rig = Rig::new(Proto::Udp, Proto::Udp).await;
    let escalator_e2e::Offered {
        invite,
        at_bob: inv,
        host,
        ..
    } = rig.offer_call(Some(SDP_OFFER)).await?;
    let b = rig.bob.accept_dialog(&inv, host);
    rig.bob
        .send(host, &rig.bob.reply(&inv, 180, &b.local_tag, None));
    rig.alice.expect_response(180).await?;

    // CANCEL: same branch, Call-ID, From, To and CSeq number as the INVITE.
    let mut cancel = SipMessage::request("CANCEL", invite.request_uri().unwrap());
    for name in ["Via", "From", "To", "Call-ID"] {
        cancel.push_header(name, invite.header(name).unwrap());
    }
    cancel.push_header("CSeq", "1 CANCEL");
    cancel.set_body(bytes::Bytes::new());
    rig.alice.send(rig.host_for_alice, &cancel);
    let mut got = [rig.alice.recv().await?.0, rig.alice.recv().await?.0];
    got.sort_by_key(|m| m.status());
    assert_eq!(got[0].status(), Some(200));
    assert_eq!(got[0].cseq().unwrap().1, "CANCEL");
    assert_eq!(got[1].status(), Some(487));
    assert_eq!(got[1].cseq().unwrap().1, "INVITE");

    let (c, _) = rig.bob.expect_request("CANCEL").await?;
    assert_eq!(
        c.top_via().unwrap().branch(),
        inv.top_via().unwrap().branch()
    );
    assert_eq!(c.cseq(), Some((1, "CANCEL".into())));
    rig.bob
        .send(host, &rig.bob.reply(&c, 200, &b.local_tag, None));
    rig.bob
        .send(host, &rig.bob.reply(&inv, 487, &b.local_tag, None));
    let (ack, _) = rig.bob.expect_request("ACK").await?;
    assert_eq!(
        ack.top_via().unwrap().branch(),
        inv.top_via().unwrap().branch(),
        "hop ACK"
    );
    assert!(rig.wait_calls(0).await);
    Ok(())
}

#[tokio::test]
async fn re_invite_in_dialog_both_directions() -> R {
    let mut rig = Rig::new(Proto::Udp, Proto::Udp).await;
    let (mut a, mut b, host, inv) = establish(&mut rig).await?;
    let new_offer = SDP_OFFER.replace("7654", "7700");

    let reinvite = a.request(&rig.alice, "INVITE", Some(("application/sdp", &new_offer)));
    rig.alice.send(rig.host_for_alice, &reinvite);
    let (ri, _) = rig.bob.expect_request("INVITE").await?;
    assert_eq!(ri.call_id(), inv.call_id(), "same leg-B dialog");
    assert_eq!(ri.to_tag().as_deref(), Some(b.local_tag.as_str()));
    assert_eq!(ri.cseq(), Some((2, "INVITE".into())));
    assert_eq!(&ri.body[..], new_offer.as_bytes());
    rig.bob.send(
        host,
        &rig.bob.reply(
            &ri,
            200,
            &b.local_tag,
            Some(("application/sdp", SDP_ANSWER)),
        ),
    );
    rig.alice.expect_response(200).await?;
    rig.alice.send(rig.host_for_alice, &a.ack(&rig.alice));
    let (ack, _) = rig.bob.expect_request("ACK").await?;
    assert_eq!(ack.cseq(), Some((2, "ACK".into())));

    // Now bob re-INVITEs (e.g. a session refresh) toward alice.
    let from_bob = b.request(&rig.bob, "INVITE", Some(("application/sdp", SDP_ANSWER)));
    rig.bob.send(host, &from_bob);
    let (ri, _) = rig.alice.expect_request("INVITE").await?;
    assert_eq!(ri.call_id(), Some(a.call_id.as_str()));
    assert_eq!(ri.from_tag(), a.remote_tag, "alice sees the host's tag");
    rig.alice.send(
        rig.host_for_alice,
        &rig.alice
            .reply(&ri, 200, &a.local_tag, Some(("application/sdp", SDP_OFFER))),
    );
    rig.bob.expect_response(200).await?;
    rig.bob.send(host, &b.ack(&rig.bob));
    let (ack, _) = rig.alice.expect_request("ACK").await?;
    assert_eq!(ack.cseq().unwrap().1, "ACK");
    assert_eq!(ack.cseq().unwrap().0, ri.cseq().unwrap().0);
    assert!(rig.wait_calls(1).await);
    Ok(())
}

#[tokio::test]
async fn busy_here_from_the_far_side_is_relayed_and_acked_per_hop() -> R {
    let mut rig = Rig::new(Proto::Udp, Proto::Udp).await;
    let escalator_e2e::Offered {
        invite,
        at_bob: inv,
        host,
        ..
    } = rig.offer_call(Some(SDP_OFFER)).await?;
    let mut busy = rig.bob.reply(&inv, 486, "bobtag", None);
    busy.push_header("Warning", "399 bob \"in a meeting\"");
    rig.bob.send(host, &busy);
    let (ack, _) = rig.bob.expect_request("ACK").await?;
    assert_eq!(
        ack.top_via().unwrap().branch(),
        inv.top_via().unwrap().branch()
    );
    assert_eq!(ack.to_tag().as_deref(), Some("bobtag"));
    let resp = rig.alice.expect_response(486).await?;
    assert_eq!(resp.header("Warning"), Some("399 bob \"in a meeting\""));
    assert!(resp.to_tag().is_some());
    // alice's ACK ends her transaction; it must not be relayed to bob.
    let mut alice_ack = SipMessage::request("ACK", invite.request_uri().unwrap());
    alice_ack.push_header("Via", invite.header("Via").unwrap());
    alice_ack.push_header("From", invite.header("From").unwrap());
    alice_ack.push_header("To", resp.header("To").unwrap());
    alice_ack.push_header("Call-ID", invite.call_id().unwrap());
    alice_ack.push_header("CSeq", "1 ACK");
    alice_ack.set_body(bytes::Bytes::new());
    rig.alice.send(rig.host_for_alice, &alice_ack);
    rig.bob.expect_silence(Duration::from_millis(300)).await?;
    assert!(rig.wait_calls(0).await);
    Ok(())
}

#[tokio::test]
async fn udp_retransmission_of_invite_reaches_the_far_side_once() -> R {
    let mut rig = Rig::new(Proto::Udp, Proto::Udp).await;
    let mut a = rig
        .alice
        .new_dialog("sip:bob@example.com", rig.host_for_alice);
    let invite = a.request(&rig.alice, "INVITE", Some(("application/sdp", SDP_OFFER)));
    rig.alice.send(rig.host_for_alice, &invite);
    rig.alice.expect_response(100).await?;
    rig.bob.expect_request("INVITE").await?;
    rig.alice.send(rig.host_for_alice, &invite);
    rig.alice.send(rig.host_for_alice, &invite);
    // Each retransmission gets the last provisional (100) again, nothing more.
    rig.alice.expect_response(100).await?;
    rig.alice.expect_response(100).await?;
    rig.bob.expect_silence(Duration::from_millis(400)).await?;
    assert!(rig.wait_calls(1).await);
    Ok(())
}

async fn call_and_hang_up(rig: &mut Rig) -> R {
    let (mut a, b, host, _) = establish(rig).await?;
    let msg = a.request(
        &rig.alice,
        "MESSAGE",
        Some(("text/plain", "over two transports")),
    );
    rig.alice.send(rig.host_for_alice, &msg);
    let (m, _) = rig.bob.expect_request("MESSAGE").await?;
    assert_eq!(&m.body[..], b"over two transports");
    rig.bob
        .send(host, &rig.bob.reply(&m, 200, &b.local_tag, None));
    rig.alice.expect_response(200).await?;
    let bye = a.request(&rig.alice, "BYE", None);
    rig.alice.send(rig.host_for_alice, &bye);
    let (bye_b, _) = rig.bob.expect_request("BYE").await?;
    rig.bob
        .send(host, &rig.bob.reply(&bye_b, 200, &b.local_tag, None));
    rig.alice.expect_response(200).await?;
    assert!(rig.wait_calls(0).await);
    Ok(())
}

#[tokio::test]
async fn tcp_client_side_and_udp_core_side() -> R {
    let mut rig = Rig::new(Proto::Tcp, Proto::Udp).await;
    call_and_hang_up(&mut rig).await
}

#[tokio::test]
async fn udp_client_side_and_tcp_core_side() -> R {
    let mut rig = Rig::new(Proto::Udp, Proto::Tcp).await;
    call_and_hang_up(&mut rig).await?;
    let (inv_via_tcp, _) = {
        let mut a = rig
            .alice
            .new_dialog("sip:bob@example.com", rig.host_for_alice);
        let i = a.request(&rig.alice, "INVITE", None);
        rig.alice.send(rig.host_for_alice, &i);
        rig.bob.expect_request("INVITE").await?
    };
    assert_eq!(inv_via_tcp.top_via().unwrap().transport, "TCP");
    assert!(inv_via_tcp
        .header("Contact")
        .unwrap()
        .contains("transport=tcp"));
    Ok(())
}

#[tokio::test]
async fn ipv6_loopback_call() -> R {
    let v6: SocketAddr = "[::1]:0".parse()?;
    let mut rig = Rig::with(Proto::Udp, Proto::Tcp, v6, |_| {}).await;
    call_and_hang_up(&mut rig).await
}

#[tokio::test]
async fn core_initiated_call_is_routed_to_the_request_uri() -> R {
    // bob (the core) calls alice at her contact address.
    let mut rig = Rig::new(Proto::Udp, Proto::Udp).await;
    let host = rig.host.udp_addr().unwrap();
    let alice_uri = format!("sip:alice@{}", rig.alice.addr());
    let mut b = rig.bob.new_dialog(&alice_uri, host);
    let inv = b.request(&rig.bob, "INVITE", Some(("application/sdp", SDP_OFFER)));
    rig.bob.send(host, &inv);
    let (got, _) = rig.alice.expect_request("INVITE").await?;
    assert_eq!(got.request_uri(), Some(alice_uri.as_str()));
    rig.alice.send(host, &rig.alice.reply(&got, 603, "t", None));
    rig.bob.expect_response(603).await?;
    Ok(())
}

#[tokio::test]
async fn refer_notify_and_update_are_relayed_in_dialog() -> R {
    let mut rig = Rig::new(Proto::Udp, Proto::Tcp).await;
    let (mut a, mut b, host, _) = establish(&mut rig).await?;

    let mut refer = a.request(&rig.alice, "REFER", None);
    refer.push_header("Refer-To", "<sip:carol@example.com>");
    refer.push_header("Referred-By", "<sip:alice@example.com>");
    rig.alice.send(rig.host_for_alice, &refer);
    let (r, _) = rig.bob.expect_request("REFER").await?;
    assert_eq!(r.header("Refer-To"), Some("<sip:carol@example.com>"));
    assert_eq!(r.header("Referred-By"), Some("<sip:alice@example.com>"));
    assert!(
        !r.header("Contact").unwrap().contains("alice@"),
        "host's Contact"
    );
    rig.bob
        .send(host, &rig.bob.reply(&r, 202, &b.local_tag, None));
    let accepted = rig.alice.expect_response(202).await?;
    assert_eq!(accepted.cseq(), refer.cseq());

    let mut notify = b.request(
        &rig.bob,
        "NOTIFY",
        Some(("message/sipfrag;version=2.0", "SIP/2.0 200 OK\r\n")),
    );
    notify.push_header("Event", "refer");
    notify.push_header("Subscription-State", "terminated;reason=noresource");
    rig.bob.send(host, &notify);
    let (n, _) = rig.alice.expect_request("NOTIFY").await?;
    // bob's NOTIFY named no id (his only subscription); alice gets the id
    // of her own REFER, its CSeq on her side (RFC 3515 §2.4.6).
    let alice_refer = refer.cseq().map_or(0, |c| c.0);
    assert_eq!(
        n.header("Event"),
        Some(format!("refer;id={alice_refer}").as_str())
    );
    assert_eq!(
        n.header("Subscription-State"),
        Some("terminated;reason=noresource")
    );
    assert_eq!(n.content_type(), Some("message/sipfrag;version=2.0"));
    assert_eq!(&n.body[..], b"SIP/2.0 200 OK\r\n");
    rig.alice.send(
        rig.host_for_alice,
        &rig.alice.reply(&n, 200, &a.local_tag, None),
    );
    rig.bob.expect_response(200).await?;

    let update = a.request(&rig.alice, "UPDATE", Some(("application/sdp", SDP_OFFER)));
    rig.alice.send(rig.host_for_alice, &update);
    let (u, _) = rig.bob.expect_request("UPDATE").await?;
    assert_eq!(&u.body[..], SDP_OFFER.as_bytes());
    rig.bob.send(
        host,
        &rig.bob
            .reply(&u, 200, &b.local_tag, Some(("application/sdp", SDP_ANSWER))),
    );
    let ok = rig.alice.expect_response(200).await?;
    assert_eq!(&ok.body[..], SDP_ANSWER.as_bytes());
    assert!(rig.wait_calls(1).await, "the call is still up");
    Ok(())
}

#[tokio::test]
async fn calls_spread_over_the_shards_and_each_one_completes() -> R {
    let mut rig = Rig::new(Proto::Udp, Proto::Udp).await;
    let mut calls = Vec::new();
    for _ in 0..40 {
        calls.push(rig.establish().await?);
    }
    assert!(rig.wait_calls(40).await);
    let per_shard = rig.host.stats.calls_per_shard();
    assert_eq!(per_shard.len(), 3, "the rig runs 3 shards");
    assert!(per_shard.iter().all(|n| *n > 0), "{per_shard:?}");
    // Leg B's Call-ID names the shard that holds the call.
    let mut marked = vec![0; 3];
    for c in &calls {
        let call_id = c.b_invite.call_id().unwrap_or_default();
        let shard: usize = call_id
            .strip_suffix("@escalator")
            .and_then(|s| s.rsplit_once("-s"))
            .and_then(|(_, n)| n.parse().ok())
            .expect("leg B Call-ID carries its shard");
        marked[shard] += 1;
    }
    assert_eq!(marked, per_shard);
    for c in &mut calls {
        let bye = c.a.request(&rig.alice, "BYE", None);
        rig.alice.send(rig.host_for_alice, &bye);
        let (bye_b, _) = rig.bob.expect_request("BYE").await?;
        assert_eq!(bye_b.call_id(), c.b_invite.call_id());
        rig.bob
            .send(c.host, &rig.bob.reply(&bye_b, 200, &c.b.local_tag, None));
        rig.alice.expect_response(200).await?;
    }
    assert!(rig.wait_calls(0).await);
    Ok(())
}
