//! The escalation plugin.

pub mod flow;
pub mod invite;
pub mod multipart;
pub mod policy;
pub mod resource_list;
pub mod sdp;
pub mod trigger;
