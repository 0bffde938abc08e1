"""Independent oracle: runs a SQL file in DuckDB over service_metrics rows
from a CSV and prints the result as JSON (a list of row objects).

usage: duckdb_query.py ROWS.csv QUERY.sql
The CSV has a header: service_name,status,response_ms,status_code,recorded_at
with recorded_at in RFC 3339 UTC; empty cells are NULL.
"""
import json
import sys

import duckdb


def main() -> None:
    rows_csv, query_sql = sys.argv[1], sys.argv[2]
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(
        """
        CREATE TABLE service_metrics AS
        SELECT service_name::VARCHAR AS service_name,
               status::VARCHAR AS status,
               response_ms::DOUBLE AS response_ms,
               status_code::BIGINT AS status_code,
               recorded_at::TIMESTAMPTZ AS recorded_at
        FROM read_csv(?, header = true, all_varchar = true)
        """,
        [rows_csv],
    )
    with open(query_sql) as f:
        query = f.read()
    cursor = con.execute(query)
    names = [d[0] for d in cursor.description]
    out = [dict(zip(names, row)) for row in cursor.fetchall()]
    json.dump(out, sys.stdout, default=str)


if __name__ == "__main__":
    main()
