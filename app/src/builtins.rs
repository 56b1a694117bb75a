//! The plugins linked into the `escalator` binary, offered to the host as
//! `builtin:NAME` (and so also on every reload). To link another one, depend
//! on its crate and add its entry function to [`LINKED`].

use escalator_host::plugins::Builtins;
use escalator_plugin_api::EntryFn;

/// Every builtin plugin: the name used in `builtin:NAME`, and its entry.
pub const LINKED: &[(&str, EntryFn)] = &[(
    "escalation",
    escalator_escalation::escalator_plugin_entry as EntryFn,
)];

/// The registry the host is started with.
pub fn all() -> Builtins {
    LINKED
        .iter()
        .fold(Builtins::none(), |b, &(name, entry)| b.with(name, entry))
}

#[cfg(test)]
mod tests {
    use super::*;
    use escalator_plugin_api::host::Descriptor;

    #[test]
    fn each_builtin_is_the_plugin_of_its_name() {
        assert_eq!(all().names().0, ["escalation"]);
        for &(name, entry) in LINKED {
            // SAFETY: the entry is linked into this binary and outlives the
            // descriptor.
            let d = unsafe { Descriptor::from_entry(entry) }.expect("ABI check");
            assert_eq!(d.name, name);
        }
    }
}
