//! The Replaces header (RFC 3891 §6.1): `call-id ;to-tag=… ;from-tag=…
//! [;early-only]`. It names a dialog *as the receiver of the INVITE sees
//! it*: `to-tag` is the receiver's own (local) tag, `from-tag` the remote
//! one, whatever the dialog's From and To said.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaces {
    pub call_id: String,
    /// The receiver's local tag.
    pub to_tag: String,
    /// The receiver's remote tag.
    pub from_tag: String,
    pub early_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplacesError {
    #[error("Replaces without a Call-ID")]
    NoCallId,
    #[error("Replaces without to-tag or from-tag")]
    MissingTag,
    #[error("Replaces with a parameter twice: {0}")]
    Duplicate(String),
}

impl Replaces {
    pub fn parse(value: &str) -> Result<Replaces, ReplacesError> {
        let mut parts = value.split(';').map(str::trim);
        let call_id = parts.next().unwrap_or_default();
        if call_id.is_empty() || call_id.contains(char::is_whitespace) {
            return Err(ReplacesError::NoCallId);
        }
        let (mut to_tag, mut from_tag, mut early_only) = (None, None, false);
        for p in parts {
            let (name, v) = p.split_once('=').unwrap_or((p, ""));
            let name = name.trim().to_ascii_lowercase();
            let slot = match name.as_str() {
                "to-tag" => &mut to_tag,
                "from-tag" => &mut from_tag,
                "early-only" => {
                    early_only = true;
                    continue;
                }
                _ => continue, // generic parameters are allowed and ignored
            };
            if slot.is_some() {
                return Err(ReplacesError::Duplicate(name));
            }
            *slot = Some(v.trim().to_string());
        }
        match (to_tag, from_tag) {
            (Some(t), Some(f)) if !t.is_empty() && !f.is_empty() => Ok(Replaces {
                call_id: call_id.to_string(),
                to_tag: t,
                from_tag: f,
                early_only,
            }),
            _ => Err(ReplacesError::MissingTag),
        }
    }
}

impl fmt::Display for Replaces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{};to-tag={};from-tag={}",
            self.call_id, self.to_tag, self.from_tag
        )?;
        if self.early_only {
            f.write_str(";early-only")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_tag_orders_and_early_only() {
        let r = Replaces::parse("c9@esc.example.net;to-tag=b-44;from-tag=h-33").unwrap();
        assert_eq!(
            (r.call_id.as_str(), r.to_tag.as_str(), r.from_tag.as_str()),
            ("c9@esc.example.net", "b-44", "h-33")
        );
        assert!(!r.early_only);
        let r = Replaces::parse(" x ; from-tag=f ; early-only ; to-tag=t ").unwrap();
        assert_eq!((r.to_tag.as_str(), r.from_tag.as_str()), ("t", "f"));
        assert!(r.early_only);
        assert_eq!(r.to_string(), "x;to-tag=t;from-tag=f;early-only");
    }

    #[test]
    fn refuses_what_names_no_dialog() {
        assert_eq!(Replaces::parse(""), Err(ReplacesError::NoCallId));
        assert_eq!(
            Replaces::parse(";to-tag=a;from-tag=b"),
            Err(ReplacesError::NoCallId)
        );
        assert_eq!(
            Replaces::parse("c;to-tag=a"),
            Err(ReplacesError::MissingTag)
        );
        assert_eq!(
            Replaces::parse("c;to-tag=;from-tag=b"),
            Err(ReplacesError::MissingTag)
        );
        assert_eq!(
            Replaces::parse("c;to-tag=a;to-tag=b;from-tag=c"),
            Err(ReplacesError::Duplicate("to-tag".into()))
        );
    }
}
