//! Races of order through the host over UDP: a peer sends messages back to
//! back that must be handled in the order sent, and the far end (or the
//! sender, from the host's answers) sees whether the host's core did. Each
//! test names its wire order. The transport-level twin of these tests is
//! `host/tests/udp_order.rs`.

use bytes::Bytes;
use escalator_e2e::{Rig, SDP_ANSWER, SDP_OFFER};
use escalator_host::sip::SipMessage;
use escalator_host::transport::Proto;
use escalator_testkit::ua::TestUa;
use std::collections::HashMap;

type R = anyhow::Result<()>;

/// Messages alice sends back to back before she reads anything.
const BURST: usize = 25;

/// Bodies `1..=n` of `ua`'s next `n` requests of `method`, answering each
/// 200 as it arrives; fails on anything else.
async fn read_in_order(
    ua: &mut TestUa,
    method: &str,
    n: usize,
    tag: &str,
) -> anyhow::Result<Vec<usize>> {
    let mut bodies = Vec::with_capacity(n);
    while bodies.len() < n {
        let (req, from) = ua.expect_request(method).await?;
        ua.send(from, &ua.reply(&req, 200, tag, None));
        bodies.push(std::str::from_utf8(&req.body)?.trim().parse()?);
    }
    Ok(bodies)
}

/// `n` final responses to what `ua` sent, by status (100 Trying skipped).
async fn count_finals(ua: &mut TestUa, n: usize) -> anyhow::Result<HashMap<u16, usize>> {
    let mut by_status = HashMap::new();
    let mut seen = 0;
    while seen < n {
        let (m, _) = ua.recv().await?;
        match m.status() {
            Some(s) if s >= 200 => {
                *by_status.entry(s).or_insert(0) += 1;
                seen += 1;
            }
            Some(_) => {}
            None => anyhow::bail!("unexpected request {}", m.summary()),
        }
    }
    Ok(by_status)
}

/// Wire order: alice → host MESSAGE 1, 2, … N in one dialog, in bursts.
/// bob must receive 1..N in that order, and alice gets 200 for each (a
/// MESSAGE handled after a later one would get 500 CSeq Out of Order).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_of_one_dialog_leave_in_the_order_they_came() -> R {
    const N: usize = 500;
    let mut rig = Rig::new(Proto::Udp, Proto::Udp).await;
    let mut call = rig.establish().await?;
    let sent: Vec<usize> = (1..=N).collect();
    let mut received = Vec::new();
    let mut finals = HashMap::new();
    for burst in sent.chunks(BURST) {
        for n in burst {
            let mut m = call
                .a
                .request(&rig.alice, "MESSAGE", Some(("text/plain", "")));
            m.set_body(Bytes::from(n.to_string()));
            rig.alice.send(rig.host_for_alice, &m);
        }
        received
            .extend(read_in_order(&mut rig.bob, "MESSAGE", burst.len(), &call.b.local_tag).await?);
        for (s, c) in count_finals(&mut rig.alice, burst.len()).await? {
            *finals.entry(s).or_insert(0) += c;
        }
    }
    assert_eq!(received, sent, "bob received the MESSAGEs out of order");
    assert_eq!(finals, HashMap::from([(200, N)]), "alice's answers");
    Ok(())
}

