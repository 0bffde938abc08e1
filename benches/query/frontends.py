"""The same queries through Weir's query front ends, timed from the client:
HTTP (`POST /api/v1/sql`, JSON), Arrow Flight SQL (ADBC) and the Postgres
wire protocol (psycopg 3, text format, server-side statements).

Usage: frontends.py http://host:port grpc://host:port pg-host:port reference.sql RUNS
Prints one JSON line per front end and query: the median of RUNS timings,
the rows, and for the large answer the Arrow bytes per second.
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


def measure(name, run, sql):
    run(sql)  # one untimed run first: the data in the page cache
    seconds, rows, nbytes = [], 0, None
    for _ in range(runs):
        started = time.perf_counter()
        rows, nbytes = run(sql)
        seconds.append(time.perf_counter() - started)
    median = statistics.median(seconds)
    out = {"front_end": name, "rows": rows, "median_s": round(median, 4),
           "runs_s": [round(s, 4) for s in seconds]}
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
