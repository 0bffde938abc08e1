"""psycopg 3 against Weir's Postgres port, unmodified, as an analyst's script
and Grafana's PostgreSQL data source use it.

Usage: postgres.py host port reference_uptime.sql
Prints one JSON object of what it saw; errors are recorded, not raised.

Grafana cannot be installed here, so the queries its PostgreSQL data source
sends are replayed: the health check, the query editor's table and column
lists, and a time-series panel's query as Grafana sends it once it has
expanded its macros ($__timeGroupAlias, $__timeFilter) into plain SQL.
"""

import datetime
import json
import sys

import psycopg

host, port, reference_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(reference_path) as f:
    reference = f.read()

out = {}


def refused(conn, sql, parameters=None):
    """The error's SQLSTATE and message, or None if the query ran."""
    try:
        with conn.cursor() as cur:
            cur.execute(sql, parameters)
            cur.fetchall()
    except psycopg.Error as e:
        return {"sqlstate": e.sqlstate, "message": str(e)}
    return None


def columns(cur):
    return [d.name for d in cur.description]


# autocommit=False is psycopg's default: every statement runs inside the
# BEGIN it sends first, and ends with COMMIT/ROLLBACK.
with psycopg.connect(host=host, port=port, user="analyst", dbname="weir") as conn:
    out["server_version"] = conn.info.parameter_status("server_version")
    with conn.cursor() as cur:
        # The reference query, verbatim, server-side (extended protocol).
        cur.execute(reference)
        out["reference_columns"] = columns(cur)
        out["reference"] = [dict(zip(columns(cur), row)) for row in cur.fetchall()]

        cur.execute(
            "SELECT service_name, status, status_code, response_ms, recorded_at "
            "FROM service_metrics WHERE response_ms IS NOT NULL "
            "ORDER BY recorded_at DESC, service_name LIMIT 3"
        )
        latest = cur.fetchall()
        out["latest_python_types"] = [type(v).__name__ for v in latest[0]]
        out["latest_tz_aware"] = latest[0][4].tzinfo is not None

        cur.execute(
            "SELECT count(*) FROM service_metrics WHERE response_ms IS NULL"
        )
        out["null_count"] = cur.fetchone()[0]
        cur.execute(
            "SELECT response_ms FROM service_metrics WHERE response_ms IS NULL LIMIT 1"
        )
        out["null_value"] = cur.fetchone()[0]
        cur.execute("SELECT true AS t, false AS f, 1.5::double precision AS x")
        out["scalars"] = list(cur.fetchone())

        # Server-side parameters: values, never SQL.
        by_code = "SELECT count(*) FROM service_metrics WHERE status_code = %s"
        cur.execute(by_code, (503,))
        out["bound_503"] = cur.fetchone()[0]
        by_status = "SELECT count(*) FROM service_metrics WHERE status = %s"
        cur.execute(by_status, ("healthy",))
        out["bound_healthy"] = cur.fetchone()[0]
        cur.execute(by_status, ("healthy' OR '1'='1",))
        out["bound_injection"] = cur.fetchone()[0]
        cur.execute(by_status, ("healthy'; DROP TABLE service_metrics; --",))
        out["bound_injection_drop"] = cur.fetchone()[0]
        since = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
        cur.execute(
            "SELECT count(*) FROM service_metrics WHERE recorded_at >= %s", (since,)
        )
        out["bound_since"] = cur.fetchone()[0]
        # Prepared once, run many times.
        for code in (200, 503):
            cur.execute(by_code, (code,), prepare=True)
            out[f"prepared_{code}"] = cur.fetchone()[0]

        # SET / SHOW handshakes, as JDBC and Grafana send them.
        cur.execute("SET application_name = 'weir-test'")
        cur.execute("SET extra_float_digits = 3")
        cur.execute("SHOW search_path")
        out["search_path"] = cur.fetchone()[0]
    conn.commit()

    out["insert"] = refused(conn, "INSERT INTO service_metrics (status) VALUES ('x')")
    conn.rollback()
    out["drop"] = refused(conn, "DROP TABLE service_metrics")
    conn.rollback()
    out["broken"] = refused(conn, "SELEC 1")
    conn.rollback()
    out["unknown"] = refused(conn, "SELECT * FROM nope")
    conn.rollback()
    out["bad_parameter"] = refused(conn, by_code, ("not a number",))
    conn.rollback()

# Grafana's PostgreSQL data source, replayed.
with psycopg.connect(host=host, port=port, user="grafana", dbname="weir", autocommit=True) as conn:
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
        out["grafana_health"] = cur.fetchone()[0]
        cur.execute(
            """SELECT quote_ident(table_name) AS "table" FROM information_schema.tables
               WHERE quote_ident(table_schema) NOT IN ('information_schema', 'pg_catalog',
                 '_timescaledb_cache', '_timescaledb_catalog', '_timescaledb_internal',
                 '_timescaledb_config', 'timescaledb_information', 'timescaledb_experimental')
               ORDER BY 1"""
        )
        out["grafana_tables"] = [row[0] for row in cur.fetchall()]
        cur.execute(
            """SELECT quote_ident(column_name) AS "column", data_type AS "type"
               FROM information_schema.columns
               WHERE quote_ident(table_name) = 'service_metrics'
               ORDER BY 1"""
        )
        out["grafana_columns"] = {name: kind for name, kind in cur.fetchall()}
        now = datetime.datetime.now(datetime.timezone.utc)
        frm = (now - datetime.timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
        to = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        # SELECT $__timeGroupAlias(recorded_at, '1h'), avg(response_ms) AS "avg"
        # FROM service_metrics WHERE $__timeFilter(recorded_at) GROUP BY 1 ORDER BY 1
        cur.execute(
            f"""SELECT floor(extract(epoch from recorded_at)/3600)*3600 AS "time",
                       avg(response_ms) AS "avg"
                FROM service_metrics
                WHERE recorded_at BETWEEN '{frm}' AND '{to}'
                GROUP BY 1 ORDER BY 1"""
        )
        panel = cur.fetchall()
        out["grafana_panel_rows"] = len(panel)
        # An hour whose checks all lack a response time averages to NULL.
        out["grafana_panel_first"] = (
            [None if v is None else float(v) for v in panel[0]] if panel else None
        )
        # A table panel over the last hour, with a time column Grafana keeps.
        cur.execute(
            f"""SELECT recorded_at AS "time", service_name, status_code
                FROM service_metrics
                WHERE recorded_at BETWEEN '{frm}' AND '{to}' AND service_name = 'svc-00'
                ORDER BY 1 DESC LIMIT 5"""
        )
        out["grafana_table_rows"] = len(cur.fetchall())

print(json.dumps(out, default=str))
