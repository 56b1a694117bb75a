//! The host side of the ABI: check a descriptor, create instances, call them.
//! Finding the entry symbol (dlopen) is the host's job; this module starts
//! from the entry function.

use crate::{
    Decision, DecodeError, EntryFn, EscBuf, EscSlice, Event, HookInput, PluginDescriptor,
    ABI_VERSION, STATUS_OK, STATUS_PANIC,
};
use std::ffi::c_void;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    NullDescriptor,
    AbiMismatch { host: u32, plugin: u32 },
    BadName,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::NullDescriptor => write!(f, "entry symbol returned no descriptor"),
            LoadError::AbiMismatch { host, plugin } => write!(
                f,
                "plugin ABI version {plugin} is not supported: this host speaks ABI version {host}"
            ),
            LoadError::BadName => write!(f, "plugin name or version is not UTF-8"),
        }
    }
}

impl std::error::Error for LoadError {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The plugin returned an error (its message).
    Failed(String),
    /// The plugin panicked; its shim caught the panic.
    Panicked(String),
    /// The plugin's answer could not be decoded.
    BadOutput(DecodeError),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Failed(m) => write!(f, "plugin error: {m}"),
            CallError::Panicked(m) => write!(f, "plugin panicked: {m}"),
            CallError::BadOutput(e) => write!(f, "undecodable plugin answer: {e}"),
        }
    }
}

impl std::error::Error for CallError {}

/// A checked descriptor: name, version and functions.
#[derive(Debug, Clone)]
pub struct Descriptor {
    pub name: String,
    pub version: String,
    raw: PluginDescriptor,
}

impl Descriptor {
    /// Call the entry function and check the descriptor.
    ///
    /// # Safety
    /// `entry` must be a plugin's entry function, from a library that stays
    /// loaded while the descriptor and its instances are used.
    pub unsafe fn from_entry(entry: EntryFn) -> Result<Descriptor, LoadError> {
        let ptr = entry();
        if ptr.is_null() {
            return Err(LoadError::NullDescriptor);
        }
        // Only the first field is read before the version is known to match.
        let version = (ptr as *const u32).read_unaligned();
        if version != ABI_VERSION {
            return Err(LoadError::AbiMismatch {
                host: ABI_VERSION,
                plugin: version,
            });
        }
        let raw: PluginDescriptor = *ptr;
        let text = |s: EscSlice| std::str::from_utf8(s.as_bytes()).map(str::to_string);
        Ok(Descriptor {
            name: text(raw.name).map_err(|_| LoadError::BadName)?,
            version: text(raw.version).map_err(|_| LoadError::BadName)?,
            raw,
        })
    }

    /// The `INTEREST_*` bits the plugin declared.
    pub fn interests(&self) -> u32 {
        self.raw.interests
    }

    pub fn create(&self, config: &str) -> Result<Instance, CallError> {
        let mut instance: *mut c_void = std::ptr::null_mut();
        let mut error = EscBuf::empty();
        // SAFETY: valid pointers to locals; the descriptor was checked.
        let status = unsafe {
            (self.raw.create)(
                EscSlice::from_bytes(config.as_bytes()),
                &mut instance,
                &mut error,
            )
        };
        let message = self.take(error);
        match status {
            STATUS_OK if !instance.is_null() => Ok(Instance {
                raw: self.raw,
                ptr: instance,
            }),
            STATUS_OK => Err(CallError::Failed("create returned no instance".into())),
            STATUS_PANIC => Err(CallError::Panicked(text_of(&message))),
            _ => Err(CallError::Failed(text_of(&message))),
        }
    }

    fn take(&self, buf: EscBuf) -> Vec<u8> {
        take_buf(&self.raw, buf)
    }
}

fn take_buf(raw: &PluginDescriptor, buf: EscBuf) -> Vec<u8> {
    if buf.ptr.is_null() {
        return Vec::new();
    }
    // SAFETY: the plugin filled `buf`; we copy it, then give it back to be freed once.
    let copy = unsafe { std::slice::from_raw_parts(buf.ptr, buf.len).to_vec() };
    unsafe { (raw.free_buf)(buf) };
    copy
}

fn text_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// One plugin instance. Dropping it destroys the instance; the library must
/// outlive it.
pub struct Instance {
    raw: PluginDescriptor,
    ptr: *mut c_void,
}

// SAFETY: the ABI contract: an instance may be called from any thread, one at a time.
unsafe impl Send for Instance {}