/// Wire order: bob → host NOTIFY (sipfrag 100) then NOTIFY (sipfrag 200) of
/// one subscription (alice's REFER), pair after pair. alice must receive
/// them as sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_pairs_from_the_core_reach_the_client_in_order() -> R {
    const PAIRS: usize = 250;
    let mut rig = Rig::new(Proto::Udp, Proto::Udp).await;
    let mut call = rig.establish().await?;
    // The subscription the NOTIFYs belong to: alice's REFER, relayed to bob
    // (a NOTIFY for no subscription the host relayed is answered 481).
    let mut refer = call.a.request(&rig.alice, "REFER", None);
    refer.push_header("Refer-To", "<sip:carol@example.com>");
    rig.alice.send(rig.host_for_alice, &refer);
    let (at_bob, from) = rig.bob.expect_request("REFER").await?;
    rig.bob
        .send(from, &rig.bob.reply(&at_bob, 202, &call.b.local_tag, None));
    rig.alice.expect_response(202).await?;
    let event = format!("refer;id={}", at_bob.cseq().map_or(0, |c| c.0));
    let mut received = Vec::new();
    let sent: Vec<usize> = (1..=2 * PAIRS).collect();
    for burst in sent.chunks(BURST * 2) {
        for n in burst {
            let frag = if n % 2 == 1 {
                "SIP/2.0 100 Trying"
            } else {
                "SIP/2.0 200 OK"
            };
            let mut notify = call
                .b
                .request(&rig.bob, "NOTIFY", Some(("message/sipfrag", frag)));
            notify.push_header("Event", event.as_str());
            notify.push_header("Subscription-State", "active;expires=60");
            // The sequence rides in a header the host passes through.
            notify.push_header("X-Seq", n.to_string());
            rig.bob.send(call.host, &notify);
        }
        while received.len() < burst[burst.len() - 1] {
            let (req, from) = rig.alice.expect_request("NOTIFY").await?;
            rig.alice
                .send(from, &rig.alice.reply(&req, 200, &call.a.local_tag, None));
            let seq: usize = req.header("X-Seq").unwrap_or_default().parse()?;
            let frag = std::str::from_utf8(&req.body)?;
            assert_eq!(
                frag.contains("100 Trying"),
                seq % 2 == 1,
                "NOTIFY {seq} carries its own sipfrag"
            );
            received.push(seq);
        }
        count_finals(&mut rig.bob, burst.len()).await?;
    }
    assert_eq!(received, sent, "alice received the NOTIFYs out of order");
    Ok(())
}

/// The CANCEL of `invite` (same branch, RFC 3261 §9.1).
fn cancel_of(invite: &SipMessage) -> SipMessage {
    let mut c = SipMessage::request("CANCEL", invite.request_uri().unwrap_or_default());
    for name in ["Via", "Max-Forwards", "From", "To", "Call-ID"] {
        c.push_header(name, invite.header(name).unwrap_or_default());
    }
    let n = invite.cseq().map_or(1, |c| c.0);
    c.push_header("CSeq", format!("{n} CANCEL"));
    c.set_body(Bytes::new());
    c
}

/// The ACK of a non-2xx final response to `invite` (same branch, To of the response).
fn ack_of(invite: &SipMessage, response: &SipMessage) -> SipMessage {
    let mut a = SipMessage::request("ACK", invite.request_uri().unwrap_or_default());
    for name in ["Via", "Max-Forwards", "From"] {
        a.push_header(name, invite.header(name).unwrap_or_default());
    }
    a.push_header("To", response.header("To").unwrap_or_default());
    a.push_header("Call-ID", invite.call_id().unwrap_or_default());
    let n = invite.cseq().map_or(1, |c| c.0);
    a.push_header("CSeq", format!("{n} ACK"));
    a.set_body(Bytes::new());
    a
}

