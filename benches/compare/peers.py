"""Side-by-side ingest and query drivers for benches/compare.sh.

  peers.py influx LINES_FILE URL ROWS WRITERS   -> InfluxDB 1.x line protocol over HTTP
  peers.py line-protocol SYSTEM WRITE_URL LINES_FILE ROWS WRITERS
                                                -> the same bodies POSTed to any line protocol endpoint
  peers.py postgres CSV_FILE DSN ROWS WRITERS   -> Postgres batched INSERT ... VALUES
  peers.py weir-query HTTP_URL SQL_FILE RUNS    -> the reference query over Weir's HTTP API
  peers.py duckdb-query PARQUET_GLOB SQL_FILE RUNS -> the same query in DuckDB over Weir's Parquet

Payloads are prepared before the clock starts; each prints one JSON line.
"""
import concurrent.futures
import json
import statistics
import sys
import time
import urllib.request

BATCH = 5000  # rows per InfluxDB write / per Postgres INSERT statement


def read_rows(path, rows):
    out = []
    with open(path) as f:
        for i, line in enumerate(f):
            if i >= rows:
                break
            out.append(line.rstrip("\n"))
    return out


def run_parallel(payloads, writers, send):
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=writers) as pool:
        chunks = [payloads[i::writers] for i in range(writers)]
        list(pool.map(lambda chunk: [send(p) for p in chunk], chunks))
    return time.perf_counter() - start


def influx(lines_file, url, rows, writers):
    urllib.request.urlopen(urllib.request.Request(f"{url}/query", data=b"q=CREATE DATABASE bench")).read()
    line_protocol("influxdb", f"{url}/write?db=bench&precision=ns", lines_file, rows, writers)


def line_protocol(system, write_url, lines_file, rows, writers):
    lines = read_rows(lines_file, rows)
    payloads = ["\n".join(lines[i : i + BATCH]).encode() for i in range(0, len(lines), BATCH)]

    def send(body):
        req = urllib.request.Request(write_url, data=body)
        with urllib.request.urlopen(req) as r:
            assert r.status == 204, r.status

    seconds = run_parallel(payloads, writers, send)
    report(system, len(lines), seconds, writers)


def postgres(csv_file, dsn, rows, writers):
    import psycopg

    lines = read_rows(csv_file, rows + 1)[1:]
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute("DROP TABLE IF EXISTS service_metrics")
        con.execute(
            "CREATE TABLE service_metrics (service_name text, status text, response_ms double precision,"
            " status_code bigint, recorded_at timestamptz)"
        )

    def value(line):
        service, status, ms, code, ns = line.split(",")
        ms = ms if ms else "NULL"
        return f"('{service}','{status}',{ms},{code},to_timestamp({int(ns) / 1e9}))"

    statements = [
        "INSERT INTO service_metrics VALUES " + ",".join(value(l) for l in lines[i : i + BATCH])
        for i in range(0, len(lines), BATCH)
    ]
    connections = [psycopg.connect(dsn, autocommit=True) for _ in range(writers)]
    pool = iter(connections)
    import threading

    local = threading.local()

    def send(statement):
        if not hasattr(local, "con"):
            local.con = next(pool)
        local.con.execute(statement)

    seconds = run_parallel(statements, writers, send)
    report("postgres", len(lines), seconds, writers)


def report(system, rows, seconds, writers):
    print(json.dumps({"system": system, "rows": rows, "seconds": round(seconds, 3),
                      "rows_per_sec": round(rows / seconds), "writers": writers}))


def weir_query(http_url, sql_file, runs):
    sql = open(sql_file).read().encode()
    times = []
    rows = None
    for _ in range(runs):
        start = time.perf_counter()
        req = urllib.request.Request(f"{http_url}/api/v1/sql", data=sql, headers={"accept": "application/json"})
        with urllib.request.urlopen(req) as r:
            rows = json.loads(r.read())
        times.append(time.perf_counter() - start)
    print(json.dumps({"system": "weir", "query": "reference", "runs": runs, "median_s": round(statistics.median(times), 4),
                      "times_s": [round(t, 4) for t in times], "result_rows": len(rows)}))


def duckdb_query(parquet_glob, sql_file, runs):
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"CREATE VIEW service_metrics AS SELECT * FROM read_parquet('{parquet_glob}')")
    sql = open(sql_file).read()
    times = []
    rows = None
    for _ in range(runs):
        start = time.perf_counter()
        rows = con.execute(sql).fetchall()
        times.append(time.perf_counter() - start)
    print(json.dumps({"system": "duckdb", "query": "reference", "runs": runs, "median_s": round(statistics.median(times), 4),
                      "times_s": [round(t, 4) for t in times], "result_rows": len(rows),
                      "threads": con.execute("SELECT current_setting('threads')").fetchone()[0]}))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "influx":
        influx(args[0], args[1], int(args[2]), int(args[3]))
    elif cmd == "line-protocol":
        line_protocol(args[0], args[1], args[2], int(args[3]), int(args[4]))
    elif cmd == "postgres":
        postgres(args[0], args[1], int(args[2]), int(args[3]))
    elif cmd == "weir-query":
        weir_query(args[0], args[1], int(args[2]))
    elif cmd == "duckdb-query":
        duckdb_query(args[0], args[1], int(args[2]))
    else:
        sys.exit(f"unknown command {cmd}")
