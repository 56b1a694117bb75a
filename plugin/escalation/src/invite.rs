//! The conference INVITE, built on the client's behalf (the numbered steps
//! of the operator's procedure; tests are named after them):
//! 1. a new dialog with the client's identity in From and the header set
//!    RFC 5366 and RFC 3891 need (the host adds Via, Call-ID, tags, CSeq,
//!    Contact);
//! 2. Request-URI = the conference factory of the client's home domain;
//! 3. and 4. an RFC 4826 resource list (Content-Disposition:
//!    recipient-list) with every invitee and the peer of the 1-to-1 session;
//! 6. at most MAX-ADHOC-GROUP-SIZE users on the list;
//! 7. multipart/mixed with a boundary, parts per RFC 2046;
//! 8. the client's MSRP offer (its a=path) as the SDP part;
//! 9. the peer's entry carries Replaces (RFC 3891) for the peer's dialog
//!    with the host, as an escaped URI header.

use crate::multipart::{self, Part};
use crate::policy::normalize_user;
use crate::resource_list;
use crate::sdp::{check_msrp_offer, SdpError};
use escalator_plugin_api::{Body, NewRequest};
use thiserror::Error;

/// The peer's side of the 1-to-1 session, from the host's dialog state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerDialog {
    /// The peer's address as the client knows it.
    pub uri: String,
    /// Call-ID of the host's dialog with the peer.
    pub call_id: String,
    /// The peer's own tag in that dialog (Replaces to-tag: the receiver's local tag).
    pub peer_tag: String,
    /// The host's tag in that dialog (Replaces from-tag: the receiver's remote tag).
    pub our_tag: String,
}

#[derive(Debug, Clone)]
pub struct ConferenceInvite<'a> {
    pub factory_uri: &'a str,
    /// The client's identity as in the ongoing session (name-addr, no tag).
    pub from: &'a str,
    pub invitees: &'a [String],
    pub peer: &'a PeerDialog,
    pub sdp_offer: &'a [u8],
    pub boundary: &'a str,
    pub max_group_size: usize,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BuildError {
    #[error("the group would have {members} members on the list, the maximum is {max}")]
    GroupTooLarge { members: usize, max: usize },
    #[error("no one to add")]
    NoInvitees,
    #[error("unusable SDP offer: {0}")]
    Sdp(#[from] SdpError),
}

/// Characters allowed unescaped in a URI header value (RFC 3261 section 25.1:
/// unreserved / hnv-unreserved).
fn hvalue_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-_.!~*'()[]/?:+$".contains(&c)
}

