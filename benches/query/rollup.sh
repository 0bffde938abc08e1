#!/usr/bin/env bash
# The reference uptime query over an hourly rollup against the same query
# over the raw rows, one server, one run:
#
#   1. ROWS rows (1,000 services, the last 24 h), persisted: the raw query
#      (tests/sql/reference_uptime.sql) and the rollup query
#      (tests/sql/reference_uptime_rollup.sql), median of QUERY_RUNS each,
#      through POST /api/v1/sql as an analyst would send them;
#   2. then HISTORY_ROWS more rows spread over the YEAR before (by default
#      one check per service per hour, which fills every hourly bucket of
#      every service, as denser data would), persisted: both queries again.
#   3. ingest cost: INGEST_ROWS rows into a fresh server with the rollup
#      and into one without, alternating, INGEST_RUNS times each.
#
# NOW is fixed at an hour boundary at the data's end, so both queries read
# the same whole hours and their answer digests must match.
#
#   bash benches/query/rollup.sh            # ROWS=10000000 HISTORY_ROWS=8760000
#   BIN_DIR=target/release bash benches/query/rollup.sh   # prebuilt weir + loadgen
set -euo pipefail
cd "$(dirname "$0")/../.."

ROWS=${ROWS:-10000000}
HISTORY_ROWS=${HISTORY_ROWS:-8760000}
QUERY_RUNS=${QUERY_RUNS:-5}
INGEST_ROWS=${INGEST_ROWS:-4000000}
INGEST_RUNS=${INGEST_RUNS:-3}
WRITERS=${WRITERS:-4}
WORK=$(mktemp -d /tmp/weir-rollup.XXXXXX)
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
LOADGEN="$BIN/loadgen --services 1000 --streams $WRITERS"

cat >"$WORK/weir.toml" <<TOML
[tables.service_metrics]
time_column = "recorded_at"
[rollups.service_metrics_1h]
source = "service_metrics"
bucket = "1h"
group_by = ["service_name"]
aggregates = { checks = "count(*)", healthy = "count_if(status = 'healthy')" }
TOML
printf '[tables.service_metrics]\ntime_column = "recorded_at"\n' >"$WORK/plain.toml"
start_weir() { # config, data dir
  "$BIN/weir" serve --config "$1" --data-dir "$2" --grpc-listen 127.0.0.1:50551 \
    --http-listen 127.0.0.1:58086 --persist-interval 1h --log-filter warn >"$2.out" 2>"$2.log" &
  WEIR_PID=$!
  for _ in $(seq 100); do curl -sf http://127.0.0.1:58086/health/ready >/dev/null && return; sleep 0.1; done
  cat "$2.log" >&2; exit 1
}
stop_weir() { kill -TERM "$WEIR_PID"; wait "$WEIR_PID" || true; }
start_weir "$WORK/weir.toml" "$WORK/data"

queries() { # label
  echo "{\"dataset\": \"$1\", \"query\": \"raw\"}"
  python3 benches/compare/peers.py weir-query http://127.0.0.1:58086 tests/sql/reference_uptime.sql "$QUERY_RUNS" "$NOW"
  echo "{\"dataset\": \"$1\", \"query\": \"rollup\"}"
  python3 benches/compare/peers.py weir-query http://127.0.0.1:58086 tests/sql/reference_uptime_rollup.sql "$QUERY_RUNS" "$NOW"
  python3 - "$WORK/data" "$1" <<'PY'
import json, os, sys
d, label = sys.argv[1], sys.argv[2]
tables = json.load(open(os.path.join(d, "catalog.json")))["tables"]
out = {"dataset": label}
for name in ("service_metrics", "service_metrics_1h"):
    files = tables[name]["files"]
    out[name] = {"files": len(files), "rows": sum(f["rows"] for f in files),
                 "bytes": sum(os.path.getsize(os.path.join(d, f["path"])) for f in files)}
print(json.dumps(out))
PY
}

echo "{\"load\": \"day\", \"result\": $($LOADGEN --rows "$ROWS" --span-hours 24 --end-ns "$END_NS" --grpc http://127.0.0.1:50551)}"
curl -sf -X POST http://127.0.0.1:58086/api/v1/persist >/dev/null
queries "day: $ROWS rows"

echo "{\"load\": \"year before\", \"result\": $($LOADGEN --rows "$HISTORY_ROWS" --span-hours 8760 --end-ns $((END_NS - 24 * HOUR_NS)) --grpc http://127.0.0.1:50551)}"
curl -sf -X POST http://127.0.0.1:58086/api/v1/persist >/dev/null
queries "day + year: $((ROWS + HISTORY_ROWS)) rows"
grep -i "rollup\|error" "$WORK/data.log" | head -5 || true
stop_weir

for run in $(seq "$INGEST_RUNS"); do
  for variant in plain weir; do
    start_weir "$WORK/$variant.toml" "$WORK/ingest-$variant-$run"
    echo "{\"ingest\": \"$variant\", \"run\": $run, \"result\": $($LOADGEN --rows "$INGEST_ROWS" --span-hours 24 --end-ns "$END_NS" --grpc http://127.0.0.1:50551)}"
    stop_weir
    rm -rf "$WORK/ingest-$variant-$run"
  done
done
