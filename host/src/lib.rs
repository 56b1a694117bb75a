//! escalator host: a SIP back-to-back user agent with loadable plugins, as a
//! library. The `escalator` binary (package `escalator`, `app/`) assembles
//! it with its builtin plugins; this crate links no plugin of its own:
//! `builtin:NAME` plugins are those the caller registers in a
//! [`plugins::Builtins`] given to [`host::start_with`].
//!
//! Layers, each testable alone: [`sip`] (messages), [`transport`] (UDP/TCP),
//! [`transaction`] (RFC 3261 section 17), [`dialog`] and [`b2bua`] (the call
//! model), [`core`] (the event loop that ties them together, one task per
//! [`shard`] of the calls), [`plugins`] (loading, builtins, reload sets),
//! [`host`] (starting, reloading, stopping), [`admin`] (the admin socket).

pub mod admin;
pub mod b2bua;
pub mod compaction;
pub mod config;
pub mod core;
pub mod dialog;
pub mod forward;
pub mod host;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod plugins;
pub mod routing;
pub mod shard;
pub use escalator_sip as sip;
pub mod timers;
pub mod transaction;
pub mod transport;