pub fn escape_header_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len() * 3);
    for b in v.bytes() {
        if hvalue_char(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `call-id;to-tag=...;from-tag=...` from the receiver's (the peer's) view.
pub fn replaces_value(peer: &PeerDialog) -> String {
    format!(
        "{};to-tag={};from-tag={}",
        peer.call_id, peer.peer_tag, peer.our_tag
    )
}

/// The peer's list entry: its URI with an escaped Replaces header.
pub fn peer_entry(peer: &PeerDialog) -> String {
    let uri = peer
        .uri
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>');
    let base = uri.split('?').next().unwrap_or(uri);
    format!(
        "{base}?Replaces={}",
        escape_header_value(&replaces_value(peer))
    )
}

/// The list: invitees in order (without the client itself, the peer or
/// duplicates), then the peer with its Replaces.
pub fn list_entries(from: &str, invitees: &[String], peer: &PeerDialog) -> Vec<String> {
    let me = normalize_user(from);
    let peer_addr = normalize_user(&peer.uri);
    let mut seen: Vec<Option<String>> = vec![me, peer_addr];
    let mut entries = Vec::new();
    for i in invitees {
        let key = normalize_user(i);
        if key.is_some() && seen.contains(&key) {
            continue;
        }
        seen.push(key);
        entries.push(i.clone());
    }
    entries.push(peer_entry(peer));
    entries
}

/// Step 6: users on the list (invitees and the peer) against the maximum.
pub fn check_group_size(entries: usize, max: usize) -> Result<(), BuildError> {
    if entries > max {
        return Err(BuildError::GroupTooLarge {
            members: entries,
            max,
        });
    }
    Ok(())
}

/// The INVITE as fields for the host ([`NewRequest`]): the host adds Via,
/// Call-ID, the tags, CSeq, Contact, Max-Forwards and Content-Length.
pub fn build(inv: &ConferenceInvite) -> Result<NewRequest, BuildError> {
    let entries = list_entries(inv.from, inv.invitees, inv.peer);
    if entries.len() < 2 {
        return Err(BuildError::NoInvitees);
    }
    check_group_size(entries.len(), inv.max_group_size)?;
    check_msrp_offer(inv.sdp_offer)?;
    let body = multipart::build(
        &[
            Part {
                headers: vec![("Content-Type".into(), "application/sdp".into())],
                body: inv.sdp_offer.to_vec(),
            },
            Part {
                headers: vec![
                    ("Content-Type".into(), resource_list::CONTENT_TYPE.into()),
                    ("Content-Disposition".into(), "recipient-list".into()),
                ],
                body: resource_list::build(&entries).into_bytes(),
            },
        ],
        inv.boundary,
    );
    let header = |n: &str, v: &str| (n.to_string(), v.to_string());
    Ok(NewRequest {
        request_uri: inv.factory_uri.to_string(),
        from: inv.from.to_string(),
        to: format!("<{}>", inv.factory_uri),
        headers: vec![
            header("Accept-Contact", "*;+g.oma.sip-im"),
            header("Require", "recipient-list-invite"),
            header("Supported", "replaces"),
            header(
                "Allow",
                "INVITE, ACK, CANCEL, BYE, UPDATE, MESSAGE, NOTIFY, OPTIONS",
            ),
            header("Accept", "application/sdp, message/sipfrag"),
        ],
        body: Some(Body {
            content_type: format!("multipart/mixed;boundary={}", inv.boundary),
            bytes: body,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use escalator_sip::SipMessage;

    pub const OFFER: &str = "v=0\r\no=alice 2890844526 2890844527 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=message 7654 TCP/MSRP *\r\na=accept-types:message/cpim text/plain\r\na=accept-wrapped-types:*\r\na=path:msrp://192.0.2.10:7654/iau39soe2843z;tcp\r\n";

    fn peer() -> PeerDialog {
        PeerDialog {
            uri: "<sip:bob@example.com>".into(),
            call_id: "2xTb9vxSit55XU7p8@escalator".into(),
            peer_tag: "bob-tag-1".into(),
            our_tag: "host-tag-2".into(),
        }
    }

    fn invitees() -> Vec<String> {
        vec![
            "sip:carol@example.com".into(),
            "sip:dave@example.net".into(),
        ]
    }

    /// The request as the host would send it (its own headers stand in
    /// with test values), for the parsers.
    fn wire(r: &NewRequest) -> Vec<u8> {
        let body = r.body.as_ref().expect("a body");
        let mut text = format!(
            "INVITE {} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKtest\r\n\
             From: {};tag=host\r\nTo: {}\r\nCall-ID: test@escalator\r\nCSeq: 1 INVITE\r\n\
             Max-Forwards: 70\r\n",
            r.request_uri, r.from, r.to
        );
        for (n, v) in &r.headers {
            text.push_str(&format!("{n}: {v}\r\n"));
        }
        text.push_str(&format!(
            "Content-Type: {}\r\nContent-Length: {}\r\n\r\n",
            body.content_type,
            body.bytes.len()
        ));
        let mut raw = text.into_bytes();
        raw.extend_from_slice(&body.bytes);
        raw
    }

    fn built(invitees: &[String], max: usize) -> Result<NewRequest, BuildError> {
        let peer = peer();
        build(&ConferenceInvite {
            factory_uri: "sip:conference-factory@ims.example.com",
            from: "\"Alice\" <sip:alice@example.com>",
            invitees,
            peer: &peer,
            sdp_offer: OFFER.as_bytes(),
            boundary: "escalator-boundary-1",
            max_group_size: max,
        })
    }

    fn request(invitees: &[String], max: usize) -> Result<Vec<u8>, BuildError> {
        built(invitees, max).map(|r| wire(&r))
    }

    fn parsed() -> SipMessage {
        SipMessage::parse(&request(&invitees(), 10).unwrap(), Default::default()).unwrap()
    }

    fn parts() -> Vec<Part> {
        let m = parsed();
        multipart::split(&m.body, m.content_type().unwrap()).unwrap()
    }

    #[test]
    fn golden_conference_invite() {
        let got = built(&invitees(), 10).unwrap().describe("INVITE");
        let want = include_str!("../tests/golden/conference_invite.sip");
        assert_eq!(got, want.replace("\r\n", "\n").replace('\n', "\r\n"));
    }

    #[test]
    fn step1_new_dialog_from_the_client_identity_with_the_needed_headers() {
        let m = parsed();
        assert_eq!(m.method(), Some("INVITE"));
        assert_eq!(m.to_tag(), None);
        let r = built(&invitees(), 10).unwrap();
        assert_eq!(
            r.from, "\"Alice\" <sip:alice@example.com>",
            "the client, without a tag: the host adds its own"
        );
        for own in [
            "Via",
            "Call-ID",
            "CSeq",
            "Contact",
            "Content-Length",
            "Max-Forwards",
        ] {
            assert!(
                r.headers.iter().all(|(n, _)| !n.eq_ignore_ascii_case(own)),
                "{own} is the host's"
            );
        }
        assert_eq!(m.header("Require"), Some("recipient-list-invite"));
        assert_eq!(m.header("Supported"), Some("replaces"));
        assert!(m.header("Allow").unwrap().contains("INVITE"));
        assert!(m.header("Accept").unwrap().contains("application/sdp"));
    }

    #[test]
    fn step2_request_uri_is_the_conference_factory() {
        assert_eq!(
            parsed().request_uri(),
            Some("sip:conference-factory@ims.example.com")
        );
        assert_eq!(
            parsed().header("To"),
            Some("<sip:conference-factory@ims.example.com>")
        );
    }

    #[test]
    fn step3_and_4_list_has_the_invitees_and_the_peer() {
        let p = &parts()[1];
        assert_eq!(
            p.header("Content-Type"),
            Some("application/resource-lists+xml")
        );
        assert_eq!(p.header("Content-Disposition"), Some("recipient-list"));
        let uris = resource_list::parse(&p.body, 100).unwrap();
        assert_eq!(uris.len(), 3);
        assert_eq!(
            &uris[..2],
            &["sip:carol@example.com", "sip:dave@example.net"]
        );
        assert!(uris[2].starts_with("sip:bob@example.com?Replaces="));
    }

    #[test]
    fn step3_duplicates_the_client_and_the_peer_are_not_listed_twice() {
        let inv = vec![
            "sip:carol@example.com".to_string(),
            "sip:Carol@Example.com".into(),
            "sip:alice@example.com".into(),
            "sip:bob@example.com".into(),
        ];
        let entries = list_entries("<sip:alice@example.com>", &inv, &peer());
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0], "sip:carol@example.com");
    }

    #[test]
    fn step6_group_size_is_enforced_before_anything_is_built() {
        // 2 invitees + the peer = 3 users on the list.
        assert!(request(&invitees(), 3).is_ok());
        assert_eq!(
            request(&invitees(), 2).unwrap_err(),
            BuildError::GroupTooLarge { members: 3, max: 2 }
        );
        assert_eq!(request(&[], 10).unwrap_err(), BuildError::NoInvitees);
    }

    #[test]
    fn step7_multipart_mixed_with_boundary_and_exact_length() {
        let raw = request(&invitees(), 10).unwrap();
        let m = parsed();
        assert_eq!(
            m.content_type(),
            Some("multipart/mixed;boundary=escalator-boundary-1")
        );
        let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert_eq!(
            m.header("Content-Length").unwrap(),
            (raw.len() - head_end).to_string()
        );
        assert!(m.body.starts_with(b"--escalator-boundary-1\r\n"));
        assert!(m.body.ends_with(b"\r\n--escalator-boundary-1--\r\n"));
        assert_eq!(parts().len(), 2);
    }

    #[test]
    fn step8_sdp_part_is_the_clients_msrp_offer_byte_for_byte() {
        let p = &parts()[0];
        assert_eq!(p.header("Content-Type"), Some("application/sdp"));
        assert_eq!(p.body, OFFER.as_bytes());
        let sdp = sdp_rs::SessionDescription::try_from(String::from_utf8(p.body.clone()).unwrap())
            .unwrap();
        let attrs = format!("{:?}", sdp.media_descriptions[0].attributes);
        assert!(
            attrs.contains("msrp://192.0.2.10:7654/iau39soe2843z;tcp"),
            "{attrs}"
        );
        let audio = OFFER.replace("m=message 7654 TCP/MSRP *", "m=audio 7654 RTP/AVP 0");
        let peer = peer();
        let err = build(&ConferenceInvite {
            factory_uri: "sip:f@x",
            from: "<sip:alice@example.com>",
            invitees: &invitees(),
            peer: &peer,
            sdp_offer: audio.as_bytes(),
            boundary: "b",
            max_group_size: 10,
        })
        .unwrap_err();
        assert_eq!(err, BuildError::Sdp(SdpError::NoMsrp));
    }

    #[test]
    fn step9_replaces_names_the_peers_dialog_from_the_peers_view_escaped() {
        let entry = peer_entry(&peer());
        assert_eq!(
            entry,
            "sip:bob@example.com?Replaces=2xTb9vxSit55XU7p8%40escalator%3Bto-tag%3Dbob-tag-1%3Bfrom-tag%3Dhost-tag-2"
        );
        // Unescaped, it is a Replaces value an RFC 3891 UAS matches:
        // to-tag = its own (local) tag, from-tag = the host's.
        let uri = escalator_sip::SipUri::parse(&entry).unwrap();
        let (name, value) = &uri.headers[0];
        assert_eq!(name, "Replaces");
        let unescaped = value
            .replace("%40", "@")
            .replace("%3B", ";")
            .replace("%3D", "=");
        assert_eq!(
            unescaped,
            "2xTb9vxSit55XU7p8@escalator;to-tag=bob-tag-1;from-tag=host-tag-2"
        );
        // Existing headers on the peer URI are dropped, not doubled.
        let mut p = peer();
        p.uri = "sip:bob@example.com?Subject=x".into();
        assert!(!peer_entry(&p).contains("Subject"));
    }

    #[test]
    fn independent_parsers_accept_the_message() {
        let raw = request(&invitees(), 10).unwrap();
        // rsip (a SIP parser we did not write) reads it.
        let text = String::from_utf8(raw.clone()).unwrap();
        let r = rsip::SipMessage::try_from(text.as_str()).expect("rsip parses the INVITE");
        assert!(r.is_request());
        // quick-xml reads the list as XML.
        let xml = &parts()[1].body;
        let mut reader = quick_xml::Reader::from_reader(&xml[..]);
        let mut buf = Vec::new();
        let mut elements = 0;
        loop {
            match reader.read_event_into(&mut buf).unwrap() {
                quick_xml::events::Event::Eof => break,
                quick_xml::events::Event::Start(_) | quick_xml::events::Event::Empty(_) => {
                    elements += 1
                }
                _ => {}
            }
            buf.clear();
        }
        assert_eq!(elements, 5, "resource-lists, list and three entries");
    }
}
