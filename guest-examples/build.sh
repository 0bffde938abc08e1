#!/usr/bin/env bash
# Builds every guest component the tests and benches load:
# - the Rust guests (guest-examples/, benches/guests/) for wasm32-wasip2,
#   release, one cargo invocation per guest: each enables its own weir-sdk
#   world feature, and one build unifying them would embed every world into
#   every guest;
# - the C guest (guest-examples/c-filter), with Debian's clang, lld and
#   wasi-libc, which this installs if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir=${CARGO_TARGET_DIR:-$PWD/target}

rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

guests=$(cargo metadata --locked --format-version 1 --no-deps \
  | python3 -c 'import json,sys; print(" ".join(p["name"] for p in json.load(sys.stdin)["packages"] if ("/guest-examples/" in p["manifest_path"] or "/benches/guests/" in p["manifest_path"]) and any("cdylib" in t["crate_types"] for t in p["targets"])))')
for guest in $guests; do
  cargo build --locked --quiet --release --target wasm32-wasip2 -p "$guest"
done
echo "built Rust guests: $guests"

c_toolchain_ready() {
  command -v clang >/dev/null && command -v wasm-ld >/dev/null \
    && [ -e /usr/lib/wasm32-wasi/libc.a ] \
    && ls /usr/lib/llvm-*/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a >/dev/null 2>&1
}
if ! c_toolchain_ready; then
  echo "==> installing clang, lld and wasi-libc (Debian) for the C guest"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq clang lld wasi-libc libclang-rt-14-dev-wasm32 >/dev/null
fi
mkdir -p "$target_dir/wasm32-wasip2/release"
cargo run --locked --quiet -p c-filter-build -- "$target_dir/wasm32-wasip2/release/c_filter.wasm"
