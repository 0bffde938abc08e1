#!/usr/bin/env python3
"""Where a query's time goes during full-speed ingest, on this machine.

For each server setting in SETTINGS: a fresh `weir serve` on a data
directory holding ROWS rows (written and persisted once, the 24 h before an
hour-aligned NOW), the reference uptime query RUNS times idle, then loadgen
at full speed (rows stamped days before the query's window, so the query
reads the same rows) and after WARMUP seconds the query RUNS times again.
Around every query it reads, from outside the server:

  wall_s          the query over HTTP, as the client sees it
  engine_s        the engine's own time (`weir_query_seconds_sum` in /metrics)
  http_s          wall - engine: the client sending the request, the
                  server reading it and encoding and sending the answer
  query_cpu_s     CPU time of the query threads (`weir-query`)
  query_wait_s    time those threads were runnable but waiting for a CPU
                  (/proc/PID/task/TID/schedstat, summed over the threads)
  api_cpu_s       CPU time of the front-end threads (`weir-api`: HTTP and
                  Postgres) meanwhile
  ingest_cpu_s    CPU time of every other server thread meanwhile
  loadgen_cpu_s   CPU time of the load generator meanwhile

Prints one JSON line per setting with the medians. A setting is
`NAME=FLAGS`; FLAGS go to `weir serve`, and the pseudo-flag
`--sched-idle` moves every server thread but the query threads, the
front-end threads and the main thread to SCHED_IDLE with chrt once the
load runs (a what-if: Weir has no such setting).

  BIN_DIR=target/release python3 benches/query/under_ingest_breakdown.py
"""

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
BIN = os.environ.get("BIN_DIR", os.path.join(ROOT, "target", "release"))
ROWS = int(os.environ.get("ROWS", "10000000"))
RUNS = int(os.environ.get("RUNS", "7"))
WARMUP = float(os.environ.get("WARMUP", "8"))
STREAMS, BATCH_ROWS = os.environ.get("STREAMS", "8"), os.environ.get("BATCH_ROWS", "50000")
IN_FLIGHT = os.environ.get("IN_FLIGHT", "8")
CLIENT_NICE = int(os.environ.get("CLIENT_NICE", "0"))
SETTINGS = os.environ.get("SETTINGS", "nice10=--ingest-nice 10;nice19=--ingest-nice 19;sched_idle=--sched-idle").split(";")
HTTP, GRPC = "http://127.0.0.1:58487", "http://127.0.0.1:50952"
HOUR_NS = 3600 * 10**9
END_NS = int(time.time()) // 3600 * 3600 * 10**9
NOW = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(END_NS // 10**9))
SQL = open(os.path.join(ROOT, "tests", "sql", "reference_uptime.sql")).read().replace("NOW()", f"TIMESTAMP '{NOW}'")
TICK = os.sysconf("SC_CLK_TCK")
# The threads that serve queries, at the process's priority: the query
# engine's, the front ends' and the main thread.
FRONT_THREADS = ("weir-query", "weir-api", "weir")


def start_weir(data, flags):
    args = [f"{BIN}/weir", "serve", "--data-dir", data, "--grpc-listen", GRPC[7:], "--http-listen", HTTP[7:],
            "--time-column", "service_metrics=recorded_at", "--log-filter", "warn"] + flags
    server = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{HTTP}/health/ready").read()
            return server
        except OSError:
            time.sleep(0.1)
    sys.exit("weir did not become ready")


def stop(process):
    process.send_signal(signal.SIGTERM)
    process.wait()


def loadgen(args, nice=0):
    return subprocess.Popen(["nice", "-n", str(nice), f"{BIN}/loadgen", "--grpc", GRPC] + args,
                            stdout=subprocess.DEVNULL)


def metric(name):
    text = urllib.request.urlopen(f"{HTTP}/metrics").read().decode()
    return next(float(line.split()[1]) for line in text.splitlines() if line.startswith(name + " "))


def cpu_seconds(stat):
    """User + system CPU time from the text of a /proc stat file."""
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def threads(pid):
    """(tid, name, cpu seconds, run-queue wait seconds) of each thread of pid."""
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                wait_ns = int(f.read().split()[1])
        except OSError:
            continue  # the thread ended meanwhile
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        out.append((tid, name, cpu_seconds(stat), wait_ns / 1e9))
    return out


def process_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        return cpu_seconds(f.read())


def sample(server_pid, client_pid):
    ts = threads(server_pid)
    query = [t for t in ts if t[1] == "weir-query"]
    return {
        "engine": metric("weir_query_seconds_sum"),
        "query_cpu": sum(t[2] for t in query),
        "query_wait": sum(t[3] for t in query),
        "api_cpu": sum(t[2] for t in ts if t[1] == "weir-api"),
        "ingest_cpu": sum(t[2] for t in ts if t[1] not in FRONT_THREADS),
        "loadgen_cpu": process_cpu(client_pid) if client_pid else 0.0,
    }


def timed_query(server_pid, client_pid):
    before = sample(server_pid, client_pid)
    started = time.perf_counter()
    req = urllib.request.Request(f"{HTTP}/api/v1/sql", data=SQL.encode(), headers={"accept": "application/json"})
    urllib.request.urlopen(req).read()
    wall = time.perf_counter() - started
    after = sample(server_pid, client_pid)
    d = {k: after[k] - before[k] for k in before}
    return {"wall_s": wall, "engine_s": d["engine"], "http_s": wall - d["engine"], "query_cpu_s": d["query_cpu"],
            "query_wait_s": d["query_wait"], "api_cpu_s": d["api_cpu"], "ingest_cpu_s": d["ingest_cpu"],
            "loadgen_cpu_s": d["loadgen_cpu"]}


def clean_up(work, *processes):
    """A failure part way leaves no server, load generator or data behind."""
    for process in processes:
        if process and process.poll() is None:
            process.kill()
            process.wait()
    shutil.rmtree(work, ignore_errors=True)


def medians(runs):
    return {k: round(statistics.median(r[k] for r in runs), 4) for k in runs[0]}


def main():
    work = tempfile.mkdtemp(prefix="weir-breakdown.")
    data = os.path.join(work, "data")
    server = client = None
    try:
        server = start_weir(data, ["--ingest-nice", "0"])
        loadgen(["--rows", str(ROWS), "--span-hours", "24", "--end-ns", str(END_NS)]).wait()
        urllib.request.urlopen(urllib.request.Request(f"{HTTP}/api/v1/persist", data=b"")).read()
        stop(server)
        for setting in SETTINGS:
            name, _, flags = setting.partition("=")
            flags = flags.split()
            sched_idle = "--sched-idle" in flags
            flags = [f for f in flags if f != "--sched-idle"]
            server = start_weir(data, flags)
            timed_query(server.pid, None)  # untimed: page cache, catalog
            idle = [timed_query(server.pid, None) for _ in range(RUNS)]
            client = loadgen(["--streams", STREAMS, "--batch-rows", BATCH_ROWS, "--in-flight", IN_FLIGHT,
                              "--rows", "10000000000", "--seconds", str(int(WARMUP + RUNS * 3 + 10)),
                              "--span-hours", "24", "--end-ns", str(END_NS - 72 * HOUR_NS)], nice=CLIENT_NICE)
            time.sleep(1)
            if sched_idle:
                for tid, thread, _, _ in threads(server.pid):
                    if thread not in FRONT_THREADS:
                        subprocess.run(["chrt", "--idle", "-p", "0", tid], check=True)
            time.sleep(max(WARMUP - 1, 0))
            busy = [timed_query(server.pid, client.pid) for _ in range(RUNS)]
            client.kill()
            client.wait()
            stop(server)
            idle_m, busy_m = medians(idle), medians(busy)
            print(json.dumps({"setting": name, "flags": " ".join(flags + (["--sched-idle"] if sched_idle else [])),
                              "client_nice": CLIENT_NICE, "in_flight": int(IN_FLIGHT),
                              "wall_ratio": round(busy_m["wall_s"] / idle_m["wall_s"], 2),
                              "engine_ratio": round(busy_m["engine_s"] / idle_m["engine_s"], 2),
                              "idle": idle_m, "during_ingest": busy_m,
                              "during_ingest_wall_runs_s": [round(r["wall_s"], 3) for r in busy]}), flush=True)
    finally:
        clean_up(work, client, server)


if __name__ == "__main__":
    main()
