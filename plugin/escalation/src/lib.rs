//! The escalation plugin: when a legacy client in a 1-to-1 IM session asks
//! to add users (REFER, multi-target REFER, or the operator's custom
//! request), it creates the ad-hoc conference the way a modern client would,
//! on the client's behalf. See `plugin.rs` for the configuration and
//! `flow.rs` for the procedure.
//!
//! Pure parts, each tested alone: [`policy`] (who, where, how), [`trigger`]
//! (what was asked), [`invite`] (the conference INVITE), [`flow`] (one
//! escalation's state machine), [`addition`] (users added once in the
//! conference). The crate is also an rlib so that the host's
//! `check-policy` command uses the very same policy code.

pub mod addition;
pub mod flow;
pub mod invite;
pub mod multipart;
pub mod plugin;
pub mod policy;
pub mod resource_list;
pub mod sdp;
pub mod trigger;

escalator_plugin_api::export_plugin!(plugin::Escalator, "escalation", env!("CARGO_PKG_VERSION"));
