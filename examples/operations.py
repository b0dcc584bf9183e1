"""An API that can be watched: metrics for Prometheus, traces, an audit trail, a health route,
and the HTTP client to the issuer set up for a corporate network (docs/operations.md).

    pip install 'oauth-shield[quart,otel]' opentelemetry-sdk opentelemetry-exporter-prometheus
    OAUTH_SHIELD_ISSUER=https://as.example.com OAUTH_SHIELD_AUDIENCE=https://api.example.com \\
        uvicorn examples.operations:app

Prometheus scrapes http://<host>:9464/metrics; /healthz answers without a token.
"""

from __future__ import annotations

import json
import logging
import os

from opentelemetry import metrics, trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import start_http_server
from quart import Quart
from quart_oauth_shield import Shield, current_token

from oauth_shield import events, otel

# 1. OpenTelemetry: metrics through the Prometheus exporter, spans to your tracer provider
#    (add a BatchSpanProcessor with an OTLP exporter to ship them).
resource = Resource.create({"service.name": "items-api"})
metrics.set_meter_provider(
    MeterProvider(resource=resource, metric_readers=[PrometheusMetricReader()])
)
trace.set_tracer_provider(TracerProvider(resource=resource))
if os.environ.get("METRICS_PORT", "9464") != "0":
    start_http_server(int(os.environ.get("METRICS_PORT", "9464")), addr="127.0.0.1")

# 2. Every validator of the process is measured, the one the Shield builds below included.
otel.instrument()

# 3. An audit trail from the events: refusals by fingerprint, key rotations, outages.
audit = logging.getLogger("audit")


def to_audit(event: events.Event) -> None:
    if isinstance(event, events.TokenRefused | events.KeySetRotated | events.IssuerUnavailable):
        audit.info(json.dumps({"event": event.kind, **_fields(event)}))


def _fields(event: events.Event) -> dict[str, object]:
    return {name: getattr(event, name) for name in event.__dataclass_fields__}


events.subscribe(to_audit)

# 4. The API, its validator reaching the issuer through the corporate proxy and CA.
app = Quart(__name__)
app.config.from_mapping({k: v for k, v in os.environ.items() if k.startswith("OAUTH_SHIELD_")})
shield = Shield(
    app,
    user_agent="items-api/2.3 (ops@example.com)",
    proxy=os.environ.get("ISSUER_PROXY"),  # e.g. http://proxy.internal:3128
    ca_bundle=os.environ.get("ISSUER_CA_BUNDLE"),  # e.g. /etc/ssl/private-ca.pem
    http_headers={"X-Tenant": "items"},
)
shield.health_route(app, "/healthz")  # 5. the health document, no token needed


@app.get("/items")
@shield.require("read")
async def items() -> dict[str, object]:
    return {"owner": current_token.subject, "items": []}
