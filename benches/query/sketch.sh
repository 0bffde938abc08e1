#!/usr/bin/env bash
# Quantile sketches in a rollup: what they cost at ingest and on disk, and
# how fast a day's p50/p99 per service comes from them, one server, one run:
#
#   1. ROWS rows (1,000 services, the 24 h before an hour boundary NOW) into
#      a server whose hourly rollup keeps `quantile_sketch(response_ms)`
#      beside count(*); persisted. Then, median of QUERY_RUNS after one
#      untimed run each, through POST /api/v1/sql:
#        - rollup: sketch_quantile(sketch_merge(...), 0.5 and 0.99) per
#          service over the day, from the rollup;
#        - raw sketch: the same from quantile_sketch over the raw rows,
#          whose answer must equal the rollup's exactly (printed: match);
#        - approx_percentile_cont: DataFusion's t-digest over the raw rows.
#   2. The rollup's files with the sketch column and the count columns'
#      share, from catalog.json and the Parquet footer.
#   3. Ingest cost: INGEST_ROWS rows into a fresh server with no rollup,
#      with a count-only rollup and with the sketch rollup, in turn,
#      INGEST_RUNS times.
#
#   BIN_DIR=target/release bash benches/query/sketch.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

ROWS=${ROWS:-10000000}
QUERY_RUNS=${QUERY_RUNS:-5}
INGEST_ROWS=${INGEST_ROWS:-4000000}
INGEST_RUNS=${INGEST_RUNS:-3}
WORK=$(mktemp -d /tmp/weir-sketch.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; sleep 1; rm -rf "$WORK"' EXIT

if [ -n "${BIN_DIR:-}" ]; then
  BIN=$BIN_DIR
else
  cargo build --release -p weir -p weir-benches --bins >&2
  BIN=${CARGO_TARGET_DIR:-target}/release
fi
END_NS=$(( $(date +%s) / 3600 * 3600 * 1000000000 ))
NOW=$(date -u -d "@$((END_NS / 1000000000))" +%Y-%m-%dT%H:%M:%SZ)
HTTP=http://127.0.0.1:58088
LOADGEN="$BIN/loadgen --services 1000 --streams 4 --grpc http://127.0.0.1:50553"

rollup_toml() { # aggregates
  printf '[tables.service_metrics]\ntime_column = "recorded_at"\n'
  [ -z "$1" ] || printf '[rollups.service_metrics_1h]\nsource = "service_metrics"\nbucket = "1h"\ngroup_by = ["service_name"]\naggregates = { %s }\n' "$1"
}
rollup_toml 'checks = "count(*)", ms = "quantile_sketch(response_ms)"' >"$WORK/sketch.toml"
rollup_toml 'checks = "count(*)"' >"$WORK/counts.toml"
rollup_toml '' >"$WORK/plain.toml"
start_weir() { # config, data dir
  "$BIN/weir" serve --config "$1" --data-dir "$2" --grpc-listen 127.0.0.1:50553 \
    --http-listen 127.0.0.1:58088 --persist-interval 1h --log-filter warn >"$2.out" 2>"$2.log" &
  WEIR_PID=$!
  for _ in $(seq 100); do curl -sf "$HTTP/health/ready" >/dev/null && return; sleep 0.1; done
  cat "$2.log" >&2; exit 1
}
stop_weir() { kill -TERM "$WEIR_PID"; wait "$WEIR_PID" || true; }

start_weir "$WORK/sketch.toml" "$WORK/data"
echo "{\"load\": \"day\", \"result\": $($LOADGEN --rows "$ROWS" --span-hours 24 --end-ns "$END_NS")}"
curl -sf -X POST "$HTTP/api/v1/persist" >/dev/null

python3 - "$HTTP" "$NOW" "$QUERY_RUNS" <<'PY'
import hashlib, json, statistics, sys, time, urllib.request
http, now, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
window = f"recorded_at >= TIMESTAMP '{now}' - INTERVAL '24 hours' AND recorded_at < TIMESTAMP '{now}'"
queries = {
    "rollup": f"""SELECT CAST(service_name AS VARCHAR) AS s,
        sketch_quantile(sketch_merge(ms), 0.5) AS p50, sketch_quantile(sketch_merge(ms), 0.99) AS p99
        FROM service_metrics_1h WHERE {window} GROUP BY 1 ORDER BY 1""",
    "raw sketch": f"""SELECT CAST(service_name AS VARCHAR) AS s,
        sketch_quantile(quantile_sketch(response_ms), 0.5) AS p50,
        sketch_quantile(quantile_sketch(response_ms), 0.99) AS p99
        FROM service_metrics WHERE {window} GROUP BY 1 ORDER BY 1""",
    "approx_percentile_cont": f"""SELECT CAST(service_name AS VARCHAR) AS s,
        approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY response_ms) AS p50,
        approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY response_ms) AS p99
        FROM service_metrics WHERE {window} GROUP BY 1 ORDER BY 1""",
}
def run(sql):
    req = urllib.request.Request(f"{http}/api/v1/sql", data=sql.encode(), headers={"accept": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as r:
        return json.loads(r.read())
answers = {}
for name, sql in queries.items():
    run(sql)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        rows = run(sql)
        times.append(time.perf_counter() - t)
    answers[name] = rows
    digest = hashlib.sha256(repr([(r["s"], r["p50"], r["p99"]) for r in rows]).encode()).hexdigest()[:16]
    print(json.dumps({"query": name, "median_s": round(statistics.median(times), 4),
                      "times_s": [round(t, 4) for t in times], "rows": len(rows), "answer_digest": digest}))
exact = answers["rollup"] == answers["raw sketch"]
# How far the t-digest's and the sketch's p99 are apart, as a share.
apart = max(abs(a["p99"] - b["p99"]) / abs(b["p99"])
            for a, b in zip(answers["rollup"], answers["approx_percentile_cont"]) if b["p99"])
print(json.dumps({"rollup_equals_raw_sketch": exact, "largest_p99_gap_to_t_digest": round(apart, 4)}))
PY

python3 - "$WORK/data" <<'PY'
import json, os, sys
import pyarrow.parquet as pq
d = sys.argv[1]
files = json.load(open(os.path.join(d, "catalog.json")))["tables"]["service_metrics_1h"]["files"]
by_column = {}
for f in files:
    meta = pq.ParquetFile(os.path.join(d, f["path"])).metadata
    for g in range(meta.num_row_groups):
        for c in range(meta.num_columns):
            col = meta.row_group(g).column(c)
            by_column[col.path_in_schema] = by_column.get(col.path_in_schema, 0) + col.total_compressed_size
print(json.dumps({"rollup_files": len(files), "rollup_rows": sum(f["rows"] for f in files),
                  "file_bytes": sum(os.path.getsize(os.path.join(d, f["path"])) for f in files),
                  "compressed_bytes_by_column": by_column}))
PY
stop_weir

for run in $(seq "$INGEST_RUNS"); do
  for variant in plain counts sketch; do
    start_weir "$WORK/$variant.toml" "$WORK/ingest-$variant-$run"
    echo "{\"ingest\": \"$variant\", \"run\": $run, \"result\": $($LOADGEN --rows "$INGEST_ROWS" --span-hours 24 --end-ns "$END_NS")}"
    stop_weir
    rm -rf "$WORK/ingest-$variant-$run"
  done
done
