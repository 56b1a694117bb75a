//! Plugins linked into the binary that embeds the host, named `builtin:NAME`
//! in the configuration. The library knows none of its own: whoever
//! assembles the binary registers them (name → entry function) and hands
//! the registry to [`crate::host::start_with`], which keeps it for reloads.
//! They go through the same C ABI and panic-catching shims as plugins loaded
//! from shared libraries.

use escalator_plugin_api::EntryFn;
use std::collections::BTreeMap;
use std::fmt;

/// The prefix that marks a builtin plugin in a `[[plugins]] path`.
pub const PREFIX: &str = "builtin:";

/// The builtin plugins a host may use, by name.
#[derive(Clone, Default)]
pub struct Builtins {
    entries: BTreeMap<String, EntryFn>,
}

impl Builtins {
    /// No builtins: every plugin must be given as a shared library.
    pub fn none() -> Self {
        Builtins::default()
    }

    /// `self` with `entry` registered as `builtin:NAME`; a name registered
    /// again replaces the earlier entry.
    pub fn with(mut self, name: impl Into<String>, entry: EntryFn) -> Self {
        self.register(name, entry);
        self
    }

    /// Register `entry` as `builtin:NAME`; a name registered again replaces
    /// the earlier entry.
    pub fn register(&mut self, name: impl Into<String>, entry: EntryFn) {
        self.entries.insert(name.into(), entry);
    }

    /// The entry function registered under `name`.
    pub fn get(&self, name: &str) -> Option<EntryFn> {
        self.entries.get(name).copied()
    }

    /// The registered names, sorted.
    pub fn names(&self) -> BuiltinNames {
        BuiltinNames(self.entries.keys().cloned().collect())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl fmt::Debug for Builtins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Builtins").field(&self.names().0).finish()
    }
}

/// The names of the registered builtins, for error messages: shown as
/// `a, b`, or `none` when there are none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltinNames(pub Vec<String>);

impl fmt::Display for BuiltinNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&self.0.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use escalator_plugin_api::PluginDescriptor;

    unsafe extern "C" fn no_plugin() -> *const PluginDescriptor {
        std::ptr::null()
    }

    #[test]
    fn names_are_sorted_and_none_when_empty() {
        assert_eq!(Builtins::none().names().to_string(), "none");
        let b = Builtins::none()
            .with("zeta", no_plugin)
            .with("alpha", no_plugin);
        assert_eq!(b.names().to_string(), "alpha, zeta");
        assert!(b.get("alpha").is_some());
        assert!(b.get("beta").is_none());
    }
}
