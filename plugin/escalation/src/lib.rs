//! The escalation plugin.

pub mod policy;
