//! Test kit for escalator: a scripted SIP user agent that says what to send
//! and what to expect next, and records every message for a message ladder
//! ([`ua`]), and the session descriptions its users offer and answer
//! ([`sdp`]). Used by the end-to-end tests and by `escalator demo`; not part
//! of the host library.

pub mod sdp;
pub mod ua;
