"""schemathesis against Warden's own OpenAPI description, on a real `warden serve` process.

Valid and invalid requests for every documented route: Warden itself never answers 5xx (the
upstream here is healthy), and every error is OpenAI-shaped, as the description promises.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings

from tests.support.procs import Child, start_fault_upstream, start_warden

schemathesis = pytest.importorskip("schemathesis")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Child]:
    tmp = tmp_path_factory.mktemp("openapi")
    upstream = start_fault_upstream(tmp)
    config = {"upstreams": [{"name": "main", "backends": [{"url": upstream.url}]}],
              "telemetry": {"enabled": False}, "server": {"shutdown_grace_s": 1},
              "detectors": [{"name": "secrets", "type": "patterns"}],
              "policy": {"rules": [{"detector": "secrets", "action": "redact"}]},
              "governance": {"admin_token_sha256": ["0" * 64]}}
    warden = start_warden(tmp, config)
    yield warden
    warden.stop()
    upstream.kill()
    assert "Traceback" not in warden.log(), warden.log()[-3000:]


def check(response: Any) -> None:
    where = (response.request.method, response.request.url, response.status_code, response.text[:300])
    assert response.status_code < 500, where
    if response.status_code >= 400:
        assert response.headers.get("content-type", [""])[0].startswith("application/json"), where
        error: Any = response.json()["error"]
        assert error["message"] and isinstance(error["type"], str) and "param" in error and "code" in error


def test_openapi_json_is_served_and_lists_the_routes(served: Child) -> None:
    spec = requests.get(served.url + "/openapi.json", timeout=5).json()
    assert {"/v1/chat/completions", "/v1/models", "/healthz", "/admin/keys"} <= set(spec["paths"])
    json.dumps(spec)


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_no_5xx_and_openai_errors_for_generated_requests(served: Child, mode: str, tmp_path: Path) -> None:
    schema = schemathesis.openapi.from_url(served.url + "/openapi.json")
    strategy = schema.as_strategy(generation_mode=schemathesis.GenerationMode(mode))
    session = requests.Session()

    @settings(max_examples=60, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case: Any) -> None:
        if isinstance(case.body, dict) and case.body.get("model") in ("hang", "hang-mid", "endless", "flood"):
            return  # the fault upstream's own fault switches, not Warden's input handling
        check(case.call(base_url=served.url, session=session, timeout=10))

    run()
