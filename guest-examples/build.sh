#!/usr/bin/env bash
# Builds every guest component for wasm32-wasip2 (release), one cargo
# invocation per guest: each enables its own weir-sdk world feature, and one
# build unifying them would embed every world into every guest.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
guests=$(cargo metadata --format-version 1 --no-deps \
  | python3 -c 'import json,sys; print(" ".join(p["name"] for p in json.load(sys.stdin)["packages"] if "/guest-examples/" in p["manifest_path"] or "/benches/guests/" in p["manifest_path"]))')
for guest in $guests; do
  cargo build --locked --quiet --release --target wasm32-wasip2 -p "$guest"
done
echo "built guests: $guests"
