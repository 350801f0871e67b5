"""deploy/k8s/confidential without a cluster: the pod is a Confidential Containers pod (a kata TDX or
SEV-SNP runtime class), Warden and its scanner share it over a socket on guest memory, every image
is pinned by digest, the initdata annotation is the shipped initdata.toml, and the data key comes
only from the in-guest Confidential Data Hub (never from the manifests). The schemas themselves are
checked with every other manifest in test_k8s.py."""

from __future__ import annotations

import base64
import gzip
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.test_k8s import K8S, load_dir, validate

pytest.importorskip("kubernetes_validate")

HERE = K8S / "confidential"
ANNOTATION = "io.katacontainers.config.hypervisor.cc_init_data"
DIGEST = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")
CDH = "http://127.0.0.1:8006/cdh/resource/"


def pod() -> dict[str, Any]:
    deployment = next(d for d in load_dir(HERE) if d["kind"] == "Deployment")
    template: dict[str, Any] = deployment["spec"]["template"]
    return template


def warden_config(tmp_path: Path) -> Any:
    from proxy.settings import load_settings

    configmap = next(d for d in load_dir(HERE) if d["kind"] == "ConfigMap")
    path = tmp_path / "warden.yaml"
    path.write_text(configmap["data"]["warden.yaml"])
    return load_settings(path)


def test_every_object_validates() -> None:
    docs = load_dir(HERE)
    assert {d["kind"] for d in docs} >= {"Deployment", "ConfigMap", "Service", "Kustomization"}
    assert {d["kind"]: validate(d) for d in docs if d["kind"] != "Kustomization"} == {
        "Deployment": [], "ConfigMap": [], "Service": []}


def test_a_confidential_runtime_class_and_digests_only() -> None:
    spec = pod()["spec"]
    assert re.fullmatch(r"kata-(qemu-)?(tdx|snp|coco-dev)", spec["runtimeClassName"]), spec["runtimeClassName"]
    images = [c["image"] for c in spec["containers"] + spec.get("initContainers", [])]
    assert images and all(DIGEST.match(i) for i in images), images
    assert not spec.get("automountServiceAccountToken", True)
    assert not any("hostPath" in v for v in spec["volumes"])


def test_scanner_and_warden_share_the_pod_over_guest_memory(tmp_path: Path) -> None:
    spec = pod()["spec"]
    containers = {c["name"]: c for c in spec["containers"]}
    assert set(containers) == {"warden", "scanner"}
    settings = warden_config(tmp_path)
    assert settings.scanner.mode == "external"
    socket_dir = str(Path(settings.scanner.socket).parent)
    shared = {m["name"] for c in containers.values() for m in c["volumeMounts"] if m["mountPath"] == socket_dir}
    assert len(shared) == 1
    volume = next(v for v in spec["volumes"] if v["name"] in shared)
    assert volume["emptyDir"]["medium"] == "Memory"  # in the guest, not shared from the host
    args = containers["scanner"]["args"]
    assert args[0] == "scanner" and args[args.index("--socket") + 1] == settings.scanner.socket


def test_the_data_key_is_released_only_inside_the_guest(tmp_path: Path) -> None:
    settings = warden_config(tmp_path)
    assert settings.encryption.enabled
    command = " ".join(settings.encryption.key_command or [])
    assert CDH in command, "the key must come from the Confidential Data Hub after attestation"
    text = "\n".join(p.read_text() for p in HERE.glob("*.yaml"))
    assert "WARDEN_DATA_KEY" not in text and "kind: Secret" not in text
    for container in pod()["spec"]["containers"]:
        for env in container.get("env", []):
            assert "secretKeyRef" not in env.get("valueFrom", {}), env


def test_the_initdata_annotation_is_the_shipped_file() -> None:
    annotation = pod()["metadata"]["annotations"][ANNOTATION]
    shipped = (HERE / "initdata.toml").read_bytes()
    assert gzip.decompress(base64.b64decode(annotation)) == shipped
    initdata = tomllib.loads(shipped.decode())
    assert initdata["algorithm"] == "sha384" and set(initdata["data"]) == {"aa.toml", "cdh.toml", "policy.rego"}
    cdh = tomllib.loads(initdata["data"]["cdh.toml"])
    assert cdh["kbc"]["name"] == "cc_kbc" and cdh["kbc"]["url"].startswith("https://")
    assert "default ExecProcessRequest := false" in initdata["data"]["policy.rego"]


def test_a_plain_runtime_class_or_a_tag_is_caught() -> None:
    """The checks themselves: a pod without the confidential runtime or with a tagged image fails them."""
    template = pod()
    template["spec"]["runtimeClassName"] = "runc"
    assert not re.fullmatch(r"kata-(qemu-)?(tdx|snp|coco-dev)", template["spec"]["runtimeClassName"])
    assert not DIGEST.match("ghcr.io/example/warden:0.1.0-cpu")
    assert yaml.safe_load((HERE / "kustomization.yaml").read_text())["resources"]
