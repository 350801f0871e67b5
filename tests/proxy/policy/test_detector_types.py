"""The `detectors:` section: YAML written for the built-in types, and a plugin type, through the policy's
settings and builder, as `warden serve` reads and builds them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ValidationError

from detectors.registry import ENTRY_POINT_GROUP
from proxy.policy.build import build_policy
from proxy.policy.engine import Action, Scope
from proxy.policy.metrics import PolicyMetrics
from proxy.policy.settings import DetectorSettings, PolicySettings
from proxy.tasks import TaskOwner
from tests.detectors.plugin_dist import SHOUTING_MODULE, installed_plugin

ROOT = Path(__file__).resolve().parents[3]


class Config(BaseModel):
    """The two sections of warden.yaml this package reads."""

    detectors: list[DetectorSettings] = []
    policy: PolicySettings = PolicySettings()


@pytest.fixture
def shouting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    with installed_plugin(tmp_path, monkeypatch, "warden_shouting", SHOUTING_MODULE,
                          f"[{ENTRY_POINT_GROUP}]\nshouting = warden_shouting:SHOUTING\n"):
        yield


@pytest.mark.parametrize("path", ["deploy/warden.yaml", "examples/warden.yaml"])
def test_shipped_configs_read_as_before(path: str) -> None:
    entries = yaml.safe_load((ROOT / path).read_text())["detectors"]
    config = Config.model_validate({"detectors": entries})
    assert [d.type for d in config.detectors] == [e["type"] for e in entries]
    for entry, dumped in zip(entries, config.model_dump()["detectors"], strict=True):
        assert dumped | entry == dumped  # every key written keeps its value; defaults fill the rest


def test_an_unknown_type_fails_at_its_path_with_the_known_types(shouting: None) -> None:
    with pytest.raises(ValidationError) as caught:
        Config.model_validate({"detectors": [{"name": "secrets", "type": "patterns"},
                                             {"name": "x", "type": "nonesuch"}]})
    errors = caught.value.errors()
    assert [e["loc"] for e in errors] == [("detectors", 1)]
    assert "unknown detector type 'nonesuch'; known types: injection_rules, leakage, patterns, scanner, " \
           "similarity, shouting" in errors[0]["msg"]


async def test_a_plugin_type_from_yaml_is_built_into_the_chain_and_enforced(shouting: None) -> None:
    config = Config.model_validate(yaml.safe_load("""
detectors:
  - {name: secrets, type: patterns}
  - {name: caps, type: shouting, min_letters: 4, directions: [request], on_error: closed}
policy:
  rules:
    - {detector: caps, action: block}
"""))
    caps = config.detectors[1]
    assert type(caps).__name__ == "ShoutingOptions" and caps.on_error == "closed"
    assert config.model_dump()["detectors"][1]["min_letters"] == 4
    background = TaskOwner("test")
    service = await build_policy(config.detectors, config.policy, None, PolicyMetrics(CollectorRegistry()),
                                 background)
    assert [e.detector.name for e in service.chain.entries] == ["secrets", "caps"]
    shouted = service.engine.decide(await service.chain.scan(["STOP THAT NOW"], "request"), "request", Scope())
    calm = service.engine.decide(await service.chain.scan(["Stop that now"], "request"), "request", Scope())
    assert shouted.action == Action.BLOCK and calm.action == Action.ALLOW
    await background.close(1.0)
