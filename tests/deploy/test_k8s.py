"""deploy/k8s without a cluster: each object against the Kubernetes API's strict JSON schemas
(kubernetes-validate, which ships them for each release), the ServiceMonitor against a JSON
schema generated from the prometheus-operator CRD's types (tests/deploy/schemas/), then the
references between objects that no schema sees: selectors, port names, probes, the ConfigMap's
Warden config, and HPA metrics that Warden really exports.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

kubernetes_validate = pytest.importorskip("kubernetes_validate")
jsonschema = pytest.importorskip("jsonschema")

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSIONS = ("1.29.0", "1.33.0")  # an older and a recent API, both still served widely
WORKLOADS = {"Deployment", "StatefulSet"}
# Generated from the prometheus-operator CRD's types (see generate_servicemonitor.py beside it).
SERVICEMONITOR_SCHEMA = Path(__file__).with_name("schemas") / "servicemonitor-monitoring-v1.json"


def load_dir(directory: Path) -> list[dict[str, Any]]:
    docs = []
    for path in sorted(directory.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def all_docs() -> list[tuple[str, dict[str, Any]]]:
    return [(p.parent.name + "/" + p.name, d) for p in sorted(K8S.rglob("*.yaml"))
            for d in yaml.safe_load_all(p.read_text()) if d and d.get("kind") != "Kustomization"]


def validate(doc: dict[str, Any]) -> list[str]:
    if doc["kind"] == "ServiceMonitor":
        validator = jsonschema.Draft202012Validator(json.loads(SERVICEMONITOR_SCHEMA.read_text()))
        return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
    problems = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{version}: {str(exc).splitlines()[0]}")
    return problems


@pytest.mark.parametrize("name, doc", all_docs(), ids=lambda v: v if isinstance(v, str) else v["kind"])
def test_schema(name: str, doc: dict[str, Any]) -> None:
    assert validate(doc) == [], name


def test_the_schemas_can_fail() -> None:
    deployment = yaml.safe_load((K8S / "gateway" / "deployment.yaml").read_text())
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    assert validate(deployment)
    monitor = yaml.safe_load((K8S / "gateway" / "servicemonitor.yaml").read_text())
    monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    assert any("intervall" in p for p in validate(monitor))
    monitor = yaml.safe_load((K8S / "gateway" / "servicemonitor.yaml").read_text())
    monitor["spec"]["endpoints"][0]["scheme"] = "gopher"
    assert validate(monitor)


@pytest.mark.parametrize("kustomization", sorted(K8S.glob("*/kustomization.yaml")), ids=lambda p: p.parent.name)
def test_kustomization_lists_every_manifest(kustomization: Path) -> None:
    listed = yaml.safe_load(kustomization.read_text())["resources"]
    present = sorted(p.name for p in kustomization.parent.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == present


def pod_specs(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d["spec"]["template"] for d in docs if d["kind"] in WORKLOADS}


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def exported_metrics() -> set[str]:
    """Metric families Warden's proxy defines (the HPA may only scale on what exists)."""
    text = "\n".join(p.read_text() for p in (ROOT / "proxy").rglob("*.py"))
    return set(re.findall(r"\"(warden_[a-z_]+)\"", text))


@pytest.mark.parametrize("flavour", ["sidecar", "gateway"])
def test_references_between_objects(flavour: str) -> None:
    docs = load_dir(K8S / flavour)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    pods = pod_specs(docs)
    configmaps = {d["metadata"]["name"] for d in by_kind["ConfigMap"]}
    for name, template in pods.items():
        spec = template["spec"]
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in configmaps, f"{name}: volume {volume['name']}"
        volume_names = {v["name"] for v in spec.get("volumes", [])}
        for container in spec["containers"]:
            assert "resources" in container and container["resources"].get("requests"), f"{container['name']}"
            ports = {p["name"] for p in container.get("ports", [])}
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volume_names, f"{container['name']}: mount {mount['name']}"
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                http = container.get(probe, {}).get("httpGet")
                if http and isinstance(http["port"], str):
                    assert http["port"] in ports, f"{container['name']}.{probe}: port {http['port']}"
    for service in by_kind["Service"]:
        targets = [t for t in pods.values() if matches(service["spec"]["selector"], t["metadata"]["labels"])]
        assert targets, f"Service {service['metadata']['name']} selects no pod"
        for port in service["spec"]["ports"]:
            names = {p["name"] for t in targets for c in t["spec"]["containers"] for p in c.get("ports", [])}
            assert port["targetPort"] in names, f"Service {service['metadata']['name']}: {port['targetPort']}"
    for monitor in by_kind["ServiceMonitor"]:
        selected = [s for s in by_kind["Service"]
                    if matches(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])]
        assert selected, f"ServiceMonitor {monitor['metadata']['name']} selects no Service"
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in {p["name"] for s in selected for p in s["spec"]["ports"]}
            assert endpoint["path"] == "/metrics"
    adapter = yaml.safe_load((K8S / "prometheus-adapter" / "config.yaml").read_text())
    served = {rule["name"]["as"] for rule in yaml.safe_load(adapter["data"]["config.yaml"])["rules"]}
    for hpa in by_kind["HorizontalPodAutoscaler"]:
        ref = hpa["spec"]["scaleTargetRef"]
        assert any(d["kind"] == ref["kind"] and d["metadata"]["name"] == ref["name"] for d in docs), ref
        custom = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
        assert custom, "the HPA should scale on Warden's own metrics"
        for metric in custom:
            assert metric in exported_metrics(), f"{metric}: Warden exports no such metric"
            assert metric in served, f"{metric}: the Prometheus adapter rules do not serve it"


