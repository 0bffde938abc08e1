#!/usr/bin/env bash
# Arrow Flight DoPut against the native gRPC WriteStream, side by side in
# one run: the same service_metrics rows (benches/src/lib.rs), the same
# streams, batch size and batches in flight, into a fresh Weir each time
# (WAL fsync before every ack, the default). loadgen sends weir.v1
# requests; flight_put sends Arrow record batches built from the same rows;
# otlp_metrics sends the same rows as OTLP/gRPC gauge points (one
# response_ms point per row), WRITERS=STREAMS unary clients.
# The three alternate, RUNS times each. Prints JSON lines.
set -euo pipefail
cd "$(dirname "$0")/../.."

ROWS=${ROWS:-2000000}
RUNS=${RUNS:-5}
STREAMS=${STREAMS:-4}
BATCH_ROWS=${BATCH_ROWS:-5000}
IN_FLIGHT=${IN_FLIGHT:-8}
WORK=$(mktemp -d /tmp/weir-flight.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; sleep 1; rm -rf "$WORK"' EXIT

cargo build --release -p weir -p weir-benches --bins >&2
BIN=${CARGO_TARGET_DIR:-target}/release
END_NS=$(date +%s%N)
COMMON="--rows $ROWS --services 1000 --span-hours 24 --end-ns $END_NS --streams $STREAMS \
  --batch-rows $BATCH_ROWS --in-flight $IN_FLIGHT --grpc http://127.0.0.1:50551"

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
stored() { # table
  curl -sf http://127.0.0.1:58086/api/v1/sql -d "SELECT COUNT(*) AS n FROM $1" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["n"])'
}
stop() { kill -TERM "$PID"; wait "$PID" || true; }

for run in $(seq "$RUNS"); do
  for system in writestream flight otlp; do
    start_weir "$WORK/$system-$run"
    table=service_metrics
    [ "$system" = otlp ] && table=check_response_ms
    case $system in
      writestream) result=$("$BIN/loadgen" $COMMON) ;;
      flight) result=$("$BIN/flight_put" $COMMON) ;;
      otlp) result=$("$BIN/otlp_metrics" --rows "$ROWS" --end-ns "$END_NS" --writers "$STREAMS" \
        --points "$BATCH_ROWS" --grpc http://127.0.0.1:50551) ;;
    esac
    echo "{\"system\": \"weir-$system\", \"run\": $run, \"stored\": $(stored "$table"), \"result\": $result}"
    stop
  done
done
