"""Weir over TLS through real clients that verify a test CA: psycopg
(sslmode=verify-full), ADBC's Flight SQL driver and pyarrow.flight
(grpc+tls), each with a token.

Usage: tls.py PG_PORT GRPC_PORT CA_PEM QUERY_TOKEN WRITE_TOKEN
Connects to `localhost` (the name the test certificate carries). Prints one
JSON object of what each client saw; errors are recorded, never raised.
"""

import json
import sys

import adbc_driver_flightsql.dbapi as flight_sql
import psycopg
import pyarrow as pa
import pyarrow.flight as flight

pg_port, grpc_port, ca_path, query_token, write_token = sys.argv[1:6]
with open(ca_path, "rb") as f:
    ca = f.read()
grpc_uri = f"grpc+tls://localhost:{grpc_port}"
out = {}


def pg(sslmode):
    try:
        with psycopg.connect(
            host="localhost",
            port=int(pg_port),
            user="analyst",
            dbname="weir",
            password=query_token,
            sslmode=sslmode,
            sslrootcert=ca_path,
            connect_timeout=10,
        ) as conn:
            with conn.cursor() as cur:
                cur.execute("SELECT %s::bigint + 1 AS n", (41,))
                return {"n": cur.fetchone()[0], "ssl": conn.info.pgconn.ssl_in_use}
    except psycopg.Error as e:
        return {"error": str(e)}


out["pg_verify_full"] = pg("verify-full")
out["pg_disable"] = pg("disable")

try:
    with flight_sql.connect(
        grpc_uri,
        db_kwargs={
            "adbc.flight.sql.client_option.tls_root_certs": ca.decode(),
            "adbc.flight.sql.authorization_header": f"Bearer {query_token}",
        },
    ) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT 42 AS n")
            out["adbc"] = {"n": cur.fetchone()[0]}
except Exception as e:
    out["adbc"] = {"error": str(e)}

client = flight.FlightClient(grpc_uri, tls_root_certs=ca)
try:
    options = flight.FlightCallOptions(
        headers=[(b"authorization", f"Bearer {write_token}".encode())], timeout=30
    )
    table = pa.table(
        {"time": pa.array([1_700_000_000_000], pa.timestamp("ms")), "cpu": [0.25]}
    )
    writer, reader = client.do_put(
        flight.FlightDescriptor.for_path("tls_flight"), table.schema, options=options
    )
    writer.write_table(table)
    writer.done_writing()
    ack = reader.read()
    writer.close()
    out["put"] = {"ack": None if ack is None else ack.to_pybytes().decode()}
except Exception as e:
    out["put"] = {"error": str(e)}
finally:
    client.close()

print(json.dumps(out))
