//! escalator host: a SIP back-to-back user agent with loadable plugins, as a
//! library. The `escalator` binary (package `escalator`, `app/`) assembles
//! it with its builtin plugins; this crate links no plugin of its own:
//! `builtin:NAME` plugins are those the caller registers in a
//! [`plugins::Builtins`] given to [`host::start_with`].
//!
//! Layers, bottom up; each is testable alone, and only `transport` and
//! `core` do I/O:
//!
//! | module | owns |
//! |---|---|
//! | [`sip`] (crate `escalator-sip`) | message model, parser and stream framing, URIs, header views, [`sip::Method`] |
//! | [`transport`] | UDP (per-peer order kept) and TCP on tokio, size limits, local addresses |
//! | [`transaction`] | RFC 3261 §17 client and server transactions as pure state machines |
//! | [`entities`] | the transaction table, legs and their dialogs, calls, Timer C; input in, transmits and events out |
//! | [`logic`] | the B2BUA on the entities' API: relay, CANCEL/BYE across legs, failures, plugin hooks and actions |
//! | [`core`] | the shard task: transport and timers in, logic, transmits out; stats and control |
//! | [`shard`] | which shard owns a call (Call-ID marks, ids unique across shards) |
//! | [`forward`], [`routing`] | pure rewriting between legs; where a request goes |
//! | [`plugins`] | loading plugins (ABI check, builtins), plugin sets for reload |
//! | [`host`] | starting the transports and shards, reloading, stopping |
//! | [`config`], [`metrics`], [`logging`], [`admin`], [`memory`] | configuration, Prometheus names, tracing, the admin socket, trimming freed memory |
//! | [`timers`], [`compaction`] | the timer queue on tokio's clock; giving table memory back after a peak |

pub mod admin;
pub mod compaction;
pub mod config;
pub mod core;
pub mod entities;
pub use entities::dialog;
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
pub mod timers;
pub mod transaction;
pub mod transport;
