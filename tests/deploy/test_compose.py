"""deploy/docker-compose.yml without Docker: the compose-spec JSON schema (the copy vendored in
check-jsonschema, from the compose-spec project, Apache-2.0), then what a schema cannot see:
files it mounts exist, services it names exist, ports agree with Warden's and Prometheus's
configs, every service has a healthcheck, and Warden's config passes `warden check-config`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

jsonschema = pytest.importorskip("jsonschema")

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"


def compose_schema() -> dict[str, Any]:
    pytest.importorskip("check_jsonschema")
    text = resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    return json.loads(text)  # type: ignore[no-any-return]


def schema_errors(doc: dict[str, Any]) -> list[str]:
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)  # the draft it declares (2020-12)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's ${VAR:-default} with the variables unset (or as given)."""
    env = env or {}
    return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: env.get(m.group(1)) or (m.group(2) or ""), value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())  # type: ignore[no-any-return]


def test_compose_matches_the_compose_spec(compose: dict[str, Any]) -> None:
    assert schema_errors(compose) == []


def test_the_schema_check_can_fail(compose: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["warden"]["helthcheck"] = broken["services"]["warden"].pop("healthcheck")
    broken["services"]["warden"]["depends_on"]["clickhouse"]["condition"] = "service_happy"
    errors = schema_errors(broken)
    assert any("helthcheck" in e for e in errors) and any("service_happy" in e for e in errors), errors


def test_services_and_health(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"warden", "vllm", "clickhouse", "prometheus", "grafana"}
    for name, service in services.items():
        assert "healthcheck" in service, f"{name}: no healthcheck"
        image = service["image"]
        assert re.search(r":[^:/]*\d", interpolate(image)) and not image.endswith(":latest"), f"{name}: {image}"
        for dep, how in service.get("depends_on", {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if how["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy, which it never says"
    assert services["vllm"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert "grafana-clickhouse-datasource" in services["grafana"]["environment"]["GF_INSTALL_PLUGINS"]
    published = [p.rsplit(":", 1)[0] for s in services.values() for p in s.get("ports", [])]
    assert len(published) == len(set(published)), f"two services publish one host port: {published}"


def test_warden_is_built_from_the_dockerfile(compose: dict[str, Any]) -> None:
    from tests.deploy.test_dockerfile import parse_dockerfile

    build = compose["services"]["warden"]["build"]
    context = (DEPLOY / build["context"]).resolve()
    dockerfile = context / build["dockerfile"]
    assert dockerfile.is_file()
    _, stages = parse_dockerfile(dockerfile.read_text())
    for target in ("cpu", "cuda"):
        assert interpolate(build["target"], {"WARDEN_TARGET": target}) in stages
    assert interpolate(build["target"]) == "cpu"
    global_args = {s_arg for stage in stages.values() for s_arg in stage.args}
    assert set(build["args"]) <= global_args, f"build args the Dockerfile does not declare: {build['args']}"


def bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    mounts = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append(((DEPLOY / source).resolve(), target))
    return mounts


def test_every_mounted_path_exists(compose: dict[str, Any]) -> None:
    """Prometheus's rules and Grafana's provisioning live in dashboards/ (the observability work)."""
    declared = set(compose.get("volumes", {}))
    for name, service in compose["services"].items():
        for source, target in bind_mounts(service):
            assert source.exists(), f"{name}: mounts {source.relative_to(ROOT)} at {target}, which does not exist"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: named volume {source} is not declared"


def test_warden_config_passes_check_config(compose: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    from proxy.cli import main

    mounted = {t: s for s, t in bind_mounts(compose["services"]["warden"])}
    config = mounted["/etc/warden/warden.yaml"]
    assert main(["check-config", str(config)]) == 0, capsys.readouterr().err
    command = compose["services"]["warden"]["command"]
    assert command[command.index("--config") + 1] == "/etc/warden/warden.yaml"


def test_ports_and_names_agree_across_configs(compose: dict[str, Any]) -> None:
    from proxy.settings import load_settings

    services = compose["services"]
    settings = load_settings(DEPLOY / "warden.yaml")
    assert f"{settings.listen.port}:{settings.listen.port}" in services["warden"]["ports"]
    assert str(settings.listen.port) in services["warden"]["healthcheck"]["test"][-1]
    vllm_args = services["vllm"]["command"]
    vllm_port = int(vllm_args[vllm_args.index("--port") + 1])
    for group in settings.upstreams:
        for backend in group.backends:
            url = urlsplit(str(backend.url))
            assert url.hostname in services, f"backend {backend.url} is not a compose service"
            assert (url.hostname, url.port) == ("vllm", vllm_port)
    dsn = urlsplit(settings.telemetry.dsn)
    env = services["clickhouse"]["environment"]
    assert dsn.hostname == "clickhouse" and dsn.port == 8123
    assert (dsn.username, dsn.password, dsn.path.strip("/")) == (
        env["CLICKHOUSE_USER"], env["CLICKHOUSE_PASSWORD"], env["CLICKHOUSE_DB"])
    prometheus = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    ports = {"warden": settings.listen.port, "vllm": vllm_port}
    targets = {t for job in prometheus["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    assert {f"{host}:{port}" for host, port in ports.items()} <= targets
    for target in targets:
        host = target.split(":")[0]
        assert host in services or host == "127.0.0.1", f"Prometheus scrapes {target}: no such service"


def test_prometheus_config_and_rules_with_promtool(compose: dict[str, Any], tmp_path: Path) -> None:
    """promtool (Debian's prometheus package) checks the config and the rules it loads, with the
    container paths mapped back to the repository's files."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    mounts = bind_mounts(compose["services"]["prometheus"])
    rules = []
    for pattern in config["rule_files"]:
        for source, target in mounts:
            if Path(target).match(pattern):
                rules.append(str(source))
    assert rules, f"no mounted file matches rule_files {config['rule_files']}"
    config["rule_files"] = rules
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump(config))
    result = subprocess.run([promtool, "check", "config", str(local)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_provisioning_points_inside_the_container(compose: dict[str, Any]) -> None:
    """Dashboard providers read paths inside the Grafana container; datasources name compose services."""
    grafana = compose["services"]["grafana"]
    mounts = bind_mounts(grafana)
    provisioning = next(s for s, t in mounts if t == "/etc/grafana/provisioning")
    if not provisioning.is_dir():
        pytest.fail(f"{provisioning.relative_to(ROOT)} is missing (Grafana provisioning, dashboards/)")
    for provider_file in sorted((provisioning / "dashboards").glob("*.y*ml")):
        for provider in yaml.safe_load(provider_file.read_text()).get("providers", []):
            path = provider.get("options", {}).get("path")
            if not path:
                continue
            hosts = [(s, t) for s, t in mounts if path == t or path.startswith(t.rstrip("/") + "/")]
            assert hosts, f"{provider_file.name}: dashboards path {path} is not mounted into Grafana"
            source, target = max(hosts, key=lambda h: len(h[1]))
            assert (source / Path(path).relative_to(target)).exists(), f"{path} -> nothing in the repository"
    services = set(compose["services"])
    clickhouse = compose["services"]["clickhouse"]["environment"]
    datasources = []
    for datasource_file in sorted((provisioning / "datasources").glob("*.y*ml")):
        text = interpolate(datasource_file.read_text(), grafana["environment"])  # as Grafana expands it
        datasources += yaml.safe_load(text).get("datasources", [])
    assert datasources, "no datasource provisioned"
    for source in datasources:
        data = source.get("jsonData", {})
        host = urlsplit(source["url"]).hostname if "url" in source else data.get("host")
        assert host in services, f"datasource {source.get('name')} -> {host}: not a compose service"
        if source["type"] == "grafana-clickhouse-datasource":
            assert (data.get("username"), source.get("secureJsonData", {}).get("password")) == (
                clickhouse["CLICKHOUSE_USER"], clickhouse["CLICKHOUSE_PASSWORD"])
            assert "grafana-clickhouse-datasource" in grafana["environment"]["GF_INSTALL_PLUGINS"]


def test_warden_runs_its_workers_and_drains_in_time(compose: dict[str, Any]) -> None:
    from proxy.settings import load_settings

    settings = load_settings(DEPLOY / "warden.yaml")
    service = compose["services"]["warden"]
    assert settings.server.workers == "auto" and settings.readiness.require == "any"
    assert interpolate(service["environment"]["WARDEN_SERVER__WORKERS"]) == "auto"
    grace = float(service["stop_grace_period"].rstrip("s"))
    assert grace > settings.server.shutdown_grace_s + 10  # workers drain, then telemetry flushes