/// Wire order: alice → host INVITE then its CANCEL, back to back, call
/// after call. Every CANCEL must find its INVITE (200, never 481) and every
/// INVITE end in 487; bob sees INVITE, then CANCEL once it has rung; no call
/// is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_right_behind_its_invite_cancels_it() -> R {
    const CALLS: usize = 200;
    let mut rig = Rig::new(Proto::Udp, Proto::Udp).await;
    let mut invites = HashMap::new();
    let calls: Vec<usize> = (0..CALLS).collect();
    for burst in calls.chunks(BURST) {
        for _ in burst {
            let mut d = rig
                .alice
                .new_dialog("sip:bob@example.com", rig.host_for_alice);
            let invite = d.request(&rig.alice, "INVITE", Some(("application/sdp", SDP_OFFER)));
            rig.alice.send(rig.host_for_alice, &invite);
            rig.alice.send(rig.host_for_alice, &cancel_of(&invite));
            invites.insert(invite.call_id().unwrap_or_default().to_string(), invite);
        }
        // bob: ring each INVITE; answer each CANCEL 200 and its INVITE 487.
        let mut at_bob: HashMap<String, (SipMessage, String)> = HashMap::new();
        let mut acked = 0;
        while acked < burst.len() {
            let (req, from) = rig.bob.recv().await?;
            let call_id = req.call_id().unwrap_or_default().to_string();
            match req.method() {
                Some("INVITE") => {
                    let fresh = rig.bob.accept_dialog(&req, from).local_tag;
                    let (_, tag) = at_bob.entry(call_id).or_insert((req.clone(), fresh));
                    rig.bob.send(from, &rig.bob.reply(&req, 180, tag, None));
                }
                Some("CANCEL") => {
                    let (invite, tag) = at_bob
                        .get(&call_id)
                        .ok_or_else(|| anyhow::anyhow!("CANCEL before its INVITE at bob"))?;
                    rig.bob.send(from, &rig.bob.reply(&req, 200, tag, None));
                    rig.bob.send(from, &rig.bob.reply(invite, 487, tag, None));
                }
                Some("ACK") => acked += 1,
                _ => anyhow::bail!("bob got {}", req.summary()),
            }
        }
        // alice: 200 to each CANCEL, 487 to each INVITE (ACKed).
        let mut finals: HashMap<(String, u16), usize> = HashMap::new();
        let mut seen = 0;
        while seen < 2 * burst.len() {
            let (m, _) = rig.alice.recv().await?;
            let Some(status) = m.status().filter(|s| *s >= 200) else {
                continue;
            };
            let method = m.cseq().map(|c| c.1).unwrap_or_default();
            if status == 487 {
                let invite = &invites[m.call_id().unwrap_or_default()];
                rig.alice.send(rig.host_for_alice, &ack_of(invite, &m));
            }
            *finals.entry((method, status)).or_insert(0) += 1;
            seen += 1;
        }
        let expected = HashMap::from([
            (("CANCEL".to_string(), 200), burst.len()),
            (("INVITE".to_string(), 487), burst.len()),
        ]);
        assert_eq!(finals, expected, "alice's final responses");
    }
    assert!(
        rig.wait_calls(0).await,
        "calls left: {}",
        rig.host.stats.calls()
    );
    Ok(())
}

/// Wire order: alice → host ACK then BYE, back to back, right after the
/// 200. bob must see the ACK before the BYE, call after call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_and_the_bye_right_behind_it_arrive_in_that_order() -> R {
    const CALLS: usize = 200;
    let mut rig = Rig::new(Proto::Udp, Proto::Udp).await;
    for _ in 0..CALLS {
        let offered = rig.offer_call(Some(SDP_OFFER)).await?;
        let mut a = offered.alice;
        let b = rig.bob.accept_dialog(&offered.at_bob, offered.host);
        let ok = rig.bob.reply(
            &offered.at_bob,
            200,
            &b.local_tag,
            Some(("application/sdp", SDP_ANSWER)),
        );
        rig.bob.send(offered.host, &ok);
        let ok = rig.alice.expect_response(200).await?;
        a.update_from_response(&ok);
        rig.alice.send(rig.host_for_alice, &a.ack(&rig.alice));
        let bye = a.request(&rig.alice, "BYE", None);
        rig.alice.send(rig.host_for_alice, &bye);
        rig.bob.expect_request("ACK").await?;
        let (bye, from) = rig.bob.expect_request("BYE").await?;
        rig.bob
            .send(from, &rig.bob.reply(&bye, 200, &b.local_tag, None));
        rig.alice.expect_response(200).await?;
    }
    assert!(
        rig.wait_calls(0).await,
        "calls left: {}",
        rig.host.stats.calls()
    );
    Ok(())
}
