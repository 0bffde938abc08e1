//! Builds `filter.c` into a Weir filter component, from nothing but what
//! the package registries offer: C bindings generated from `sdk/wit` by
//! `wit-bindgen-c` (crates.io), Debian's `clang`, `lld` and `wasi-libc` for
//! the core module, and `wit-component` (crates.io) to wrap it as a
//! component. The WIT is the contract; this guest never sees `weir-sdk`.
//!
//! Usage: `c-filter-build OUT.wasm`

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let out: PathBuf = std::env::args_os()
        .nth(1)
        .context("usage: c-filter-build OUT.wasm")?
        .into();
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = out.with_extension("build");
    std::fs::create_dir_all(&work)?;

    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve.push_dir(here.join("../../sdk/wit"))?;
    let world = resolve.select_world(&[package], Some("filter-plugin"))?;
    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world, &mut files)?;
    let mut sources = vec![here.join("filter.c")];
    for (name, contents) in files.iter() {
        let path = work.join(name);
        std::fs::write(&path, contents)?;
        if name.ends_with(".c") || name.ends_with(".o") {
            sources.push(path);
        }
    }

    let core = work.join("filter.core.wasm");
    let status = Command::new("clang")
        .args([
            "--target=wasm32-wasi",
            "-O2",
            "-mexec-model=reactor",
            "-Wall",
            "-Werror",
        ])
        .arg("-I")
        .arg(&work)
        .args(&sources)
        .args(["-Wl,--gc-sections", "-o"])
        .arg(&core)
        .status()
        .context(
            "running clang (Debian: apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32)",
        )?;
    if !status.success() {
        bail!("clang failed: {status}");
    }

    let module = std::fs::read(&core)?;
    let component = wit_component::ComponentEncoder::default()
        .module(&module)?
        .validate(true)
        .encode()
        .context("componentizing the core module")?;
    std::fs::write(&out, component)?;
    println!("built {}", out.display());
    Ok(())
}