impl Instance {
    pub fn on_message(&mut self, input: &HookInput) -> Result<Decision, CallError> {
        self.call(self.raw.on_message, &input.encode())
    }

    pub fn on_event(&mut self, event: &Event) -> Result<Decision, CallError> {
        self.call(self.raw.on_event, &event.encode())
    }

    fn call(&mut self, f: crate::CallFn, input: &[u8]) -> Result<Decision, CallError> {
        let mut out = EscBuf::empty();
        // SAFETY: live instance, valid input slice and output location.
        let status = unsafe { f(self.ptr, EscSlice::from_bytes(input), &mut out) };
        let bytes = take_buf(&self.raw, out);
        match status {
            STATUS_OK => Decision::decode(&bytes).map_err(CallError::BadOutput),
            STATUS_PANIC => Err(CallError::Panicked(text_of(&bytes))),
            _ => Err(CallError::Failed(text_of(&bytes))),
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // SAFETY: created by this descriptor's create, destroyed once.
        unsafe { (self.raw.destroy)(self.ptr) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{export_plugin, Action, HookKind, MessageContext, Plugin};

    struct Echo {
        prefix: String,
    }

    impl Plugin for Echo {
        fn create(config: &str) -> Result<Self, String> {
            if config.contains("refuse") {
                return Err("refused by config".into());
            }
            Ok(Echo {
                prefix: config.trim().to_string(),
            })
        }
        fn on_request(&mut self, input: &HookInput) -> Decision {
            if input.message.starts_with(b"PANIC") {
                panic!("asked to panic");
            }
            Decision::Handled(vec![Action::Log {
                level: crate::LogLevel::Info,
                text: format!("{} {}", self.prefix, input.context.call),
            }])
        }
        fn on_event(&mut self, event: &Event) -> Decision {
            match event {
                Event::Timer { token } => Decision::ContinueWith(vec![Action::SetTimer {
                    token: token + 1,
                    after_ms: 5,
                }]),
                _ => Decision::Continue,
            }
        }
    }

    export_plugin!(Echo, "echo", "0.1.0");

    fn input(msg: &[u8]) -> HookInput {
        HookInput {
            kind: HookKind::Request,
            context: MessageContext {
                call: 7,
                ..Default::default()
            },
            message: msg.to_vec(),
        }
    }

    #[test]
    fn loads_calls_and_round_trips_through_the_c_abi() {
        let d = unsafe { Descriptor::from_entry(escalator_plugin_entry) }.unwrap();
        assert_eq!((d.name.as_str(), d.version.as_str()), ("echo", "0.1.0"));
        let mut i = d.create("hello").unwrap();
        assert_eq!(
            i.on_message(&input(b"REFER sip:x SIP/2.0")).unwrap(),
            Decision::Handled(vec![Action::Log {
                level: crate::LogLevel::Info,
                text: "hello 7".into()
            }])
        );
        assert_eq!(
            i.on_event(&Event::Timer { token: 1 }).unwrap(),
            Decision::ContinueWith(vec![Action::SetTimer {
                token: 2,
                after_ms: 5
            }])
        );
    }

    #[test]
    fn create_errors_and_panics_are_reported_not_propagated() {
        let d = unsafe { Descriptor::from_entry(escalator_plugin_entry) }.unwrap();
        assert_eq!(
            d.create("refuse").err(),
            Some(CallError::Failed("refused by config".into()))
        );
        let mut i = d.create("x").unwrap();
        let err = i.on_message(&input(b"PANIC now")).unwrap_err();
        assert_eq!(err, CallError::Panicked("asked to panic".into()));
        // The instance still answers afterwards.
        assert!(i.on_message(&input(b"OPTIONS")).is_ok());
    }

    unsafe extern "C" fn future_plugin() -> *const PluginDescriptor {
        static V99: u32 = 99;
        &V99 as *const u32 as *const PluginDescriptor
    }

    unsafe extern "C" fn no_plugin() -> *const PluginDescriptor {
        std::ptr::null()
    }

    #[test]
    fn other_abi_versions_are_refused_before_reading_further() {
        let e = unsafe { Descriptor::from_entry(future_plugin) }.unwrap_err();
        assert_eq!(
            e,
            LoadError::AbiMismatch {
                host: ABI_VERSION,
                plugin: 99
            }
        );
        assert!(e
            .to_string()
            .contains(&format!("this host speaks ABI version {ABI_VERSION}")));
        assert_eq!(
            unsafe { Descriptor::from_entry(no_plugin) }.unwrap_err(),
            LoadError::NullDescriptor
        );
    }
}
