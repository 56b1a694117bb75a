//! SIP message model (crate `escalator-sip`, shared by the host and plugins): a pass-through-preserving envelope plus small typed views.
//!
//! Why not `rsip` for the envelope: rsip 0.4 rejects extension methods (the
//! operator-defined add-user request), folded header lines and IPv6 references
//! in URIs and Via. We keep every header as received (name and value text) and
//! parse only the few values a B2BUA must understand.

pub mod event;
pub mod framing;
pub mod header;
pub mod message;
pub mod method;
pub mod replaces;
pub mod response;
pub mod status;
pub mod uri;

pub use header::{NameAddr, Via};
pub use message::{Header, ParseError, SipMessage, StartLine};
pub use method::Method;
pub use replaces::Replaces;
pub use uri::SipUri;
