#!/usr/bin/env bash
# Side-by-side benchmarks, all in one run on this machine:
#   1. gRPC streaming ingest (fsync group commit on): Weir vs InfluxDB 1.6
#      (line protocol over HTTP) vs Postgres 15 (batched INSERT ... VALUES),
#      the same rows for all three, median of RUNS runs each;
#   2. Weir ingest of the query data set (1,000 services, one day) at each
#      size in QUERY_ROWS;
#   3. the reference query on it, with NOW() fixed at the data's end: Weir
#      (HTTP) vs DuckDB vs chDB (embedded ClickHouse), both over Weir's own
#      Parquet files, median of QUERY_RUNS, with a digest of each answer;
#   4. bytes on disk per row of that data set.
# SKIP_INGEST=1 runs 2-4 only; BIN_DIR: prebuilt binaries instead of a build. Installs the peers from Debian and PyPI if
# missing. Prints JSON lines.
set -euo pipefail
cd "$(dirname "$0")/../.."

ROWS=${ROWS:-2000000}            # ingest comparison rows
QUERY_ROWS=${QUERY_ROWS:-10000000}   # one size or several: "1000000 10000000 30000000"
RUNS=${RUNS:-3}
QUERY_RUNS=${QUERY_RUNS:-5}
WRITERS=${WRITERS:-4}
WORK=$(mktemp -d /tmp/weir-bench.XXXXXX)
chmod 755 "$WORK"
trap 'kill $(jobs -p) 2>/dev/null || true; sleep 1; rm -rf "$WORK"' EXIT

SKIP_INGEST=${SKIP_INGEST:-0}
need_apt=()
[ "$SKIP_INGEST" = 1 ] || command -v influxd >/dev/null || need_apt+=(influxdb)
[ "$SKIP_INGEST" = 1 ] || [ -x /usr/lib/postgresql/15/bin/postgres ] || need_apt+=(postgresql)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
python3 -c 'import duckdb, psycopg, chdb' 2>/dev/null ||
  python3 -m pip install --quiet 'duckdb>=1.1,<2' 'psycopg[binary]>=3.1' 'chdb>=4,<5'

if [ -n "${BIN_DIR:-}" ]; then
  BIN=$BIN_DIR # prebuilt `weir` and `loadgen`
else
  cargo build --release -p weir -p weir-benches --bins >&2
  BIN=${CARGO_TARGET_DIR:-target}/release
fi
END_NS=$(date +%s%N)
# The queries' NOW(): the end of the generated data, the same for every engine.
NOW=$(date -u -d "@$((END_NS / 1000000000))" +%Y-%m-%dT%H:%M:%SZ)
LOADGEN="$BIN/loadgen --services 1000 --span-hours 24 --end-ns $END_NS --streams $WRITERS"

start_weir() { # data dir; prints nothing, waits for readiness
  "$BIN/weir" serve --data-dir "$1" --grpc-listen 127.0.0.1:50551 --http-listen 127.0.0.1:58086 \
    --time-column service_metrics=recorded_at --persist-interval 1h --log-filter warn >"$1.out" 2>"$1.log" &
  WEIR_PID=$!
  for _ in $(seq 100); do curl -sf http://127.0.0.1:58086/health/ready >/dev/null && return; sleep 0.1; done
  echo "weir did not start" >&2; cat "$1.log" >&2; exit 1
}
stop_weir() { kill -TERM "$WEIR_PID"; wait "$WEIR_PID" || true; }

# --- 1. ingest, same rows for all three ---------------------------------
if [ "$SKIP_INGEST" != 1 ]; then
$LOADGEN --rows "$ROWS" --emit-line-protocol "$WORK/rows.lp" --emit-csv "$WORK/rows.csv"
for run in $(seq "$RUNS"); do
  start_weir "$WORK/weir-ingest-$run"
  echo "{\"system\": \"weir\", \"run\": $run, \"result\": $($LOADGEN --rows "$ROWS" --grpc http://127.0.0.1:50551)}"
  stop_weir
done

influxd config 2>/dev/null | sed \
  -e "s#/var/lib/influxdb#$WORK/influx#g" \
  -e 's#bind-address = ":8086"#bind-address = "127.0.0.1:58087"#' \
  -e 's#bind-address = "127.0.0.1:8088"#bind-address = "127.0.0.1:58088"#' \
  -e 's#reporting-disabled = false#reporting-disabled = true#' >"$WORK/influx.conf"
for run in $(seq "$RUNS"); do
  rm -rf "$WORK/influx"
  influxd -config "$WORK/influx.conf" >"$WORK/influx.log" 2>&1 &
  INFLUX_PID=$!
  for _ in $(seq 100); do curl -sf http://127.0.0.1:58087/ping >/dev/null && break; sleep 0.2; done
  echo "{\"run\": $run, \"result\": $(python3 benches/compare/peers.py influx "$WORK/rows.lp" http://127.0.0.1:58087 "$ROWS" "$WRITERS")}"
  kill "$INFLUX_PID"; wait "$INFLUX_PID" || true
done

PG=/usr/lib/postgresql/15/bin
chown postgres "$WORK"
su postgres -c "$PG/initdb -D $WORK/pg -A trust >/dev/null"
su postgres -c "$PG/pg_ctl -D $WORK/pg -l $WORK/pg.log -o '-p 55432 -k $WORK -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on' start >/dev/null"
for run in $(seq "$RUNS"); do
  echo "{\"run\": $run, \"result\": $(python3 benches/compare/peers.py postgres "$WORK/rows.csv" 'host=127.0.0.1 port=55432 dbname=postgres user=postgres' "$ROWS" "$WRITERS")}"
done
su postgres -c "$PG/pg_ctl -D $WORK/pg stop >/dev/null"
fi

# --- 2-4. the query data set, at each size ----------------------------------
for query_rows in $QUERY_ROWS; do
start_weir "$WORK/weir-query-$query_rows"
echo "{\"system\": \"weir\", \"dataset\": \"query\", \"rows\": $query_rows, \"result\": $($LOADGEN --rows "$query_rows" --grpc http://127.0.0.1:50551)}"
curl -sf -X POST http://127.0.0.1:58086/api/v1/persist >/dev/null
FILES="$WORK/weir-query-$query_rows/tables/*/*/*.parquet"
python3 benches/compare/peers.py weir-query http://127.0.0.1:58086 tests/sql/reference_uptime.sql "$QUERY_RUNS" "$NOW"
python3 benches/compare/peers.py duckdb-query "$FILES" tests/sql/reference_uptime.sql "$QUERY_RUNS" "$NOW"
python3 benches/compare/peers.py chdb-query "$FILES" tests/sql/reference_uptime.sql "$QUERY_RUNS" "$NOW"
python3 - "$WORK/weir-query-$query_rows" <<'PY'
import json, os, sys
d = sys.argv[1]
catalog = json.load(open(os.path.join(d, "catalog.json")))
files = catalog["tables"]["service_metrics"]["files"]
rows = sum(f["rows"] for f in files)
size = sum(os.path.getsize(os.path.join(d, f["path"])) for f in files)
print(json.dumps({"dataset": "query", "files": len(files), "rows": rows, "parquet_bytes": size,
                  "bytes_per_row": round(size / rows, 3)}))
PY
stop_weir
rm -rf "$WORK/weir-query-$query_rows"
done
