#!/usr/bin/env bash
# Where the reference query's time goes. ROWS service_metrics rows (1,000
# services over one day) are loaded with loadgen and persisted to Parquet
# (BUFFERED=1 leaves them in the write buffer instead); then
#   1. EXPLAIN ANALYZE of the reference query: time per operator;
#   2. `perf record` of the server while it answers the query RUNS times:
#      the symbols with the most self time (flat: release builds have no
#      frame pointers).
# NOW() is fixed at the data's end. Prints the plan, then perf's table.
# BIN_DIR: prebuilt binaries to profile instead of building.
set -euo pipefail
cd "$(dirname "$0")/../.."

ROWS=${ROWS:-10000000}
RUNS=${RUNS:-5}
BUFFERED=${BUFFERED:-0}
WORK=$(mktemp -d /tmp/weir-profile.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; sleep 1; rm -rf "$WORK"' EXIT

command -v perf >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null
}
if [ -n "${BIN_DIR:-}" ]; then
  BIN=$BIN_DIR # prebuilt `weir` and `loadgen`, e.g. a build from before a change
else
  cargo build --release -p weir -p weir-benches --bins >&2
  BIN=${CARGO_TARGET_DIR:-target}/release
fi
END_NS=$(date +%s%N)
NOW=$(date -u -d "@$((END_NS / 1000000000))" +%Y-%m-%dT%H:%M:%SZ)
URL=http://127.0.0.1:58086

"$BIN/weir" serve --data-dir "$WORK/data" --grpc-listen 127.0.0.1:50551 --http-listen 127.0.0.1:58086 \
  --time-column service_metrics=recorded_at --persist-interval 1h --log-filter warn >"$WORK/weir.out" 2>"$WORK/weir.log" &
WEIR_PID=$!
for _ in $(seq 100); do curl -sf $URL/health/ready >/dev/null && break; sleep 0.1; done
"$BIN/loadgen" --rows "$ROWS" --services 1000 --span-hours 24 --end-ns "$END_NS" --streams 4 \
  --grpc http://127.0.0.1:50551 >&2
[ "$BUFFERED" = 1 ] || curl -sf -X POST $URL/api/v1/persist >/dev/null

SQL=$(sed "s/NOW()/TIMESTAMP '$NOW'/" tests/sql/reference_uptime.sql)
query() { curl -sf -X POST $URL/api/v1/sql --data-binary "$1"; }
query "$SQL" >/dev/null # the files in the page cache
query "EXPLAIN ANALYZE $SQL" | python3 -c '
import json, sys
for row in json.load(sys.stdin):
    print(row["plan"])'

perf record -F 999 -o "$WORK/perf.data" -p "$WEIR_PID" 2>/dev/null &
PERF_PID=$!
sleep 1
start=$(date +%s.%N)
for _ in $(seq "$RUNS"); do query "$SQL" >/dev/null; done
end=$(date +%s.%N)
kill -INT "$PERF_PID"; wait "$PERF_PID" || true
echo "{\"runs\": $RUNS, \"mean_s\": $(python3 -c "print(round(($end - $start) / $RUNS, 4))")}"
perf report -i "$WORK/perf.data" --no-children --sort symbol --percent-limit 0.7 --stdio 2>/dev/null |
  grep -v '^#' | grep -v '^$' | cut -c1-160
