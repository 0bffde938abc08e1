"""Weir over TLS through real clients that verify a test CA: psycopg
(sslmode=verify-full), ADBC's Flight SQL driver and pyarrow.flight
(grpc+tls), each with a token.

Usage: tls.py PG_PORT GRPC_PORT CA_PEM QUERY_TOKEN WRITE_TOKEN
Connects to `localhost` (the name the test certificate carries). Prints one
JSON object of what each client saw; errors are recorded, never raised.
"""

import json
import socket
import ssl
import struct
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


def pg_stuffed():
    """An SSLRequest with a startup packet sent behind it in the clear (the
    attack of Postgres' CVE-2021-23222): those bytes must not be taken as
    if they had come through TLS. What the server says over TLS is kept."""
    body = struct.pack("!I", 196608) + b"user\0analyst\0database\0weir\0\0"
    startup = struct.pack("!I", len(body) + 4) + body
    ssl_request = struct.pack("!II", 8, 80877103)
    with socket.create_connection(("localhost", int(pg_port)), timeout=10) as sock:
        sock.sendall(ssl_request + startup)
        if sock.recv(1) != b"S":
            return {"error": "TLS refused"}
        context = ssl.create_default_context(cafile=ca_path)
        with context.wrap_socket(sock, server_hostname="localhost") as tls:
            try:
                return {"answer": tls.recv(1024).hex()}
            except (ssl.SSLError, OSError) as e:
                return {"answer": "", "closed": str(e)}


try:
    out["pg_stuffed"] = pg_stuffed()
except Exception as e:
    out["pg_stuffed"] = {"error": repr(e)}

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
