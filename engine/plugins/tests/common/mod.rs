//! Locating the guest components built by `guest-examples/build.sh`.

#![allow(dead_code)]

use std::path::PathBuf;

/// `target/wasm32-wasip2/release/<crate>.wasm` in the target dir this test
/// binary was built into.
pub fn guest(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> → target
    let target = exe
        .ancestors()
        .nth(3)
        .expect("target dir above the test binary")
        .to_path_buf();
    let path = target
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    assert!(
        path.exists(),
        "{} is missing: build the guests first with `bash guest-examples/build.sh`",
        path.display()
    );
    path
}
