//! Plugins: loading shared libraries through the versioned C ABI, and the
//! set of instances a call is served by.
//!
//! Builtin plugins (`builtin:NAME`) are whatever the embedding binary
//! registered in a [`Builtins`]; the host keeps that registry so reloads
//! resolve the same names.
//!
//! Reload model: a reload builds a new [`PluginSet`] (fresh instances, and
//! fresh copies of the libraries, so a replaced `.so` file is really loaded
//! again). New calls use the newest set; a call keeps the set it started
//! with until its last leg is released, and the old instances and libraries
//! are dropped when no call uses them any more.

mod builtins;
mod loader;

pub use builtins::{BuiltinNames, Builtins};
pub use loader::{load, LoadedPlugin, PluginLoadError};

use escalator_plugin_api::host::CallError;
use escalator_plugin_api::{Decision, Event, HookInput};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// One plugin of a set, with its failure bookkeeping.
pub struct PluginSlot {
    pub name: String,
    pub version: String,
    interests: u32,
    plugin: Mutex<LoadedPlugin>,
    /// Consecutive failures before the plugin is disabled; 0 = never.
    threshold: u32,
    failures: Mutex<u32>,
    disabled: std::sync::atomic::AtomicBool,
}

#[derive(Debug)]
pub enum SlotError {
    Disabled,
    Call(CallError),
}

impl PluginSlot {
    pub fn new(plugin: LoadedPlugin, threshold: u32) -> Self {
        PluginSlot {
            name: plugin.name.clone(),
            version: plugin.version.clone(),
            interests: plugin.interests,
            plugin: Mutex::new(plugin),
            threshold,
            failures: Mutex::new(0),
            disabled: Default::default(),
        }
    }

    /// Whether the plugin wants calls of this `INTEREST_*` kind.
    pub fn wants(&self, interest: u32) -> bool {
        self.interests & interest != 0 && !self.is_disabled()
    }

    pub fn is_disabled(&self) -> bool {
        self.disabled.load(Ordering::Relaxed)
    }

    pub fn on_message(&self, input: &HookInput) -> Result<Decision, SlotError> {
        self.guarded(|p| p.instance.on_message(input))
    }

    pub fn on_event(&self, event: &Event) -> Result<Decision, SlotError> {
        self.guarded(|p| p.instance.on_event(event))
    }

    fn guarded(
        &self,
        call: impl FnOnce(&mut LoadedPlugin) -> Result<Decision, CallError>,
    ) -> Result<Decision, SlotError> {
        if self.is_disabled() {
            return Err(SlotError::Disabled);
        }
        let result = {
            let mut p = self.plugin.lock().unwrap_or_else(|e| e.into_inner());
            call(&mut p)
        };
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(d) => {
                *failures = 0;
                Ok(d)
            }
            Err(e) => {
                *failures += 1;
                metrics::counter!(crate::metrics::PLUGIN_FAILURES, "plugin" => self.name.clone())
                    .increment(1);
                if self.threshold > 0 && *failures >= self.threshold {
                    self.disabled.store(true, Ordering::Relaxed);
                    tracing::error!(plugin = %self.name, failures = *failures, "plugin disabled after repeated failures");
                    metrics::gauge!(crate::metrics::PLUGIN_DISABLED, "plugin" => self.name.clone())
                        .set(1.0);
                }
                Err(SlotError::Call(e))
            }
        }
    }
}

/// The plugins in configured order, as loaded by one (re)load.
pub struct PluginSet {
    pub generation: u64,
    pub plugins: Vec<PluginSlot>,
}

static GENERATION: AtomicU64 = AtomicU64::new(0);

impl PluginSet {
    pub fn empty() -> Self {
        PluginSet {
            generation: 0,
            plugins: Vec::new(),
        }
    }

    /// Load every configured plugin, `builtin:NAME` ones from `builtins`;
    /// the first failure refuses the whole set (a reload that fails keeps
    /// the running set).
    pub fn load(
        configs: &[crate::config::PluginConfig],
        builtins: &Builtins,
    ) -> Result<PluginSet, PluginLoadError> {
        let mut plugins = Vec::new();
        for c in configs {
            let text = toml::to_string(&c.config).unwrap_or_default();
            let p = load(&c.path, &text, builtins)?;
            tracing::info!(plugin = %p.name, version = %p.version, path = %c.path.display(), "plugin loaded");
            plugins.push(PluginSlot::new(p, c.failure_threshold));
        }
        Ok(PluginSet {
            generation: GENERATION.fetch_add(1, Ordering::Relaxed) + 1,
            plugins,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
    }
}
