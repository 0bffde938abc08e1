"""Exports metrics, logs and traces to Weir with the official OpenTelemetry
Python SDK and its OTLP exporters, unmodified (the e2e test of OTLP).

    python3 otlp_export.py grpc 127.0.0.1:4317 SERVICE
    python3 otlp_export.py http http://127.0.0.1:4318 SERVICE

Inside one span, a log line is written: its trace id is the span's, which
the test joins in SQL. Prints JSON: the trace id and the span id (hex) and
each exporter's last result.
"""

import json
import logging
import sys

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExportResult,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import LogExportResult, SimpleLogRecordProcessor
from opentelemetry.metrics import Observation

transport, endpoint, service = sys.argv[1], sys.argv[2], sys.argv[3]
if transport == "grpc":
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

    from grpc import Compression as GrpcCompression

    # gzip'd spans, as the Collector sends by default.
    span_exporter = OTLPSpanExporter(
        endpoint=endpoint, insecure=True, compression=GrpcCompression.Gzip
    )
    metric_exporter = OTLPMetricExporter(endpoint=endpoint, insecure=True)
    log_exporter = OTLPLogExporter(endpoint=endpoint, insecure=True)
else:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http import Compression

    # gzip, as the Collector and most SDK deployments send.
    span_exporter = OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", compression=Compression.Gzip)
    metric_exporter = OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics")
    log_exporter = OTLPLogExporter(endpoint=f"{endpoint}/v1/logs")

results = {}


def recording(exporter, name):
    """Wraps `export` to keep the exporter's last answer."""
    export = exporter.export

    def wrapped(*args, **kwargs):
        result = export(*args, **kwargs)
        results[name] = getattr(result, "name", str(result))
        return result

    exporter.export = wrapped
    return exporter


resource = Resource.create({"service.name": service, "deployment.environment": "e2e"})

tracer_provider = TracerProvider(resource=resource)
tracer_provider.add_span_processor(SimpleSpanProcessor(recording(span_exporter, "spans")))
tracer = tracer_provider.get_tracer("weir.e2e", "1.0")

logger_provider = LoggerProvider(resource=resource)
logger_provider.add_log_record_processor(SimpleLogRecordProcessor(recording(log_exporter, "logs")))
log = logging.getLogger("checkout")
log.setLevel(logging.INFO)
log.propagate = False
log.addHandler(LoggingHandler(level=logging.INFO, logger_provider=logger_provider))

reader = PeriodicExportingMetricReader(
    recording(metric_exporter, "metrics"), export_interval_millis=3_600_000
)
meter_provider = MeterProvider(
    resource=resource,
    metric_readers=[reader],
    views=[
        View(instrument_name="payment.latency", aggregation=ExponentialBucketHistogramAggregation())
    ],
)
meter = meter_provider.get_meter("weir.e2e.meter", "2.0")
requests = meter.create_counter("http.requests", unit="1")
duration = meter.create_histogram("http.duration", unit="ms")
latency = meter.create_histogram("payment.latency", unit="ms")
queue = meter.create_up_down_counter("queue.depth")
meter.create_observable_gauge(
    "cpu.temperature", callbacks=[lambda _: [Observation(41.5, {"core": "0"})]]
)

for route, ms in [("/pay", 12.0), ("/pay", 250.0), ("/cart", 3.0)]:
    requests.add(1, {"http.route": route})
    duration.record(ms, {"http.route": route})
    latency.record(ms)
queue.add(5)
queue.add(-2)

with tracer.start_as_current_span("checkout", attributes={"order.id": "A-17"}) as span:
    with tracer.start_as_current_span("charge card") as child:
        child.add_event("card declined", {"reason": "insufficient funds"})
        log.error("payment failed for order %s", "A-17", extra={"order.id": "A-17"})
    context = span.get_span_context()

# Shutting down collects and exports the metrics once (a flush before it
# would export the cumulative sums twice, at two times).
meter_provider.shutdown()
tracer_provider.shutdown()
logger_provider.shutdown()

print(
    json.dumps(
        {
            "trace_id": format(context.trace_id, "032x"),
            "span_id": format(context.span_id, "016x"),
            "results": results,
        }
    )
)
