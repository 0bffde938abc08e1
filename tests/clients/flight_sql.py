"""ADBC's Flight SQL driver against Weir, unmodified, as a notebook uses it.

Usage: flight_sql.py grpc://host:port reference_uptime.sql
Prints one JSON object of what it saw; errors are recorded, not raised.
"""

import json
import sys

import adbc_driver_flightsql.dbapi as flight_sql

uri, reference_path = sys.argv[1], sys.argv[2]
with open(reference_path) as f:
    reference = f.read()

out = {}


def refused(cursor, sql, parameters=None):
    try:
        cursor.execute(sql, parameters)
        cursor.fetchall()
    except Exception as e:  # the driver's errors differ by failure
        return str(e)
    return None


with flight_sql.connect(uri) as conn:
    out["vendor"] = conn.adbc_get_info().get("vendor_name")
    with conn.cursor() as cur:
        cur.execute(reference)
        table = cur.fetch_arrow_table()
        out["reference"] = table.to_pylist()

        cur.execute(
            "SELECT status, status_code, recorded_at FROM service_metrics "
            "ORDER BY recorded_at DESC, service_name LIMIT 3"
        )
        latest = cur.fetch_arrow_table()
        out["latest_types"] = [str(field.type) for field in latest.schema]
        out["latest_rows"] = latest.num_rows

        # Prepared explicitly, then executed: the prepared statement path.
        count = "SELECT count(*) AS n FROM service_metrics"
        cur.adbc_prepare(count)
        cur.execute(count)
        out["prepared_count"] = cur.fetchone()[0]

        out["insert"] = refused(
            cur, "INSERT INTO service_metrics (status) VALUES ('x')"
        )
        out["broken"] = refused(cur, "SELEC 1")
        out["unknown"] = refused(cur, "SELECT * FROM nope")
        # Parameters, bound as values: an injection attempt is a string.
        by_code = "SELECT count(*) FROM service_metrics WHERE status_code = $1"
        cur.execute(by_code, (503,))
        out["bound_503"] = cur.fetchone()[0]
        by_status = "SELECT count(*) FROM service_metrics WHERE status = $1"
        cur.execute(by_status, ("healthy",))
        out["bound_healthy"] = cur.fetchone()[0]
        cur.execute(by_status, ("healthy' OR '1'='1",))
        out["bound_injection"] = cur.fetchone()[0]
        out["bad_parameter"] = refused(cur, by_code, ("not a number",))

    schema = conn.adbc_get_table_schema("service_metrics")
    out["table_schema"] = {field.name: str(field.type) for field in schema}
    objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
    out["tables"] = sorted(
        table["table_name"]
        for catalog in objects
        for db_schema in catalog["catalog_db_schemas"] or []
        for table in db_schema["db_schema_tables"] or []
    )

print(json.dumps(out, default=str))
