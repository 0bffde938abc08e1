#!/usr/bin/env bash
# The monitor under load, against a release `weir serve` and a local HTTP
# service (benches/src/bin/http_target.rs) on the same 2 cores.
#
#   probes: PROBES endpoints (default 10,000) at the default settings
#     (interval 60 s, timeout 5 s, probe_concurrency 512); after a minute of
#     warm-up, for MEASURE seconds (default 120): probe runs per minute, the
#     server's CPU (cores) and RSS (now and peak), the time runs waited for a
#     slot, the target's CPU.
#   rules: RULES alert rules (default 1,000), each over one service's last
#     hour of a QUERY_ROWS-row service_metrics (default 10M: 1,000 services,
#     24 h, the compare.sh data), every 60 s; evaluation time per rule (from
#     weir_rule_evaluation_seconds), CPU; and, for the alerts that fire, the
#     latency from the firing transition (weir_alert_history) to the first
#     byte of the notification at a local receiver, p50/p99; and the time
#     to compute the status page over those 1,000 services.
#
# Prints one JSON line per part.
set -euo pipefail
cd "$(dirname "$0")/../.."

PROBES=${PROBES:-10000}
MEASURE=${MEASURE:-120}
RULES=${RULES:-1000}
QUERY_ROWS=${QUERY_ROWS:-10000000}
RULE_ROUNDS=${RULE_ROUNDS:-3}
WORK=$(mktemp -d /tmp/weir-monitor-bench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; sleep 1; rm -rf "$WORK"' EXIT

# BIN_DIR: prebuilt binaries (weir, loadgen, http_target) instead of a build.
if [ -z "${BIN_DIR:-}" ]; then
  cargo build --release -p weir -p weir-benches --bins >&2
fi
BIN=${BIN_DIR:-${CARGO_TARGET_DIR:-target}/release}
WEIR_BIN=${WEIR_BIN:-$BIN/weir}
HTTP=http://127.0.0.1:58187
CLK=$(getconf CLK_TCK)

cpu_seconds() { awk -v clk="$CLK" '{print ($14 + $15) / clk}' "/proc/$1/stat"; }
kib() { awk -v key="$2:" '$1 == key {print $2}' "/proc/$1/status"; }
metric() { # name [labels-free] -> value from /metrics
  curl -sf "$HTTP/metrics" | awk -v n="$1" '$1 == n {print $2}'
}

"$BIN/http_target" --listen 127.0.0.1:0 >"$WORK/target.out" &
target=$!
for _ in $(seq 100); do grep -q listening "$WORK/target.out" 2>/dev/null && break; sleep 0.05; done
TARGET=$(awk '{print $3}' "$WORK/target.out")

start_weir() { # config data -> pid
  "$WEIR_BIN" serve --config "$1" --data-dir "$2" --grpc-listen 127.0.0.1:50652 \
    --http-listen 127.0.0.1:58187 --log-filter warn >"$2.out" 2>"$2.log" &
  echo $!
}
stop_weir() { kill -TERM "$1"; while kill -0 "$1" 2>/dev/null; do sleep 0.1; done; }
wait_ready() { for _ in $(seq 600); do curl -sf "$HTTP/health/ready" >/dev/null && return; sleep 0.1; done; echo "weir did not start" >&2; exit 1; }

# --- probes -----------------------------------------------------------------
cfg="$WORK/probes.toml"
{
  echo '[tables.service_metrics]'
  echo 'time_column = "recorded_at"'
  for i in $(seq "$PROBES"); do
    printf '[probes.p%05d]\nurl = "http://%s/svc/s%05d"\n' "$i" "$TARGET" "$i"
  done
} >"$cfg"
pid=$(start_weir "$cfg" "$WORK/probes")
wait_ready
sleep 65
runs0=$(metric weir_probe_runs_total); cpu0=$(cpu_seconds "$pid"); tcpu0=$(cpu_seconds "$target")
wait0=$(metric weir_probe_slot_wait_seconds_sum); unhealthy0=$(metric weir_probe_unhealthy_total)
sleep "$MEASURE"
runs1=$(metric weir_probe_runs_total); cpu1=$(cpu_seconds "$pid"); tcpu1=$(cpu_seconds "$target")
wait1=$(metric weir_probe_slot_wait_seconds_sum); unhealthy1=$(metric weir_probe_unhealthy_total)
rows=$(curl -sf "$HTTP/api/v1/sql" -H 'accept: text/csv' -d 'SELECT count(*) FROM service_metrics' | tail -1)
echo "{\"part\": \"probes\", \"endpoints\": $PROBES, \"measured_s\": $MEASURE, \
\"runs_per_minute\": $(awk -v a="$runs0" -v b="$runs1" -v s="$MEASURE" 'BEGIN {printf "%.0f", (b - a) * 60 / s}'), \
\"unhealthy_runs\": $(awk -v a="$unhealthy0" -v b="$unhealthy1" 'BEGIN {print b - a}'), \
\"server_cpu_cores\": $(awk -v a="$cpu0" -v b="$cpu1" -v s="$MEASURE" 'BEGIN {printf "%.3f", (b - a) / s}'), \
\"target_cpu_cores\": $(awk -v a="$tcpu0" -v b="$tcpu1" -v s="$MEASURE" 'BEGIN {printf "%.3f", (b - a) / s}'), \
\"server_rss_mib\": $(( $(kib "$pid" VmRSS) / 1024 )), \"server_peak_rss_mib\": $(( $(kib "$pid" VmHWM) / 1024 )), \
\"mean_slot_wait_ms\": $(awk -v a="$wait0" -v b="$wait1" -v r0="$runs0" -v r1="$runs1" 'BEGIN {printf "%.2f", (b - a) * 1000 / (r1 - r0)}'), \
\"rows_stored\": $rows}"
stop_weir "$pid"

# --- rules ------------------------------------------------------------------
cfg="$WORK/rules.toml"
{
  echo '[tables.service_metrics]'
  echo 'time_column = "recorded_at"'
  echo '[receivers.hook]'
  echo 'type = "webhook"'
  echo "url = \"http://$TARGET/receive/hook\""
  for i in $(seq 0 $((RULES - 1))); do
    svc=$(printf 'service-%04d' "$((i % 1000))")
    cat <<RULE
[rules.r$i]
interval = "60s"
query = """
SELECT CAST(service_name AS VARCHAR) AS service_name,
       100.0 * avg(CASE WHEN status = 'healthy' THEN 1.0 ELSE 0.0 END) AS value,
       avg(CASE WHEN status = 'healthy' THEN 1.0 ELSE 0.0 END) < 0.995 AS firing
FROM service_metrics
WHERE service_name = '$svc' AND recorded_at > now() - INTERVAL '1 hour'
GROUP BY 1
"""
summary = "\${labels.service_name} uptime \${value}%"
RULE
  done
} >"$cfg"
pid=$(start_weir "$cfg" "$WORK/rules")
wait_ready
"$BIN/loadgen" --grpc http://127.0.0.1:50652 --rows "$QUERY_ROWS" --services 1000 --span-hours 24 >/dev/null
# Rules run once a minute each, spread over the minute.
sleep 5
n0=$(metric weir_rule_evaluation_seconds_count); s0=$(metric weir_rule_evaluation_seconds_sum); cpu0=$(cpu_seconds "$pid")
sleep $((60 * RULE_ROUNDS))
n1=$(metric weir_rule_evaluation_seconds_count); s1=$(metric weir_rule_evaluation_seconds_sum); cpu1=$(cpu_seconds "$pid")
curl -sf "$HTTP/metrics" | grep '^weir_rule_evaluation_seconds_bucket' >"$WORK/buckets"
# The status page over the same 1,000 services (its cache is 5 s: each
# load here computes it afresh).
status_ms=()
for _ in 1 2 3; do
  sleep 6
  status_ms+=("$(curl -sf -o /dev/null -w '%{time_total}' "$HTTP/status" | awk '{printf "%.0f", $1 * 1000}')")
done
STATUS_MS=$(printf '%s\n' "${status_ms[@]}" | sort -n | sed -n 2p)
history=$(curl -sf "$HTTP/api/v1/sql" -d "SELECT fingerprint, CAST(time AS BIGINT) AS t FROM weir_alert_history WHERE to_state = 'firing'")
curl -sf "http://$TARGET/received" >"$WORK/received.json"
echo "$history" >"$WORK/history.json"
python3 - "$WORK" "$RULES" "$n0" "$n1" "$s0" "$s1" "$cpu0" "$cpu1" "$((60 * RULE_ROUNDS))" "$STATUS_MS" <<'PY'
import json, statistics, sys
work, rules, n0, n1, s0, s1, c0, c1, secs, status_ms = sys.argv[1:]
n, s = float(n1) - float(n0), float(s1) - float(s0)
import bisect
fired = {}
for r in json.load(open(f"{work}/history.json")):
    fired.setdefault(r["fingerprint"], []).append(int(r["t"]))
for times in fired.values():
    times.sort()
# The Alertmanager webhook body names each alert's fingerprint; an alert
# that fires again is matched to its latest firing before the arrival.
lat_ms = []
for m in json.load(open(f"{work}/received.json")):
    for a in m["body"].get("alerts", []):
        times = fired.get(a.get("fingerprint"), [])
        i = bisect.bisect_right(times, m["arrived_ns"]) - 1
        if a.get("status") == "firing" and i >= 0:
            lat_ms.append((m["arrived_ns"] - times[i]) / 1e6)
lat_ms.sort()
pct = lambda p: round(lat_ms[min(len(lat_ms) - 1, int(p * len(lat_ms)))], 1) if lat_ms else None
buckets = [l.split() for l in open(f"{work}/buckets")]
print(json.dumps({
    "part": "rules",
    "rules": int(rules),
    "evaluations": int(n),
    "mean_evaluation_ms": round(s / n * 1000, 2) if n else None,
    "evaluation_cpu_cores": round((float(c1) - float(c0)) / float(secs), 3),
    "evaluation_seconds_buckets": {b[0].split('"')[1]: int(b[1]) for b in buckets},
    "firing_transitions": sum(len(t) for t in fired.values()),
    "notify_latency_ms": {"n": len(lat_ms), "p50": pct(0.5), "p99": pct(0.99), "max": lat_ms[-1] if lat_ms else None},
    "status_page_ms_median_of_3": int(status_ms),
}))
PY
stop_weir "$pid"
