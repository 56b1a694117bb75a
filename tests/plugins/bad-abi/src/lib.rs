//! Exports the entry symbol, but its descriptor claims ABI version 99: the
//! host must refuse it after reading only that first field.

#[repr(C)]
pub struct FutureDescriptor {
    pub abi_version: u32,
}

static DESCRIPTOR: FutureDescriptor = FutureDescriptor { abi_version: 99 };

/// # Safety
/// Returns a pointer to a static.
#[no_mangle]
pub extern "C" fn escalator_plugin_entry() -> *const FutureDescriptor {
    &DESCRIPTOR
}
