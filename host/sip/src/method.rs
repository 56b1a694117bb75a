//! The request method as a type (RFC 3261 §7.1; methods are case-sensitive).
//! Methods the host does not know are kept as [`Method::Extension`], byte
//! for byte, so an operator-defined request passes through as it came.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Prack,
    Subscribe,
    Notify,
    Publish,
    Info,
    Refer,
    Message,
    Update,
    /// Any other token, as written.
    Extension(String),
}

impl Method {
    pub fn parse(token: &str) -> Method {
        match token {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "PRACK" => Method::Prack,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "PUBLISH" => Method::Publish,
            "INFO" => Method::Info,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            "UPDATE" => Method::Update,
            other => Method::Extension(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Publish => "PUBLISH",
            Method::Info => "INFO",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Update => "UPDATE",
            Method::Extension(s) => s,
        }
    }

    /// Requests that set or refresh the remote target (RFC 3261 §12.2.1.2):
    /// they carry our Contact, and their Contact updates the dialog's.
    pub fn sets_target(&self) -> bool {
        matches!(
            self,
            Method::Invite | Method::Subscribe | Method::Notify | Method::Refer | Method::Update
        )
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for Method {
    fn from(token: &str) -> Method {
        Method::parse(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_method_reads_back_as_written() {
        for token in [
            "INVITE",
            "ACK",
            "BYE",
            "CANCEL",
            "OPTIONS",
            "REGISTER",
            "PRACK",
            "SUBSCRIBE",
            "NOTIFY",
            "PUBLISH",
            "INFO",
            "REFER",
            "MESSAGE",
            "UPDATE",
        ] {
            let m = Method::parse(token);
            assert!(!matches!(m, Method::Extension(_)), "{token}");
            assert_eq!(m.as_str(), token);
        }
    }

    #[test]
    fn extensions_and_other_cases_are_kept_as_written() {
        assert_eq!(
            Method::parse("ADDUSER"),
            Method::Extension("ADDUSER".into())
        );
        assert_eq!(Method::parse("ADDUSER").to_string(), "ADDUSER");
        // Methods are case-sensitive (RFC 3261 §7.1).
        assert_eq!(Method::parse("invite"), Method::Extension("invite".into()));
    }
}
