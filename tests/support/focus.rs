//! A scripted conference focus, as real ones behave: it accepts the
//! conference INVITE (RFC 5366: `multipart/mixed` with an SDP offer and a
//! resource list), INVITEs every list entry through the core with the URI
//! headers the entry carries (`?Replaces=…`), and answers the creator either
//! before or after inviting ([`AnswerCreator`]): focuses do both.
//!
//! The list is read here with its own parser (quick-xml, a plain multipart
//! split), not the plugin's, so the plugin is checked against an
//! independent reading of what it sent.

use escalator_host::sip::SipMessage;
use escalator_testkit::ua::{TestUa, UaDialog};
use std::net::SocketAddr;

/// The focus's answer (its media description).
pub const CONF_SDP: &str = escalator_testkit::sdp::CONFERENCE;

/// When the focus answers the creator's INVITE.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AnswerCreator {
    /// 200 at once, then the participants are invited.
    BeforeInviting,
    /// 100 Trying, the participants are invited, then 200.
    AfterInviting,
    /// 100 Trying, the participants are invited, then the creator is
    /// refused with this status (the conference could not be made).
    RefuseAfterInviting(u16),
    /// This final status at once (after 100 Trying); nobody is invited.
    RefuseAtOnce(u16),
    /// 180 Ringing and nothing more until a CANCEL (200, then 487 to the
    /// INVITE); nobody is invited.
    RingUntilCancelled,
    /// As [`AnswerCreator::RingUntilCancelled`] without the 180: 100 Trying
    /// only (which a proxy absorbs; the host sees the proxy's own 100).
    /// Without any provisional from the focus, Kamailio would hold a CANCEL
    /// until its own timer (tm's `cancel_b_method`).
    SilentUntilCancelled,
}

/// One resource-list entry: its URI without headers, and the headers its
/// URI carried (names as written, values percent-decoded).
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub uri: String,
    pub headers: Vec<(String, String)>,
}

/// What the focus did: the creator's dialog, and each participant's final
/// status with the dialog when it accepted.
pub struct Conference {
    pub ua: TestUa,
    pub invite: SipMessage,
    pub creator: UaDialog,
    pub members: Vec<(Entry, u16, Option<UaDialog>)>,
}

impl Conference {
    /// A REFER on the creator's dialog (an addition): answered 202;
    /// returns it and the users it names (its Refer-To, or the resource
    /// list a `cid:` Refer-To points at).
    pub async fn take_refer(&mut self) -> anyhow::Result<(SipMessage, Vec<String>)> {
        let (refer, from) = self.ua.expect_request("REFER").await?;
        anyhow::ensure!(
            refer.call_id() == Some(self.creator.call_id.as_str()),
            "REFER outside the conference dialog: {}",
            refer.summary()
        );
        self.ua.send(
            from,
            &self.ua.reply(&refer, 202, &self.creator.local_tag, None),
        );
        let refer_to = refer.header("Refer-To").unwrap_or_default();
        let users = if refer_to.contains("cid:") {
            resource_list_entries(&String::from_utf8_lossy(&refer.body))?
                .into_iter()
                .map(|e| e.uri)
                .collect()
        } else {
            vec![refer_to
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()]
        };
        Ok((refer, users))
    }

    /// A NOTIFY of the subscription `refer` made (id = its CSeq) with
    /// `frag` as sipfrag, sent toward `core`; not waited for.
    pub fn notify(&mut self, core: SocketAddr, refer: &SipMessage, frag: &str, state: &str) {
        let mut n = self.creator.request(
            &self.ua,
            "NOTIFY",
            Some(("message/sipfrag;version=2.0", frag)),
        );
        n.push_header(
            "Event",
            format!("refer;id={}", refer.cseq().map_or(0, |c| c.0)),
        );
        n.push_header("Subscription-State", state);
        self.ua.send(core, &n);
    }
}

/// Serve one conference: wait for the creator's INVITE, then invite every
/// entry through `core` (where the focus sends its own requests).
pub async fn serve(
    mut ua: TestUa,
    core: SocketAddr,
    answer: AnswerCreator,
) -> anyhow::Result<Conference> {
    let (invite, from) = ua.expect_request("INVITE").await?;
    let entries = list_entries(&invite)?;
    let creator = ua.accept_dialog(&invite, from);
    ua.send(from, &ua.reply(&invite, 100, &creator.local_tag, None));
    let members = match answer {
        AnswerCreator::RefuseAtOnce(status) => {
            refuse_creator(&mut ua, &invite, from, &creator, status).await?;
            Vec::new()
        }
        AnswerCreator::RingUntilCancelled | AnswerCreator::SilentUntilCancelled => {
            if answer == AnswerCreator::RingUntilCancelled {
                ua.send(from, &ua.reply(&invite, 180, &creator.local_tag, None));
            }
            let (cancel, cancel_from) = ua.expect_request("CANCEL").await?;
            ua.send(
                cancel_from,
                &ua.reply(&cancel, 200, &creator.local_tag, None),
            );
            refuse_creator(&mut ua, &invite, from, &creator, 487).await?;
            Vec::new()
        }
        AnswerCreator::BeforeInviting => {
            answer_creator(&mut ua, &invite, from, &creator).await?;
            invite_members(&mut ua, core, entries).await?
        }
        AnswerCreator::AfterInviting => {
            let members = invite_members(&mut ua, core, entries).await?;
            answer_creator(&mut ua, &invite, from, &creator).await?;
            members
        }
        AnswerCreator::RefuseAfterInviting(status) => {
            let members = invite_members(&mut ua, core, entries).await?;
            refuse_creator(&mut ua, &invite, from, &creator, status).await?;
            members
        }
    };
    Ok(Conference {
        ua,
        invite,
        creator,
        members,
    })
}

