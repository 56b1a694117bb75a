//! The Event header (RFC 6665 §8.2.1): a package and an `id` parameter
//! that tells subscriptions of one package in one dialog apart (for
//! REFER, RFC 3515 §2.4.6, the CSeq of the REFER).

/// An Event header value's package (lower case) and `id` parameter.
pub fn event_of(value: &str) -> (String, Option<String>) {
    let mut parts = value.split(';').map(str::trim);
    let package = parts.next().unwrap_or_default().to_ascii_lowercase();
    let id = parts
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("id"))
        .map(|(_, v)| v.trim().to_string());
    (package, id)
}

/// `value` with its `id` parameter set to `id` (removed when `None`),
/// other parameters kept.
pub fn with_event_id(value: &str, id: Option<&str>) -> String {
    let mut parts = value.split(';').map(str::trim);
    let mut out = parts.next().unwrap_or_default().to_string();
    for p in parts {
        let is_id = p
            .split_once('=')
            .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("id"));
        if !is_id && !p.is_empty() {
            out.push(';');
            out.push_str(p);
        }
    }
    if let Some(id) = id {
        out.push_str(";id=");
        out.push_str(id);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_read_and_rewritten() {
        assert_eq!(event_of("refer;id=3"), ("refer".into(), Some("3".into())));
        assert_eq!(
            event_of(" Refer ; ID = 9 ;x=1"),
            ("refer".into(), Some("9".into()))
        );
        assert_eq!(event_of("presence"), ("presence".into(), None));
        assert_eq!(with_event_id("refer;id=3", Some("4")), "refer;id=4");
        assert_eq!(with_event_id("refer;x=1;id=3", Some("4")), "refer;x=1;id=4");
        assert_eq!(with_event_id("refer", Some("4")), "refer;id=4");
        assert_eq!(with_event_id("refer;id=3", None), "refer");
    }
}
