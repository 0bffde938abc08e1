#!/usr/bin/env bash
# Query front ends side by side on one Weir: the reference uptime query and
# a 1,000,000-row answer (`SELECT *`), over HTTP (JSON), Arrow Flight SQL
# (ADBC) and the Postgres wire protocol (psycopg), timed from a Python client. ROWS service_metrics rows (1,000
# services over 24 hours) are loaded with loadgen first. Prints JSON lines.
set -euo pipefail
cd "$(dirname "$0")/../.."

ROWS=${ROWS:-1000000}
RUNS=${RUNS:-5}
WORK=$(mktemp -d /tmp/weir-frontends.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; sleep 1; rm -rf "$WORK"' EXIT

python3 -c 'import adbc_driver_flightsql.dbapi' 2>/dev/null ||
  python3 -m pip install --quiet 'adbc-driver-flightsql>=1.1,<2' 'adbc-driver-manager>=1.1,<2'
python3 -c 'import psycopg' 2>/dev/null || python3 -m pip install --quiet 'psycopg[binary]>=3.1,<4'
cargo build --release -p weir -p weir-benches --bins >&2
BIN=${CARGO_TARGET_DIR:-target}/release

"$BIN/weir" serve --data-dir "$WORK/data" --grpc-listen 127.0.0.1:50551 --http-listen 127.0.0.1:58086 \
  --pg-listen 127.0.0.1:55433 --time-column service_metrics=recorded_at --log-filter warn >"$WORK/weir.out" 2>"$WORK/weir.log" &
for _ in $(seq 200); do curl -sf http://127.0.0.1:58086/health/ready >/dev/null && break; sleep 0.1; done
"$BIN/loadgen" --rows "$ROWS" --services 1000 --span-hours 24 --streams 4 \
  --grpc http://127.0.0.1:50551 >/dev/null
python3 benches/query/frontends.py http://127.0.0.1:58086 grpc://127.0.0.1:50551 \
  127.0.0.1:55433 tests/sql/reference_uptime.sql "$RUNS"
