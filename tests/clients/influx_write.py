"""Writes to Weir with the official InfluxDB 2 Python client, unmodified,
the way a team's existing code would, and prints what the client saw as
JSON. Used by tests/tests/e2e_protocols/influx.rs; tests/run.sh installs
`influxdb-client` from PyPI."""

import json
import sys

from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

url = sys.argv[1]
seen = {}

with InfluxDBClient(url=url, token="any-token", org="weir") as client:
    write = client.write_api(write_options=SYNCHRONOUS)

    # Points the library builds: every field type, and tag values and a
    # measurement that need escaping on the wire.
    write.write(
        bucket="monitoring",
        record=[
            Point("host stats")
            .tag("host", "db 1")
            .tag("region", "eu,west=1")
            .field("usage_user", 12.5)
            .field("cores", 8)
            .field("ok", True)
            .field("note", 'say "hi"\\')
            .time(1700000000123456789, WritePrecision.NS),
            Point("host stats")
            .tag("host", "db-2")
            .field("usage_user", 3.25)
            .time(1700000001000000000, WritePrecision.NS),
        ],
    )

    # Line protocol text, timestamps in seconds.
    write.write(
        bucket="monitoring",
        record="disk,host=db-2 used_pct=71.5 1700000000\ndisk,host=db-3 used_pct=12 1700000060",
        write_precision=WritePrecision.S,
    )

    # A partial write: the middle line's type conflicts with the others.
    try:
        write.write(
            bucket="monitoring",
            record=[
                "cpu,host=db-3 usage_user=1.5 1700000001000000000",
                'cpu,host=db-3 usage_user="oops" 1700000002000000000',
                "cpu,host=db-3 usage_user=2.5 1700000003000000000",
            ],
        )
        seen["partial"] = None
    except ApiException as e:
        seen["partial"] = {"status": e.status, "body": json.loads(e.body)}

# The same client with gzip on: the body goes compressed.
with InfluxDBClient(url=url, token="any-token", org="weir", enable_gzip=True) as client:
    client.write_api(write_options=SYNCHRONOUS).write(
        bucket="monitoring",
        record=[f"gz,host=h{i} v={i}i 1700000000{i:03d}" for i in range(500)],
        write_precision=WritePrecision.MS,
    )

print(json.dumps(seen))
