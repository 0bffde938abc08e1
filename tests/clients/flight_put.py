"""Writes Arrow record batches to Weir with pyarrow.flight's DoPut, as Arrow
tooling does (the e2e test of Flight ingest).

    python3 flight_put.py grpc://127.0.0.1:PORT

Writes three batches to `flight_metrics` (Arrow types Weir casts: millisecond
timestamps, int8-keyed dictionaries, float32, int32, large strings), then a
batch with a NaN, then a batch to a reserved table, each on its own stream.
Prints JSON: the acknowledgements of the good stream and each refusal.
"""

import json
import sys

import pyarrow as pa
import pyarrow.flight as flight

location = sys.argv[1]
client = flight.FlightClient(location)

schema = pa.schema(
    [
        ("time", pa.timestamp("ms")),
        ("host", pa.dictionary(pa.int8(), pa.string())),
        ("cpu", pa.float32()),
        ("cores", pa.int32()),
        ("note", pa.large_string()),
    ]
)


def batch(start_ms, n, cpu=None):
    return pa.record_batch(
        [
            pa.array([start_ms + i for i in range(n)], pa.timestamp("ms")),
            pa.array([f"host-{i % 3}" for i in range(n)]).dictionary_encode().cast(
                pa.dictionary(pa.int8(), pa.string())
            ),
            pa.array([cpu if cpu is not None else i / 4 for i in range(n)], pa.float32()),
            pa.array([i if i % 2 == 0 else None for i in range(n)], pa.int32()),
            pa.array([f"row {i}" for i in range(n)], pa.large_string()),
        ],
        schema=schema,
    )


def put(table, batches):
    """One DoPut stream; returns the acks, or the error text."""
    descriptor = flight.FlightDescriptor.for_path(table)
    writer, reader = client.do_put(descriptor, schema)
    acks = []
    try:
        for b in batches:
            writer.write_batch(b)
            buf = reader.read()
            if buf is None:
                break  # the server ended the stream: close() raises why
            acks.append(json.loads(buf.to_pybytes()))
        writer.done_writing()
        writer.close()
    except (flight.FlightError, pa.ArrowException) as e:  # INVALID_ARGUMENT is ArrowInvalid
        return {"acks": acks, "error": str(e)}
    return {"acks": acks}


T = 1_700_000_000_000
out = {
    "good": put("flight_metrics", [batch(T, 1000), batch(T + 1000, 1000), batch(T + 2000, 500)]),
    "nan": put("flight_metrics", [batch(T + 5000, 10), batch(T + 6000, 3, cpu=float("nan"))]),
    "reserved": put("weir_alerts", [batch(T, 1)]),
}
print(json.dumps(out))