/// A final failure to the creator's INVITE, and its ACK.
async fn refuse_creator(
    ua: &mut TestUa,
    invite: &SipMessage,
    from: SocketAddr,
    creator: &UaDialog,
    status: u16,
) -> anyhow::Result<()> {
    ua.send(from, &ua.reply(invite, status, &creator.local_tag, None));
    ua.expect_request("ACK").await?;
    Ok(())
}

async fn answer_creator(
    ua: &mut TestUa,
    invite: &SipMessage,
    from: SocketAddr,
    creator: &UaDialog,
) -> anyhow::Result<()> {
    let mut ok = ua.reply(
        invite,
        200,
        &creator.local_tag,
        Some(("application/sdp", CONF_SDP)),
    );
    ok.set_header("Contact", format!("{};isfocus", ua.contact()));
    ua.send(from, &ok);
    ua.expect_request("ACK").await?;
    Ok(())
}

/// INVITE every participant at once (the entry's headers added), then
/// collect the final answers; each with its dialog (ACKed) on 2xx.
async fn invite_members(
    ua: &mut TestUa,
    core: SocketAddr,
    entries: Vec<Entry>,
) -> anyhow::Result<Vec<(Entry, u16, Option<UaDialog>)>> {
    let mut pending = Vec::new();
    for entry in entries {
        let mut d = ua.new_dialog(&entry.uri, core);
        let mut inv = d.request(ua, "INVITE", Some(("application/sdp", CONF_SDP)));
        for (name, value) in &entry.headers {
            inv.push_header(name, value.as_str());
        }
        ua.send(core, &inv);
        pending.push((entry, d, None::<u16>));
    }
    while pending.iter().any(|(_, _, status)| status.is_none()) {
        let (resp, _) = ua.recv().await?;
        let Some(status) = resp.status() else {
            anyhow::bail!("focus: a request while inviting: {}", resp.summary());
        };
        let Some((_, d, done)) = pending
            .iter_mut()
            .find(|(_, d, _)| resp.call_id() == Some(d.call_id.as_str()))
        else {
            anyhow::bail!("focus: a response for no invitation: {}", resp.summary());
        };
        if status < 200 || done.is_some() {
            continue;
        }
        *done = Some(status);
        if status < 300 {
            d.update_from_response(&resp);
            ua.send(core, &d.ack(ua));
        }
        // A failure is ACKed hop by hop by the core (stateful): nothing here.
    }
    Ok(pending
        .into_iter()
        .map(|(entry, d, status)| {
            let status = status.unwrap_or_default();
            let dialog = (status < 300).then_some(d);
            (entry, status, dialog)
        })
        .collect())
}

/// The resource list's entries (RFC 5366 inside `multipart/mixed`).
pub fn list_entries(invite: &SipMessage) -> anyhow::Result<Vec<Entry>> {
    let ctype = invite.header("Content-Type").unwrap_or_default();
    let boundary = ctype
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("boundary="))
        .map(|b| b.trim_matches('"').to_string())
        .next()
        .ok_or_else(|| anyhow::anyhow!("no multipart boundary in {ctype:?}"))?;
    let body = String::from_utf8_lossy(&invite.body);
    let delimiter = format!("--{boundary}");
    let list = body
        .split(delimiter.as_str())
        .find(|part| {
            part.split("\r\n\r\n")
                .next()
                .is_some_and(|h| h.to_ascii_lowercase().contains("resource-lists+xml"))
        })
        .and_then(|part| part.split_once("\r\n\r\n").map(|(_, xml)| xml.to_string()))
        .ok_or_else(|| anyhow::anyhow!("no resource list in the body"))?;
    resource_list_entries(&list)
}

/// The entries of an RFC 4826 resource list.
pub fn resource_list_entries(list: &str) -> anyhow::Result<Vec<Entry>> {
    let mut reader = quick_xml::Reader::from_str(list);
    let mut entries = Vec::new();
    loop {
        match reader.read_event()? {
            quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e)
                if e.local_name().as_ref() == "entry" =>
            {
                for attr in e.attributes() {
                    let attr = attr?;
                    if attr.key.local_name().as_ref() == "uri" {
                        let uri = attr
                            .normalized_value(quick_xml::XmlVersion::Implicit1_0)?
                            .into_owned();
                        entries.push(split_uri_headers(&uri));
                    }
                }
            }
            quick_xml::events::Event::Eof => break,
            _ => {}
        }
    }
    Ok(entries)
}

/// `sip:bob@example.com?Replaces=a%40b%3Bto-tag%3Dx` → the URI and its
/// headers, decoded (RFC 3261 §19.1.1).
pub fn split_uri_headers(uri: &str) -> Entry {
    let (base, headers) = uri.split_once('?').unwrap_or((uri, ""));
    let headers = headers
        .split('&')
        .filter(|h| !h.is_empty())
        .filter_map(|h| h.split_once('='))
        .map(|(n, v)| (percent_decode(n), percent_decode(v)))
        .collect();
    Entry {
        uri: base.to_string(),
        headers,
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_headers_are_split_and_decoded() {
        let e = split_uri_headers(
            "sip:bob@example.com?Replaces=c9%40esc%3Bto-tag%3Db-44%3Bfrom-tag%3Dh-33",
        );
        assert_eq!(e.uri, "sip:bob@example.com");
        assert_eq!(
            e.headers,
            [(
                "Replaces".to_string(),
                "c9@esc;to-tag=b-44;from-tag=h-33".to_string()
            )]
        );
        assert_eq!(split_uri_headers("sip:c@x").headers, []);
    }
}
