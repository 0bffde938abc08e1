//! Writing to Weir's log. Lines land in the server's `tracing` output,
//! tagged with the plugin's name; in native tests they go to stderr.
//!
//! ```
//! weir_sdk::log::info("loaded 12 owners");
//! weir_sdk::log::warn(&format!("unknown service {:?}", "checkout"));
//! ```

#[cfg(target_arch = "wasm32")]
use crate::bindings::weir::plugin::log::{Level, log};

#[cfg(target_arch = "wasm32")]
fn write(level: Level, message: &str) {
    log(level, message);
}

#[cfg(not(target_arch = "wasm32"))]
fn write(level: &str, message: &str) {
    eprintln!("[plugin {level}] {message}");
}

macro_rules! level_fns {
    ($($name:ident => $level:ident),*) => {$(
        pub fn $name(message: &str) {
            #[cfg(target_arch = "wasm32")]
            write(Level::$level, message);
            #[cfg(not(target_arch = "wasm32"))]
            write(stringify!($name), message);
        }
    )*};
}

level_fns!(trace => Trace, debug => Debug, info => Info, warn => Warn, error => Error);
