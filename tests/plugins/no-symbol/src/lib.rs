//! A shared library without the plugin entry symbol.

#[no_mangle]
pub extern "C" fn something_else() -> u32 {
    7
}