def warden_container(flavour: str) -> tuple[dict[str, Any], dict[str, Any]]:
    docs = load_dir(K8S / flavour)
    for template in pod_specs(docs).values():
        for container in template["spec"]["containers"]:
            if container["image"] == "warden":
                return template["spec"], container
    raise AssertionError(f"{flavour}: no warden container")


@pytest.mark.parametrize("flavour", ["sidecar", "gateway"])
def test_warden_container(flavour: str, tmp_path: Path) -> None:
    from proxy.settings import load_settings

    spec, container = warden_container(flavour)
    docs = load_dir(K8S / flavour)
    config_volume = next(v for v in spec["volumes"] if "configMap" in v)
    mount = next(m for m in container["volumeMounts"] if m["name"] == config_volume["name"])
    configmap = next(d for d in docs if d["kind"] == "ConfigMap"
                     and d["metadata"]["name"] == config_volume["configMap"]["name"])
    args = container["args"]
    config_path = args[args.index("--config") + 1]
    assert config_path.startswith(mount["mountPath"] + "/")
    path = tmp_path / "warden.yaml"
    path.write_text(configmap["data"][Path(config_path).name])
    settings = load_settings(path)  # what `warden check-config` runs; raises ConfigError with every problem
    assert settings.listen.host == "0.0.0.0"
    assert settings.listen.port == container["ports"][0]["containerPort"]
    context = {**spec.get("securityContext", {}), **container.get("securityContext", {})}
    assert context["runAsNonRoot"] and context["runAsUser"] == 10001 and not context["allowPrivilegeEscalation"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["limits"]["memory"]
    # Relative state paths (.warden/...) resolve under the image's WORKDIR, which must be writable.
    writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
    assert "/var/lib/warden" in writable and "/tmp" in writable


def test_sidecar_upstream_is_the_pods_own_vllm(tmp_path: Path) -> None:
    from proxy.settings import load_settings

    spec, _ = warden_container("sidecar")
    vllm = next(c for c in spec["containers"] if c["name"] == "vllm")
    args = vllm["args"]
    assert args[args.index("--host") + 1] == "127.0.0.1", "vLLM must not be reachable around Warden"
    assert "nvidia.com/gpu" in vllm["resources"]["limits"]
    configmap = next(d for d in load_dir(K8S / "sidecar") if d["kind"] == "ConfigMap")
    path = tmp_path / "warden.yaml"
    path.write_text(configmap["data"]["warden.yaml"])
    urls = [urlsplit(str(b.url)) for g in load_settings(path).upstreams for b in g.backends]
    assert [(u.hostname, u.port) for u in urls] == [("127.0.0.1", int(args[args.index("--port") + 1]))]


def test_gateway_backends_are_the_vllm_replicas(tmp_path: Path) -> None:
    from proxy.settings import load_settings

    docs = load_dir(K8S / "gateway")
    statefulset = next(d for d in docs if d["kind"] == "StatefulSet")
    headless = next(d for d in docs
                    if d["kind"] == "Service" and d["metadata"]["name"] == statefulset["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    port = headless["spec"]["ports"][0]["port"]
    configmap = next(d for d in docs if d["kind"] == "ConfigMap")
    path = tmp_path / "warden.yaml"
    path.write_text(configmap["data"]["warden.yaml"])
    hosts = {(urlsplit(str(b.url)).hostname, urlsplit(str(b.url)).port)
             for g in load_settings(path).upstreams for b in g.backends}
    name, service = statefulset["metadata"]["name"], headless["metadata"]["name"]
    assert hosts == {(f"{name}-{i}.{service}", port) for i in range(statefulset["spec"]["replicas"])}


@pytest.mark.parametrize("flavour", ["sidecar", "gateway"])
def test_workers_follow_the_cpu_limit_and_the_drain_fits(flavour: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """`--workers auto` counts the cpuset, which a CPU limit does not shrink without the static CPU
    manager: the worker count comes from the limit itself (the downward API rounds it up)."""
    from proxy.settings import load_settings

    spec, container = warden_container(flavour)
    env = {e["name"]: e for e in container["env"]}
    field = env["WARDEN_SERVER__WORKERS"]["valueFrom"]["resourceFieldRef"]
    assert field == {"containerName": container["name"], "resource": "limits.cpu", "divisor": "1"}
    limit = str(container["resources"]["limits"]["cpu"])
    workers = math.ceil(int(limit[:-1]) / 1000 if limit.endswith("m") else float(limit))
    configmap = next(d for d in load_dir(K8S / flavour) if d["kind"] == "ConfigMap")
    path = tmp_path / "warden.yaml"
    path.write_text(configmap["data"]["warden.yaml"])
    monkeypatch.setenv("WARDEN_SERVER__WORKERS", str(workers))
    settings = load_settings(path)
    assert settings.server.workers == workers >= 2
    assert settings.readiness.require == "any"  # one dead model does not take every pod out of the Service
    assert spec["terminationGracePeriodSeconds"] > settings.server.shutdown_grace_s + 10  # workers, then telemetry
