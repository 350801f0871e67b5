"""Checks that need no running Warden: the JSON is what the generator makes, it type-checks against
Grafana's own schema (`@grafana/schema`, tsc --strict), the rules pass promtool, provisioning agrees."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from dashboards.generate import build_all
from tests.dashboards.queries import DASHBOARDS, RULES, boards

# JSON holds a string enum's value ("absolute"), TypeScript wants the member: widen enums to their values.
AS_JSON = """export type AsJson<T> = T extends string ? `${T}` : T extends ReadonlyArray<infer U> ? AsJson<U>[]
  : T extends object ? { [K in keyof T]: AsJson<T[K]> } : T;
"""
TSCONFIG = {"compilerOptions": {"strict": True, "noEmit": True, "target": "es2022", "module": "esnext",
                                "moduleResolution": "bundler", "skipLibCheck": True}, "include": ["*.ts"]}


def test_json_is_generated_from_views() -> None:
    assert {p: p.read_text() for p in build_all()} == build_all(), "run: python -m dashboards.generate"


def typecheck(tsc: list[str], work: Path, dashboards: dict[str, str]) -> subprocess.CompletedProcess[str]:
    (work / "node_modules").symlink_to(DASHBOARDS / ".tsc" / "node_modules")
    (work / "json.ts").write_text(AS_JSON)
    (work / "tsconfig.json").write_text(json.dumps(TSCONFIG))
    for name, text in dashboards.items():
        (work / f"{name.replace('-', '_')}.ts").write_text(
            "import type { Dashboard } from '@grafana/schema';\nimport type { AsJson } from './json';\n"
            f"export const dashboard: AsJson<Dashboard> = {text};\n")
    return subprocess.run([*tsc, "-p", str(work / "tsconfig.json")], capture_output=True, text=True, timeout=120)


def test_dashboards_typecheck_against_grafana_schema(tsc: list[str], tmp_path: Path) -> None:
    texts = {p.stem: p.read_text() for p in sorted(DASHBOARDS.glob("warden-*.json"))}
    assert len(texts) == 6
    good = tmp_path / "good"
    good.mkdir()
    result = typecheck(tsc, good, texts)
    assert result.returncode == 0, result.stdout + result.stderr
    # ... and the check can fail: an unknown key in a panel's field config is refused.
    bad = tmp_path / "bad"
    bad.mkdir()
    broken = texts["warden-overview"].replace('"unit": "reqps"', '"unit": "reqps", "colour": "red"', 1)
    result = typecheck(tsc, bad, {"warden-overview": broken})
    assert result.returncode != 0 and "colour" in result.stdout


def test_promtool_checks_rules(promtool: str) -> None:
    result = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 13 rules found" in result.stdout  # + the two budget alerts (80% and 100%)


def test_provisioning_matches_the_dashboards() -> None:
    sources = yaml.safe_load((DASHBOARDS / "provisioning" / "datasources" / "warden.yaml").read_text())
    uids = {d["uid"]: d["type"] for d in sources["datasources"]}
    assert uids == {"warden-prometheus": "prometheus", "warden-clickhouse": "grafana-clickhouse-datasource"}
    providers = yaml.safe_load((DASHBOARDS / "provisioning" / "dashboards" / "warden.yaml").read_text())
    assert providers["providers"][0]["type"] == "file"
    for uid, board in boards().items():
        assert board["uid"] == uid
        targets = [t["datasource"] for p in board["panels"] for t in p.get("targets", [])]
        refs = {(d["uid"], d["type"]) for d in targets}
        assert refs <= set(uids.items()), f"{uid} refers to an unprovisioned datasource"
        names = {v["name"] for v in board["templating"]["list"]}
        assert names & {"model", "tenant", "group", "task"}, uid


@pytest.mark.parametrize("uid", ["warden-overview", "warden-governance"])
def test_model_and_tenant_variables(uid: str) -> None:
    names = {v["name"]: v for v in boards()[uid]["templating"]["list"]}
    assert "tenant" in names and names["tenant"]["allValue"] == ".*"
