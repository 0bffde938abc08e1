#!/usr/bin/env bash
# Ingest protocols side by side in one run on this machine, the same
# service_metrics rows (benches/src/lib.rs) for every system:
#   - line protocol, 5,000-line bodies POSTed by the same client
#     (benches/compare/peers.py, WRITERS threads) to Weir's /write (WAL
#     fsync before every ack, the default) and VictoriaMetrics' /write
#     (Debian victoria-metrics; acks from memory, flushes about every
#     second; stores numeric fields only);
#   - Prometheus remote write 1.0, 5,000 series of one sample per request,
#     snappy, by the same generator (remote_write bin, WRITERS clients) to
#     Weir's /api/v1/prom/write and VictoriaMetrics' /api/v1/write;
#   - for reference, the same rows into Weir over gRPC WriteStream (loadgen).
# Median of RUNS runs each, fresh data directories every run.
# Installs VictoriaMetrics from Debian if missing. Prints JSON lines.
set -euo pipefail
cd "$(dirname "$0")/../.."

ROWS=${ROWS:-2000000}
RUNS=${RUNS:-3}
WRITERS=${WRITERS:-4}
WORK=$(mktemp -d /tmp/weir-protocols.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; sleep 1; rm -rf "$WORK"' EXIT

command -v victoria-metrics >/dev/null ||
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq victoria-metrics >/dev/null; }

cargo build --release -p weir -p weir-benches --bins >&2
BIN=${CARGO_TARGET_DIR:-target}/release
END_NS=$(date +%s%N)
LOADGEN="$BIN/loadgen --services 1000 --span-hours 24 --end-ns $END_NS --streams $WRITERS"
REMOTE_WRITE="$BIN/remote_write --rows $ROWS --writers $WRITERS --end-ns $END_NS"
$LOADGEN --rows "$ROWS" --emit-line-protocol "$WORK/rows.lp" --emit-csv "$WORK/rows.csv"

wait_for() { # url
  for _ in $(seq 200); do curl -sf "$1" >/dev/null && return; sleep 0.1; done
  echo "$1 did not come up" >&2; exit 1
}
start_weir() { # data dir
  "$BIN/weir" serve --data-dir "$1" --grpc-listen 127.0.0.1:50551 --http-listen 127.0.0.1:58086 \
    --time-column service_metrics=recorded_at --persist-interval 1h --log-filter warn >"$1.out" 2>"$1.log" &
  PID=$!
  wait_for http://127.0.0.1:58086/health/ready
}
stop() { kill -TERM "$PID"; wait "$PID" || true; }

for run in $(seq "$RUNS"); do
  start_weir "$WORK/weir-lp-$run"
  python3 benches/compare/peers.py line-protocol weir-line-protocol \
    "http://127.0.0.1:58086/write?precision=ns" "$WORK/rows.lp" "$ROWS" "$WRITERS"
  echo "{\"check\": \"weir rows stored\", \"rows\": $(curl -sf http://127.0.0.1:58086/api/v1/sql \
    -d 'SELECT COUNT(*) AS n FROM service_metrics' | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["n"])')}"
  stop

  victoria-metrics -storageDataPath "$WORK/vm-$run" -httpListenAddr 127.0.0.1:58428 \
    -retentionPeriod 100y >"$WORK/vm-$run.log" 2>&1 &
  PID=$!
  wait_for http://127.0.0.1:58428/health
  python3 benches/compare/peers.py line-protocol victoria-metrics \
    "http://127.0.0.1:58428/write?precision=ns" "$WORK/rows.lp" "$ROWS" "$WRITERS"
  stop

  start_weir "$WORK/weir-rw-$run"
  $REMOTE_WRITE --system weir-remote-write --url http://127.0.0.1:58086/api/v1/prom/write
  stop

  victoria-metrics -storageDataPath "$WORK/vm-rw-$run" -httpListenAddr 127.0.0.1:58428 \
    -retentionPeriod 100y >"$WORK/vm-rw-$run.log" 2>&1 &
  PID=$!
  wait_for http://127.0.0.1:58428/health
  $REMOTE_WRITE --system victoria-metrics-remote-write --url http://127.0.0.1:58428/api/v1/write
  stop

  start_weir "$WORK/weir-grpc-$run"
  echo "{\"system\": \"weir-grpc-writestream\", \"run\": $run, \"result\": $($LOADGEN --rows "$ROWS" --grpc http://127.0.0.1:50551)}"
  stop
done
