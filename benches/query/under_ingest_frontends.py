#!/usr/bin/env python3
"""The reference query idle and during full-speed ingest through each query
front end: HTTP (`POST /api/v1/sql`), Arrow Flight SQL (ADBC, on the gRPC
port that also takes the writes) and the Postgres wire protocol (psycopg).

ROWS rows are written and persisted once (as in under_ingest_breakdown.py,
whose helpers this uses); then for each setting in SETTINGS (`NAME=FLAGS`,
FLAGS to `weir serve`) a fresh server, the query RUNS times idle through
each front end in turn, then loadgen at full speed (rows stamped days
before the query's window) and after WARMUP seconds the query RUNS times
again, the front ends taking turns. Prints one JSON line per setting and
front end with both medians and their ratio.

  BIN_DIR=target/release python3 benches/query/under_ingest_frontends.py
"""

import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request

import adbc_driver_flightsql.dbapi as flight_sql
import psycopg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import under_ingest_breakdown as bench  # noqa: E402

SETTINGS = os.environ.get("SETTINGS", "nice19=--ingest-nice 19;nice10=--ingest-nice 10").split(";")
PG_PORT = 58433


def front_ends():
    """One function per front end that runs the query and reads its answer."""
    flight = flight_sql.connect(bench.GRPC.replace("http://", "grpc://"))
    pg = psycopg.connect(host="127.0.0.1", port=PG_PORT, user="weir", dbname="weir", autocommit=True)

    def over_http():
        request = urllib.request.Request(f"{bench.HTTP}/api/v1/sql", data=bench.SQL.encode())
        return len(json.loads(urllib.request.urlopen(request).read()))

    def over_flight_sql():
        with flight.cursor() as cursor:
            cursor.execute(bench.SQL)
            return cursor.fetch_arrow_table().num_rows

    def over_postgres():
        with pg.cursor() as cursor:
            cursor.execute(bench.SQL)
            return len(cursor.fetchall())

    return {"http": over_http, "flight_sql": over_flight_sql, "postgres": over_postgres}, (flight, pg)


def timed(query):
    started = time.perf_counter()
    rows = query()
    return time.perf_counter() - started, rows


def main():
    work = tempfile.mkdtemp(prefix="weir-frontends.")
    data = os.path.join(work, "data")
    server = client = None
    try:
        server = bench.start_weir(data, ["--ingest-nice", "0"])
        bench.loadgen(["--rows", str(bench.ROWS), "--span-hours", "24", "--end-ns", str(bench.END_NS)]).wait()
        urllib.request.urlopen(urllib.request.Request(f"{bench.HTTP}/api/v1/persist", data=b"")).read()
        bench.stop(server)
        for setting in SETTINGS:
            name, _, flags = setting.partition("=")
            server = bench.start_weir(data, flags.split() + ["--pg-listen", f"127.0.0.1:{PG_PORT}"])
            queries, connections = front_ends()
            for query in queries.values():
                timed(query)  # untimed: page cache, catalog, connection
            idle = {n: [timed(q) for _ in range(bench.RUNS)] for n, q in queries.items()}
            client = bench.loadgen(["--streams", bench.STREAMS, "--batch-rows", bench.BATCH_ROWS,
                                    "--in-flight", bench.IN_FLIGHT, "--rows", "10000000000",
                                    "--seconds", str(int(bench.WARMUP + bench.RUNS * 4 + 10)),
                                    "--span-hours", "24", "--end-ns", str(bench.END_NS - 72 * bench.HOUR_NS)],
                                   nice=bench.CLIENT_NICE)
            time.sleep(bench.WARMUP)
            busy = {n: [] for n in queries}
            for _ in range(bench.RUNS):
                for n, query in queries.items():
                    busy[n].append(timed(query))
            client.kill()
            client.wait()
            for connection in connections:
                connection.close()
            bench.stop(server)
            for n in queries:
                idle_s = statistics.median(t for t, _ in idle[n])
                busy_s = statistics.median(t for t, _ in busy[n])
                rows = {r for _, r in idle[n] + busy[n]}
                print(json.dumps({"setting": name, "flags": flags, "client_nice": bench.CLIENT_NICE,
                                  "front_end": n, "idle_s": round(idle_s, 4), "during_ingest_s": round(busy_s, 4),
                                  "ratio": round(busy_s / idle_s, 2), "rows": sorted(rows),
                                  "during_ingest_runs_s": [round(t, 3) for t, _ in busy[n]]}), flush=True)
    finally:
        bench.clean_up(work, client, server)


if __name__ == "__main__":
    main()
