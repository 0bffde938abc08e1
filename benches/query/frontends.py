"""The same queries through Weir's query front ends, timed from the client:
HTTP (`POST /api/v1/sql`, JSON), Arrow Flight SQL (ADBC) and the Postgres
wire protocol (psycopg 3, text format, server-side statements).

Usage: frontends.py http://host:port grpc://host:port pg-host:port reference.sql RUNS
Prints one JSON line per front end and query: the median of RUNS timings,
the rows, the engine's own mean time for the same runs (from
`weir_query_seconds` on `/metrics`: planning and execution, and for the
streamed front ends the time their batches wait for the client), what the
front end adds on top per 1,000 result rows, and for the large answer the
Arrow bytes per second.
"""

import json
import statistics
import sys
import time
import urllib.request

import adbc_driver_flightsql.dbapi as flight_sql
import psycopg

http_url, grpc_url, pg_addr, reference_path = sys.argv[1:5]
runs = int(sys.argv[5])
pg_host, pg_port = pg_addr.rsplit(":", 1)
with open(reference_path) as f:
    reference = f.read()
queries = {
    "reference_uptime": reference,
    "all_rows": "SELECT * FROM service_metrics",
}


def over_http(sql):
    request = urllib.request.Request(
        http_url + "/api/v1/sql", data=sql.encode(), method="POST"
    )
    with urllib.request.urlopen(request) as response:
        rows = json.loads(response.read())
    return len(rows), None


def over_flight_sql(conn):
    def run(sql):
        with conn.cursor() as cur:
            cur.execute(sql)
            table = cur.fetch_arrow_table()
        return table.num_rows, table.nbytes

    return run


def over_postgres(conn):
    def run(sql):
        with conn.cursor() as cur:
            cur.execute(sql)
            return len(cur.fetchall()), None

    return run


def engine_seconds():
    """(sum, count) of `weir_query_seconds`: the time queries spent in the
    engine, whichever front end ran them."""
    with urllib.request.urlopen(http_url + "/metrics") as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        for key in ("weir_query_seconds_sum", "weir_query_seconds_count"):
            if line.startswith(key + " ") or line.startswith(key + "{"):
                values[key] = float(line.rsplit(" ", 1)[1])
    return values["weir_query_seconds_sum"], values["weir_query_seconds_count"]


def measure(name, run, sql):
    run(sql)  # one untimed run first: the data in the page cache
    seconds, rows, nbytes = [], 0, None
    sum_before, count_before = engine_seconds()
    for _ in range(runs):
        started = time.perf_counter()
        rows, nbytes = run(sql)
        seconds.append(time.perf_counter() - started)
    sum_after, count_after = engine_seconds()
    median = statistics.median(seconds)
    # Flight SQL plans at GetFlightInfo and runs at DoGet: count the runs,
    # not the engine's calls.
    in_engine = (sum_after - sum_before) / runs
    out = {"front_end": name, "rows": rows, "median_s": round(median, 4),
           "runs_s": [round(s, 4) for s in seconds],
           "engine_mean_s": round(in_engine, 4),
           "engine_calls_per_run": (count_after - count_before) / runs,
           "front_end_overhead_s_per_1000_rows":
               round((statistics.mean(seconds) - in_engine) / max(rows, 1) * 1000, 5)}
    if nbytes:
        out["arrow_mb_per_s"] = round(nbytes / median / 1e6, 1)
    return out


with flight_sql.connect(grpc_url) as conn, psycopg.connect(
    host=pg_host, port=int(pg_port), dbname="weir", user="bench", autocommit=True
) as pg:
    front_ends = [
        ("http_json", over_http),
        ("flight_sql_adbc", over_flight_sql(conn)),
        ("postgres_psycopg", over_postgres(pg)),
    ]
    for query, sql in queries.items():
        for name, run in front_ends:
            print(json.dumps({"query": query, **measure(name, run, sql)}), flush=True)
