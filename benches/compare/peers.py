"""Side-by-side ingest and query drivers for benches/compare.sh.

  peers.py influx LINES_FILE URL ROWS WRITERS   -> InfluxDB 1.x line protocol over HTTP
  peers.py line-protocol SYSTEM WRITE_URL LINES_FILE ROWS WRITERS
                                                -> the same bodies POSTed to any line protocol endpoint
  peers.py postgres CSV_FILE DSN ROWS WRITERS   -> Postgres batched INSERT ... VALUES
  peers.py weir-query HTTP_URL SQL_FILE RUNS NOW   -> the reference query over Weir's HTTP API
  peers.py duckdb-query PARQUET_GLOB SQL_FILE RUNS NOW -> the same query in DuckDB over Weir's Parquet
  peers.py chdb-query PARQUET_GLOB SQL_FILE RUNS NOW   -> the same query in chDB (embedded ClickHouse)

The query drivers replace `NOW()` with the fixed instant NOW (RFC 3339,
UTC), each in its engine's own literal, so every engine answers the same
question; each prints a digest of its answer to compare.

Payloads are prepared before the clock starts; each prints one JSON line.
"""
import concurrent.futures
import hashlib
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


def timed(system, runs, run, **extra):
    """Runs `run` once untimed (the files in the page cache), then RUNS
    times; prints the median and a digest of the answer: (service, average
    uptime, worst hour, degraded hours, status) rows, numbers rounded."""
    run()
    times = []
    rows = None
    for _ in range(runs):
        start = time.perf_counter()
        rows = run()
        times.append(time.perf_counter() - start)
    answer = sorted((str(r[0]), round(float(r[1]), 2), round(float(r[2]), 2), int(r[3]), str(r[4]))
                    for r in rows)
    digest = hashlib.sha256(repr(answer).encode()).hexdigest()[:16]
    print(json.dumps({"system": system, "query": "reference", "runs": runs,
                      "median_s": round(statistics.median(times), 4),
                      "times_s": [round(t, 4) for t in times], "result_rows": len(rows),
                      "answer_digest": digest, **extra}))


def weir_query(http_url, sql_file, runs, now):
    sql = open(sql_file).read().replace("NOW()", f"TIMESTAMP '{now}'").encode()

    def run():
        req = urllib.request.Request(f"{http_url}/api/v1/sql", data=sql, headers={"accept": "application/json"})
        with urllib.request.urlopen(req) as r:
            columns = ("service_name", "avg_uptime_pct", "worst_hour_pct", "degraded_hours", "status")
            return [[row[c] for c in columns] for row in json.loads(r.read())]

    timed("weir", runs, run)


def duckdb_query(parquet_glob, sql_file, runs, now):
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"CREATE VIEW service_metrics AS SELECT * FROM read_parquet('{parquet_glob}')")
    sql = open(sql_file).read().replace("NOW()", f"TIMESTAMPTZ '{now}'")
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    timed("duckdb", runs, lambda: con.execute(sql).fetchall(), threads=threads, version=duckdb.__version__)


def chdb_query(parquet_glob, sql_file, runs, now):
    import chdb
    from chdb import session

    # ClickHouse reads the same files through its `file()` table function;
    # `toDateTime64(…, 9, 'UTC')` is the fixed instant at nanoseconds.
    con = session.Session()
    source = f"file('{parquet_glob}', Parquet)"
    instant = now.replace("T", " ").rstrip("Z")
    sql = (open(sql_file).read()
           .replace("FROM service_metrics", f"FROM {source}")
           .replace("NOW()", f"toDateTime64('{instant}', 9, 'UTC')"))

    def run():
        out = con.query(sql, "JSONCompact")
        return json.loads(out.bytes())["data"]

    timed("chdb", runs, run, version=chdb.__version__,
          threads=json.loads(con.query("SELECT getSetting('max_threads')", "JSONCompact").bytes())["data"][0][0])


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "influx":
        influx(args[0], args[1], int(args[2]), int(args[3]))
    elif cmd == "line-protocol":
        line_protocol(args[0], args[1], args[2], int(args[3]), int(args[4]))
    elif cmd == "postgres":
        postgres(args[0], args[1], int(args[2]), int(args[3]))
    elif cmd == "weir-query":
        weir_query(args[0], args[1], int(args[2]), args[3])
    elif cmd == "duckdb-query":
        duckdb_query(args[0], args[1], int(args[2]), args[3])
    elif cmd == "chdb-query":
        chdb_query(args[0], args[1], int(args[2]), args[3])
    else:
        sys.exit(f"unknown command {cmd}")
