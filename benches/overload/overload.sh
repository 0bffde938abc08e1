#!/usr/bin/env bash
# Overload: more writes than the machine can persist, for SECONDS (default 60),
# against a release `weir serve` with the default buffer settings
# (persist_buffer_size 256MiB, max_buffer_size 1GiB). Reports, per run:
#   - acknowledged rows/s, ack latency p50/p99/max and the longest time no
#     stream got an ack (the worst stall), from loadgen;
#   - the server's peak RSS (VmHWM) against the configured limits, and the
#     CPU the server and the client used (from /proc);
#   - the reference query (tests/sql/reference_uptime.sql) idle, then during
#     the overload, median of QUERY_RUNS each, and their ratio.
# Prints JSON lines; RUNS separate server runs (default 3). TIMELINE_DIR
# keeps each run's 500 ms server timeline and loadgen's acks per second.
# SERVE_ARGS adds flags to `weir serve` (e.g. --max-write-inflight-size).
# WEIR_BIN runs another `weir` binary as the server (a build of an older
# commit, for before/after figures); loadgen is always this tree's.
set -euo pipefail
cd "$(dirname "$0")/../.."

SECONDS_LOAD=${SECONDS_LOAD:-60}
RUNS=${RUNS:-3}
STREAMS=${STREAMS:-8}
BATCH_ROWS=${BATCH_ROWS:-50000}
IN_FLIGHT=${IN_FLIGHT:-8}
QUERY_RUNS=${QUERY_RUNS:-5}
WORK=$(mktemp -d /tmp/weir-overload.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; sleep 1; rm -rf "$WORK"' EXIT

# BIN_DIR: prebuilt binaries (weir, loadgen, http_target) instead of a build.
if [ -z "${BIN_DIR:-}" ]; then
  cargo build --release -p weir -p weir-benches --bins >&2
fi
BIN=${BIN_DIR:-${CARGO_TARGET_DIR:-target}/release}
WEIR_BIN=${WEIR_BIN:-$BIN/weir}
HTTP=http://127.0.0.1:58186
CLK=$(getconf CLK_TCK)

cpu_seconds() { # pid -> user+system CPU seconds so far
  awk -v clk="$CLK" '{print ($14 + $15) / clk}' "/proc/$1/stat"
}

query_median() { # runs -> median seconds of the reference query
  python3 - "$HTTP" tests/sql/reference_uptime.sql "$1" <<'PY'
import statistics, sys, time, urllib.request
url, sql_file, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
sql = open(sql_file, "rb").read()
times = []
for _ in range(runs):
    t = time.perf_counter()
    req = urllib.request.Request(f"{url}/api/v1/sql", data=sql, headers={"accept": "application/json"})
    urllib.request.urlopen(req, timeout=300).read()
    times.append(time.perf_counter() - t)
print(f"{statistics.median(times):.3f}")
PY
}

for run in $(seq "$RUNS"); do
  data="$WORK/data-$run"
  "$WEIR_BIN" serve --data-dir "$data" --grpc-listen 127.0.0.1:50651 --http-listen 127.0.0.1:58186 \
    --time-column service_metrics=recorded_at --log-filter warn ${SERVE_ARGS:-} >"$data.out" 2>"$data.log" &
  pid=$!
  for _ in $(seq 100); do curl -sf "$HTTP/health/ready" >/dev/null && break; sleep 0.1; done
  # A day of history to query, written before the clock.
  "$BIN/loadgen" --grpc http://127.0.0.1:50651 --rows 2000000 --streams 4 >/dev/null
  idle=$(query_median "$QUERY_RUNS")
  server_cpu0=$(cpu_seconds "$pid")
  # A timeline every 500 ms while the load runs, to see what a stall lines
  # up with: seconds, RSS MiB, buffered MiB, WAL records, persisted rows,
  # persist runs, writes that waited for buffer space.
  t0=$(date +%s.%N)
  (while kill -0 "$pid" 2>/dev/null; do
     m=$(curl -s --max-time 2 "$HTTP/metrics" || true)
     awk -v t="$(date +%s.%N)" -v t0="$t0" -v rss="$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")" '
       /^weir_buffer_bytes / {b=$2} /^weir_wal_records_total / {w=$2} /^weir_persisted_rows_total / {p=$2}
       /^weir_persist_runs_total / {r=$2} /^weir_write_backpressure_waits_total / {bp=$2}
       END {printf "%.1f %d %d %d %d %d %d\n", t - t0, rss / 1024, b / 1048576, w, p, r, bp}' <<<"$m"
     sleep 0.5
   done) >"$data.timeline" &
  sampler=$!
  "$BIN/loadgen" --grpc http://127.0.0.1:50651 --streams "$STREAMS" --batch-rows "$BATCH_ROWS" \
    --in-flight "$IN_FLIGHT" --rows 10000000000 --seconds "$SECONDS_LOAD" >"$data.load" &
  client=$!
  sleep $((SECONDS_LOAD / 3))
  query_from=$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN {printf "%.1f", a - b}')
  busy=$(query_median "$QUERY_RUNS")
  query_to=$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN {printf "%.1f", a - b}')
  client_cpu=0
  while kill -0 "$client" 2>/dev/null; do client_cpu=$(cpu_seconds "$client"); sleep 0.5; done
  wait "$client"
  server_cpu=$(awk -v a="$server_cpu0" -v b="$(cpu_seconds "$pid")" 'BEGIN {print b - a}')
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  if [ -n "${TIMELINE_DIR:-}" ]; then
    mkdir -p "$TIMELINE_DIR"; cp "$data.timeline" "$TIMELINE_DIR/run-$run.timeline"; cp "$data.load" "$TIMELINE_DIR/run-$run.load"
  fi
  kill "$sampler" 2>/dev/null || true
  kill -TERM "$pid"; wait "$pid" || true
  warnings=$(grep -c -E 'WARN|ERROR' "$data.log" || true)
  echo "{\"run\": $run, \"load\": $(cat "$data.load"), \"server_peak_rss_mib\": $((hwm / 1024)), \"server_cpu_cores\": $(awk -v c="$server_cpu" -v s="$SECONDS_LOAD" 'BEGIN {printf "%.2f", c / s}'), \"client_cpu_cores\": $(awk -v c="$client_cpu" -v s="$SECONDS_LOAD" 'BEGIN {printf "%.2f", c / s}'), \"query_idle_s\": $idle, \"query_during_load_s\": $busy, \"query_slowdown\": $(awk -v a="$busy" -v b="$idle" 'BEGIN {printf "%.2f", a / b}'), \"queries_ran_s\": [$query_from, $query_to], \"server_log_warnings\": $warnings}"
done
