"""OpenTelemetry traces of the request path, and the log format that carries the same ids.

The app wires it (proxy/app/contexts.py `tracing_ctx`): a tracer provider owned by that context,
exporting over OTLP/HTTP on a thread of its own. Nothing here is global: no provider or
propagator is installed in OpenTelemetry's module state.
"""
