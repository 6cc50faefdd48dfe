"""scenario.py plugin (--plugin FILE): the anthropic-native and traceloop setups, exporting OTLP over gRPC.

scenario.py's own anthropic-native setup hard-codes the OTLP/HTTP exporter, and traceloop picks its
exporter from the endpoint's scheme, not from OTEL_EXPORTER_OTLP_PROTOCOL.  These replacements
keep everything else as scenario.py has it (resource, batch processors, what is exported) and
only swap the transport.  OpenLIT honours OTEL_EXPORTER_OTLP_PROTOCOL=grpc by itself, so its
setup is not replaced; the test sets that variable (and OTEL_EXPORTER_OTLP_INSECURE=true) for
every gRPC run.

`endpoint` is what scenario.py got as --otlp: http://HOST:PORT of the gRPC receiver.
"""
import os


def _host_port(endpoint):
    """http://127.0.0.1:4317/ -> 127.0.0.1:4317"""
    return endpoint.split("://", 1)[-1].rstrip("/")


def setup_anthropic_native_grpc(service, endpoint):
    # scenario.otel_sdk(service, endpoint) with the gRPC span exporter instead of the HTTP one.
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    res = Resource.create({"service.name": service, "deployment.environment.name": "fixture"})
    tp = TracerProvider(resource=res)
    tp.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=_host_port(endpoint), insecure=True)))
    trace.set_tracer_provider(tp)
    return {"tracer_provider": tp}


def setup_traceloop_grpc(service, endpoint):
    # scenario.setup_traceloop with a grpc:// endpoint: traceloop then builds gRPC span, metric and
    # log exporters.  Its metric and log exporters take no `insecure` argument, hence the variable.
    os.environ.setdefault("TRACELOOP_TELEMETRY", "false")
    os.environ["OTEL_EXPORTER_OTLP_INSECURE"] = "true"
    from traceloop.sdk import Traceloop
    Traceloop.init(app_name=service, api_endpoint="grpc://" + _host_port(endpoint), disable_batch=False,
                   resource_attributes={"deployment.environment.name": "fixture"})
    return {}


SETUPS = {
    "anthropic-native": setup_anthropic_native_grpc,
    "traceloop": setup_traceloop_grpc,
}
