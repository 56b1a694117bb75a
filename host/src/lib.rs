//! escalator host: a SIP back-to-back user agent.
//!
//! Layers, each testable alone: [`sip`] (messages), [`transport`] (UDP/TCP),
//! [`transaction`] (RFC 3261 section 17), [`dialog`] and [`b2bua`] (the call
//! model), [`core`] (the event loop that ties them together, one task per
//! [`shard`] of the calls).

pub mod admin;
pub mod compaction;
pub mod config;
pub mod core;
pub use entities::dialog;
pub mod demo;
pub mod entities;
pub mod forward;
pub mod host;
pub mod logging;
pub mod logic;
pub mod memory;
pub mod metrics;
pub mod plugins;
pub mod routing;
pub mod shard;
pub use escalator_sip as sip;
pub mod check_policy;
pub mod timers;
pub mod transaction;
pub mod transport;
pub mod ua;
