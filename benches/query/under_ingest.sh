#!/usr/bin/env bash
# The reference uptime query idle and during full-speed ingest, over the
# same stored rows, at each ingest nice value in NICES:
#
#   1. ROWS rows (1,000 services, the 24 h before an hour boundary NOW),
#      written once and persisted; NOW is fixed, so every query reads them.
#   2. For each nice value: a fresh `weir serve --ingest-nice N` on that data
#      directory; the query idle (median of QUERY_RUNS, after one untimed
#      run); then loadgen at full speed (STREAMS × BATCH_ROWS-row batches,
#      IN_FLIGHT each) for LOAD_SECONDS, writing rows stamped days before
#      the query's window, so the query reads the same rows as idle (files
#      and buffered batches outside the window are pruned); after WARMUP
#      seconds of load, the query again. Prints both medians, their ratio,
#      each run's time, whether the answers matched, and the load's acked
#      rows/s and longest ack gap. NICES may repeat a value ("10 19 10 19")
#      to see the spread between server runs.
#
# loadgen shares the two cores with the server here, as remote clients
# would not; CLIENT_NICE (default 0) runs it at another nice value.
#
#   BIN_DIR=target/release bash benches/query/under_ingest.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

ROWS=${ROWS:-10000000}
NICES=${NICES:-0 10 19}
QUERY_RUNS=${QUERY_RUNS:-5}
LOAD_SECONDS=${LOAD_SECONDS:-45}
WARMUP=${WARMUP:-10}
STREAMS=${STREAMS:-8}
BATCH_ROWS=${BATCH_ROWS:-50000}
IN_FLIGHT=${IN_FLIGHT:-8}
CLIENT_NICE=${CLIENT_NICE:-0}
WORK=$(mktemp -d /tmp/weir-under-ingest.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; sleep 1; rm -rf "$WORK"' EXIT

if [ -n "${BIN_DIR:-}" ]; then
  BIN=$BIN_DIR
else
  cargo build --release -p weir -p weir-benches --bins >&2
  BIN=${CARGO_TARGET_DIR:-target}/release
fi
HOUR_NS=3600000000000
END_NS=$(( $(date +%s) / 3600 * 3600 * 1000000000 ))
NOW=$(date -u -d "@$((END_NS / 1000000000))" +%Y-%m-%dT%H:%M:%SZ)
HTTP=http://127.0.0.1:58087
GRPC=http://127.0.0.1:50552

start_weir() { # nice
  "$BIN/weir" serve --data-dir "$WORK/data" --grpc-listen 127.0.0.1:50552 --http-listen 127.0.0.1:58087 \
    --time-column service_metrics=recorded_at --ingest-nice "$1" --log-filter warn \
    >>"$WORK/weir.out" 2>>"$WORK/weir.log" &
  WEIR_PID=$!
  for _ in $(seq 300); do curl -sf "$HTTP/health/ready" >/dev/null && return; sleep 0.1; done
  cat "$WORK/weir.log" >&2; exit 1
}
stop_weir() { kill -TERM "$WEIR_PID"; wait "$WEIR_PID" || true; }
query() { # -> peers.py's JSON line: median_s and each run's times_s
  python3 benches/compare/peers.py weir-query "$HTTP" tests/sql/reference_uptime.sql "$QUERY_RUNS" "$NOW"
}
field() { # json, key
  python3 -c 'import json, sys; print(json.dumps(json.loads(sys.argv[1])[sys.argv[2]]))' "$1" "$2"
}

start_weir 0
echo "{\"load\": \"stored\", \"result\": $("$BIN/loadgen" --grpc "$GRPC" --rows "$ROWS" --span-hours 24 --end-ns "$END_NS")}"
curl -sf -X POST "$HTTP/api/v1/persist" >/dev/null
stop_weir

for nice in $NICES; do
  start_weir "$nice"
  query >/dev/null # untimed: warms the page cache and the catalog
  idle=$(query)
  # Rows three days before the window, so the query's rows stay the same.
  nice -n "$CLIENT_NICE" "$BIN/loadgen" --grpc "$GRPC" --streams "$STREAMS" --batch-rows "$BATCH_ROWS" \
    --in-flight "$IN_FLIGHT" --rows 10000000000 --seconds "$LOAD_SECONDS" --span-hours 24 \
    --end-ns $((END_NS - 72 * HOUR_NS)) >"$WORK/load.json" &
  client=$!
  sleep "$WARMUP"
  busy=$(query)
  wait "$client"
  load=$(cat "$WORK/load.json")
  idle_s=$(field "$idle" median_s) busy_s=$(field "$busy" median_s)
  echo "{\"ingest_nice\": $nice, \"client_nice\": $CLIENT_NICE, \"query_idle_s\": $idle_s, \"query_during_ingest_s\": $busy_s, \"ratio\": $(awk -v a="$busy_s" -v b="$idle_s" 'BEGIN {printf "%.2f", a / b}'), \"idle_runs_s\": $(field "$idle" times_s), \"during_ingest_runs_s\": $(field "$busy" times_s), \"answers_match\": $([ "$(field "$idle" answer_digest)" = "$(field "$busy" answer_digest)" ] && echo true || echo false), \"ingest_rows_per_sec\": $(field "$load" rows_per_sec), \"longest_ack_gap_ms\": $(field "$load" longest_ack_gap_ms)}"
  stop_weir
done
grep -E 'WARN|ERROR' "$WORK/weir.log" | head -5 || true
