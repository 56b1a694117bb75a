//! Typed ids of the entities layer. Each is unique across the host's shards
//! (see [`crate::shard::IdSeq`]) and never 0, so the plugin API's "0 = none"
//! only exists at that boundary.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

id_type!(
    /// A server transaction (a request the host received).
    ServerTxId
);
id_type!(
    /// A client transaction (a request the host sent).
    ClientTxId
);
id_type!(
    /// A leg: one dialog the host holds with one peer.
    LegId
);
id_type!(
    /// A call: the legs the host relays between.
    CallRef
);
