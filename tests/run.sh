#!/usr/bin/env bash
# Sets up everything the tests need on a fresh machine, then builds and runs
# all of Weir's tests: unit, doc and end-to-end (which start the real binary).
# This is the README's test command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

# The DuckDB oracle for the reference query test.
if ! python3 -c 'import duckdb' 2>/dev/null; then
  echo "==> installing the duckdb Python package (test oracle)"
  python3 -m pip install --quiet --disable-pip-version-check 'duckdb>=1.1,<2'
fi

# The official InfluxDB 2 Python client writes line protocol to Weir in
# the protocols' end-to-end test.
if ! python3 -c 'import influxdb_client' 2>/dev/null; then
  echo "==> installing the influxdb-client Python package (line protocol client)"
  python3 -m pip install --quiet --disable-pip-version-check 'influxdb-client>=1.40,<2'
fi

# The OpenTelemetry Python SDK with its OTLP gRPC and HTTP exporters, and
# pyarrow (Flight), export to Weir unmodified in the protocols' test.
if ! python3 -c 'import opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http, pyarrow.flight' 2>/dev/null; then
  echo "==> installing the OpenTelemetry SDK, its OTLP exporters and pyarrow (Python clients)"
  python3 -m pip install --quiet --disable-pip-version-check \
    'opentelemetry-sdk>=1.40,<2' 'opentelemetry-exporter-otlp-proto-grpc>=1.40,<2' \
    'opentelemetry-exporter-otlp-proto-http>=1.40,<2' 'pyarrow>=15'
fi

# ADBC's Flight SQL driver queries Weir unmodified in the protocols' test.
if ! python3 -c 'import adbc_driver_flightsql.dbapi' 2>/dev/null; then
  echo "==> installing ADBC's Flight SQL driver (Python client)"
  python3 -m pip install --quiet --disable-pip-version-check \
    'adbc-driver-flightsql>=1.1,<2' 'adbc-driver-manager>=1.1,<2'
fi

# psycopg 3 (with its own libpq) queries Weir's Postgres port in the
# protocols' test, next to psql (Debian's postgresql-client, below).
if ! python3 -c 'import psycopg' 2>/dev/null; then
  echo "==> installing psycopg (Python Postgres client)"
  python3 -m pip install --quiet --disable-pip-version-check 'psycopg[binary]>=3.1,<4'
fi

# Headless Chromium renders the status page in the monitor's end-to-end
# test; openssl makes its certificates and serves TLS for the probe tests;
# amtool (in Debian's prometheus-alertmanager) manages suppressions through
# Weir's Alertmanager API; prometheus scrapes Weir and posts its alerts to
# that API, and remote-writes what it scrapes to Weir; psql queries Weir's
# Postgres port.
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v openssl >/dev/null || missing+=(openssl)
command -v amtool >/dev/null || missing+=(prometheus-alertmanager)
command -v prometheus >/dev/null || missing+=(prometheus)
command -v psql >/dev/null || missing+=(postgresql-client)
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing ${missing[*]} (Debian)"
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "==> cargo fmt --check"
if rustup component list --installed 2>/dev/null | grep -q '^rustfmt'; then
  cargo fmt --all -- --check
else
  echo "(rustfmt not installed; skipped)"
fi

echo "==> building the weir binary"
cargo build --locked -p weir

# Installs the wasm32-wasip2 target if missing, then builds every guest
# component (guest-examples/, benches/guests/) that the plugin tests load.
echo "==> building the WebAssembly guests"
bash guest-examples/build.sh

echo "==> cargo package weir-sdk (the published plugin SDK must package)"
cargo package --locked --quiet -p weir-sdk --allow-dirty

echo "==> clippy"
if rustup component list --installed 2>/dev/null | grep -q '^clippy'; then
  cargo clippy --locked --workspace --all-targets -- -D warnings
else
  echo "(clippy not installed; skipped)"
fi

echo "==> tests"
cargo test --locked --workspace
