//! Loading one plugin: dlopen its shared library (or look up a registered
//! builtin), check its ABI, create its instance.

use super::builtins::{BuiltinNames, Builtins, PREFIX as BUILTIN_PREFIX};
use escalator_plugin_api::host::{CallError, Descriptor, Instance, LoadError};
use escalator_plugin_api::{EntryFn, ENTRY_SYMBOL};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum PluginLoadError {
    #[error("plugin {path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("plugin {path}: cannot load library: {source}")]
    Open {
        path: PathBuf,
        source: libloading::Error,
    },
    #[error("plugin {path}: no `{symbol}` symbol: not an escalator plugin ({source})")]
    MissingSymbol {
        path: PathBuf,
        symbol: &'static str,
        source: libloading::Error,
    },
    #[error("plugin {path}: {source}")]
    Abi { path: PathBuf, source: LoadError },
    #[error("no builtin plugin named {name:?} (builtin: {known})")]
    UnknownBuiltin { name: String, known: BuiltinNames },
    #[error("plugin {name} ({path}): refused its configuration: {source}")]
    Create {
        path: PathBuf,
        name: String,
        source: CallError,
    },
}

/// A loaded plugin: the instance is declared before the library so it is
/// destroyed while the library's code is still mapped.
pub struct LoadedPlugin {
    pub name: String,
    pub version: String,
    /// `INTEREST_*` bits the plugin declared.
    pub interests: u32,
    pub instance: Instance,
    /// None for plugins linked into the binary (`builtin:NAME`).
    _library: Option<libloading::Library>,
}

static COPIES: AtomicU64 = AtomicU64::new(0);

/// dlopen returns the already-loaded library for a path it has seen, so a
/// replaced file would never be picked up. Each load uses its own copy.
fn private_copy(path: &Path) -> Result<PathBuf, PluginLoadError> {
    let dir = std::env::temp_dir().join("escalator-plugins");
    let read_err = |source| PluginLoadError::Read {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(read_err)?;
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin.so".into());
    let n = COPIES.fetch_add(1, Ordering::Relaxed);
    let copy = dir.join(format!("{}-{n}-{file}", std::process::id()));
    std::fs::copy(path, &copy).map_err(read_err)?;
    Ok(copy)
}

/// Load the plugin at `path` (a shared library, or `builtin:NAME` looked up
/// in `builtins`) and create its instance from `config` (TOML text).
pub fn load(
    path: &Path,
    config: &str,
    builtins: &Builtins,
) -> Result<LoadedPlugin, PluginLoadError> {
    if let Some(name) = path.to_str().and_then(|p| p.strip_prefix(BUILTIN_PREFIX)) {
        let entry = builtins
            .get(name)
            .ok_or_else(|| PluginLoadError::UnknownBuiltin {
                name: name.to_string(),
                known: builtins.names(),
            })?;
        return instantiate(path, entry, config, None);
    }
    let copy = private_copy(path)?;
    // SAFETY: loading runs the library's initialisers; plugins are trusted
    // code chosen by the operator's configuration.
    let opened = unsafe { libloading::Library::new(&copy) };
    // The mapping stays valid after the file is gone.
    let _ = std::fs::remove_file(&copy);
    let library = opened.map_err(|source| PluginLoadError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    // SAFETY: the symbol's type is fixed by the ABI.
    let entry: EntryFn = unsafe {
        *library
            .get::<EntryFn>(ENTRY_SYMBOL.as_bytes())
            .map_err(|source| PluginLoadError::MissingSymbol {
                path: path.to_path_buf(),
                symbol: ENTRY_SYMBOL,
                source,
            })?
    };
    instantiate(path, entry, config, Some(library))
}

fn instantiate(
    path: &Path,
    entry: EntryFn,
    config: &str,
    library: Option<libloading::Library>,
) -> Result<LoadedPlugin, PluginLoadError> {
    // SAFETY: the library (or, for a builtin, the binary) outlives the
    // descriptor and the instance: they live in the same struct.
    let descriptor =
        unsafe { Descriptor::from_entry(entry) }.map_err(|source| PluginLoadError::Abi {
            path: path.to_path_buf(),
            source,
        })?;
    let instance = descriptor
        .create(config)
        .map_err(|source| PluginLoadError::Create {
            path: path.to_path_buf(),
            name: descriptor.name.clone(),
            source,
        })?;
    Ok(LoadedPlugin {
        interests: descriptor.interests(),
        name: descriptor.name,
        version: descriptor.version,
        instance,
        _library: library,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use escalator_plugin_api::PluginDescriptor;

    unsafe extern "C" fn never_called() -> *const PluginDescriptor {
        std::ptr::null()
    }

    fn unknown(builtins: &Builtins) -> String {
        match load(Path::new("builtin:nope"), "", builtins) {
            Err(e @ PluginLoadError::UnknownBuiltin { .. }) => e.to_string(),
            Err(e) => panic!("unexpected error: {e}"),
            Ok(p) => panic!("loaded {}", p.name),
        }
    }

    #[test]
    fn an_unknown_builtin_is_refused_with_the_registered_names() {
        assert_eq!(
            unknown(&Builtins::none()),
            "no builtin plugin named \"nope\" (builtin: none)"
        );
        let b = Builtins::none()
            .with("recording", never_called)
            .with("audit", never_called);
        assert_eq!(
            unknown(&b),
            "no builtin plugin named \"nope\" (builtin: audit, recording)"
        );
    }
}
