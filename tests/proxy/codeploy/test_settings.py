"""Co-deploy config: what is refused with a key path, and how GPUs are shared out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from proxy.codeploy.settings import ManagedSettings
from proxy.settings import ConfigError, build_settings, load_settings


def group(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "backends": [{"url": "http://h:1"}], **extra}


@pytest.mark.parametrize(("upstreams", "message"), [
    ([{"name": "m", "managed": {"command": ["vllm", "serve", "x"]}}], "must contain {port}"),
    ([{"name": "m"}], "a group needs backends (or managed servers)"),
    ([group("a"), group("b", canary={"of": "nope", "weight": 5})], "canary.of names no other group"),
    ([group("a"), group("b", canary={"of": "a", "weight": 60}), group("c", canary={"of": "a", "weight": 50})],
     "add up to more than 100"),
    ([group("a"), group("b", canary={"of": "a", "weight": 5}), group("c", canary={"of": "b", "weight": 5})],
     "is itself a canary"),
])
def test_bad_codeploy_config_is_refused(upstreams: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_settings({"upstreams": upstreams})
    assert message in str(caught.value)


def test_managed_group_needs_no_static_backends() -> None:
    settings = build_settings({"upstreams": [{"name": "m", "managed": {
        "command": ["vllm", "serve", "llama", "--port", "{port}"], "replicas": 2, "gpus": ["0", "1", "2", "3"]}}]})
    managed = settings.upstreams[0].managed
    assert managed is not None and settings.upstreams[0].backends == []
    assert [managed.gpu_of(i) for i in range(2)] == ["0,1", "2,3"]


def test_more_replicas_than_gpus_share_them() -> None:
    managed = ManagedSettings(command=["s", "{port}"], replicas=3, gpus=["0", "1"])
    assert [managed.gpu_of(i) for i in range(3)] == ["0", "1", "0"]
    assert ManagedSettings(command=["s", "{port}"]).gpu_of(0) == ""


def test_shipped_codeploy_example_is_valid() -> None:
    settings = load_settings(Path(__file__).resolve().parents[3] / "examples" / "codeploy.yaml")
    chat, canary = settings.upstreams
    assert chat.managed is not None and chat.managed.replicas == 2 and chat.balancer == "least_loaded"
    assert canary.canary is not None and canary.canary.of == "chat" and canary.canary.smoke is not None
