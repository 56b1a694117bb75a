//! RFC 4826 resource-lists documents: building the list of a conference
//! INVITE (RFC 5366) and reading the lists of REFERs (RFC 5368) and custom
//! add-user requests. Input comes from clients, so reading is defensive: no
//! DTD (no entity expansion), bounded depth, entry count and URI length.

use quick_xml::events::{BytesDecl, BytesStart, Event};
use quick_xml::{Reader, Writer};
use thiserror::Error;

pub const NAMESPACE: &str = "urn:ietf:params:xml:ns:resource-lists";
pub const CONTENT_TYPE: &str = "application/resource-lists+xml";

const MAX_DEPTH: usize = 8;
const MAX_URI_LEN: usize = 512;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ListError {
    #[error("not well-formed XML: {0}")]
    Xml(String),
    #[error("a DTD is not allowed in a resource list")]
    Dtd,
    #[error("the root element is not resource-lists")]
    NotResourceLists,
    #[error("elements nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("more than {0} entries")]
    TooManyEntries(usize),
    #[error("an entry without a usable uri")]
    BadEntry,
}

fn local_name(e: &BytesStart) -> String {
    e.local_name().as_ref().to_string()
}

/// The `uri` of every `entry`, in document order.
pub fn parse(xml: &[u8], max_entries: usize) -> Result<Vec<String>, ListError> {
    let mut reader = Reader::from_reader(xml);
    reader.config_mut().trim_text(true);
    let mut depth = 0usize;
    let mut seen_root = false;
    let mut uris = Vec::new();
    let mut buf = Vec::new();
    loop {
        let ev = reader
            .read_event_into(&mut buf)
            .map_err(|e| ListError::Xml(e.to_string()))?;
        let (start, empty) = match &ev {
            Event::Start(e) => (Some(e.clone()), false),
            Event::Empty(e) => (Some(e.clone()), true),
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                (None, false)
            }
            Event::DocType(_) => return Err(ListError::Dtd),
            Event::Eof => break,
            _ => (None, false),
        };
        if let Some(e) = start {
            let name = local_name(&e);
            if !seen_root {
                if name != "resource-lists" {
                    return Err(ListError::NotResourceLists);
                }
                seen_root = true;
            }
            if name == "entry" {
                if uris.len() >= max_entries {
                    return Err(ListError::TooManyEntries(max_entries));
                }
                let uri = e
                    .attributes()
                    .filter_map(Result::ok)
                    .find(|a| a.key.local_name().as_ref() == "uri")
                    .and_then(|a| {
                        a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                            .ok()
                            .map(|v| v.trim().to_string())
                    })
                    .filter(|u| !u.is_empty() && u.len() <= MAX_URI_LEN)
                    .ok_or(ListError::BadEntry)?;
                uris.push(uri);
            }
            if !empty {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(ListError::TooDeep);
                }
            }
        }
        buf.clear();
    }
    if !seen_root {
        return Err(ListError::NotResourceLists);
    }
    Ok(uris)
}

/// A resource-lists document with one list of `uris` (escaping by the writer),
/// CRLF line ends.
pub fn build(uris: &[String]) -> String {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    // Writing into a Vec cannot fail.
    let _ = w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)));
    let mut root = BytesStart::new("resource-lists");
    root.push_attribute(("xmlns", NAMESPACE));
    let _ = w.write_event(Event::Start(root.borrow()));
    let _ = w.write_event(Event::Start(BytesStart::new("list")));
    for uri in uris {
        let mut entry = BytesStart::new("entry");
        entry.push_attribute(("uri", uri.as_str()));
        let _ = w.write_event(Event::Empty(entry));
    }
    let _ = w.write_event(Event::End(BytesStart::new("list").to_end()));
    let _ = w.write_event(Event::End(root.to_end()));
    // CRLF line ends, like the rest of a SIP message.
    let text = String::from_utf8(w.into_inner()).unwrap_or_default();
    format!("{}\r\n", text.replace('\n', "\r\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_escaping() {
        let uris = vec![
            "sip:carol@example.com".to_string(),
            "sip:bob@example.com?Replaces=a%40b%3Bto-tag%3D1&x=\"<>\"".to_string(),
        ];
        let xml = build(&uris);
        assert!(xml.contains("&amp;x=&quot;&lt;&gt;&quot;"), "{xml}");
        assert_eq!(parse(xml.as_bytes(), 10).unwrap(), uris);
    }

    #[test]
    fn reads_prefixed_and_nested_lists() {
        let xml = br#"<?xml version="1.0"?>
            <rl:resource-lists xmlns:rl="urn:ietf:params:xml:ns:resource-lists">
              <rl:list name="a"><rl:entry uri="sip:a@x"><rl:display-name>A</rl:display-name></rl:entry>
                <rl:list><rl:entry uri=" sip:b@x "/></rl:list></rl:list>
            </rl:resource-lists>"#;
        assert_eq!(parse(xml, 10).unwrap(), vec!["sip:a@x", "sip:b@x"]);
    }

    #[test]
    fn hostile_documents_are_refused() {
        let laughs = br#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>
            <resource-lists><list><entry uri="&lol2;"/></list></resource-lists>"#;
        assert_eq!(parse(laughs, 10), Err(ListError::Dtd));
        let deep = format!(
            "<resource-lists>{}{}</resource-lists>",
            "<list>".repeat(20),
            "</list>".repeat(20)
        );
        assert_eq!(parse(deep.as_bytes(), 10), Err(ListError::TooDeep));
        let many = format!(
            "<resource-lists><list>{}</list></resource-lists>",
            "<entry uri=\"sip:a@b\"/>".repeat(11)
        );
        assert_eq!(
            parse(many.as_bytes(), 10),
            Err(ListError::TooManyEntries(10))
        );
        assert_eq!(parse(b"<html/>", 10), Err(ListError::NotResourceLists));
        assert_eq!(parse(b"", 10), Err(ListError::NotResourceLists));
        assert!(matches!(
            parse(b"<resource-lists><list>", 10),
            Err(ListError::Xml(_)) | Ok(_)
        ));
        assert_eq!(
            parse(
                b"<resource-lists><list><entry/></list></resource-lists>",
                10
            ),
            Err(ListError::BadEntry)
        );
        assert!(matches!(
            parse(b"<resource-lists><a></b></resource-lists>", 10),
            Err(ListError::Xml(_))
        ));
    }
}
