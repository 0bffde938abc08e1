"""Weir's doors with and without tokens, through real clients: psycopg
(server-side parameters), ADBC's Flight SQL driver (Basic handshake and a
bearer header) and pyarrow.flight's DoPut.

Usage: auth.py PG_HOST PG_PORT GRPC_URI QUERY_TOKEN WRITE_TOKEN
Prints one JSON object of what each client saw; errors are recorded (as
their SQLSTATE or message), never raised.
"""

import json
import sys

import adbc_driver_flightsql.dbapi as flight_sql
import psycopg
import pyarrow as pa
import pyarrow.flight as flight

pg_host, pg_port, grpc_uri, query_token, write_token = sys.argv[1:6]
out = {}


def pg(password):
    """A count with a server-side parameter, or the refusal's SQLSTATE."""
    try:
        with psycopg.connect(
            host=pg_host,
            port=int(pg_port),
            user="analyst",
            dbname="weir",
            password=password,
            connect_timeout=10,
        ) as conn:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT count(*) FROM service_metrics WHERE status = %s",
                    ("healthy",),
                    prepare=True,
                )
                return {"rows": cur.fetchone()[0]}
    except psycopg.Error as e:
        return {"sqlstate": getattr(e, "sqlstate", None), "error": str(e)}


out["pg_none"] = pg("")
out["pg_query"] = pg(query_token)
out["pg_write"] = pg(write_token)


def adbc(db_kwargs):
    try:
        with flight_sql.connect(grpc_uri, db_kwargs=db_kwargs) as conn:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT count(*) AS n FROM service_metrics WHERE status = $1",
                    ("healthy",),
                )
                return {"rows": cur.fetchone()[0]}
    except Exception as e:  # the driver's errors differ by failure
        return {"error": str(e)}


out["adbc_none"] = adbc({})
# username/password: the driver's Handshake trades Basic for a bearer token.
out["adbc_basic_query"] = adbc({"username": "analyst", "password": query_token})
out["adbc_header_query"] = adbc(
    {"adbc.flight.sql.authorization_header": f"Bearer {query_token}"}
)
out["adbc_basic_write"] = adbc({"username": "ingest", "password": write_token})


def put(token):
    """DoPut of one batch to `auth_flight`, with the token as a header."""
    client = flight.FlightClient(grpc_uri)
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    options = flight.FlightCallOptions(headers=headers, timeout=30)
    table = pa.table(
        {
            "time": pa.array([1_700_000_000_000], pa.timestamp("ms")),
            "host": ["a"],
            "cpu": [0.5],
        }
    )
    try:
        descriptor = flight.FlightDescriptor.for_path("auth_flight")
        writer, reader = client.do_put(descriptor, table.schema, options=options)
        writer.write_table(table)
        writer.done_writing()
        ack = reader.read()
        writer.close()
        return {"ack": None if ack is None else ack.to_pybytes().decode()}
    except Exception as e:
        return {"error": str(e)}
    finally:
        client.close()


out["put_none"] = put(None)
out["put_query"] = put(query_token)
out["put_write"] = put(write_token)

print(json.dumps(out))
