"""Config of OpenTelemetry export (`telemetry.otel`): where spans go, what share is kept, under which name.

Every key may be left unset and then falls back to the standard `OTEL_*` variables, so a deployment
that already sets them for its other services needs no Warden-specific line.
"""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from proxy.section import Section


class OtelSettings(Section):
    """Tracing is on when an endpoint is known: here, or `OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT`."""

    endpoint: str | None = Field(None, description="OTLP/HTTP base URL (http://collector:4318; /v1/traces is "
                                 "added) or the full traces URL ending in /v1/traces.")
    # Secret: a Langfuse or vendor key travels here (`Authorization: Basic ...`); never printed.
    headers: dict[str, SecretStr] = Field(default_factory=dict, description="Sent with every export.")
    sample_ratio: float | None = Field(None, ge=0, le=1, description="Share of new traces kept; a caller's "
                                       "`traceparent` decides for its own. Default: OTEL_TRACES_SAMPLER_ARG, else 1.")
    service_name: str | None = Field(None, description="Default: OTEL_SERVICE_NAME, else `warden`.")

    @field_validator("endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL (OTLP over HTTP)")
        return value
