"""Config loading and `warden check-config`: every problem reported with its key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.cli import main
from proxy.settings import ConfigError, load_settings

GOOD = """
listen: {host: 0.0.0.0, port: 9000}
upstreams:
  - name: llama
    models: ["llama-*"]
    balancer: prefix_affinity
    backends:
      - url: http://10.0.0.1:8000/v1/
        weight: 2
  - name: rest
    backends: [{url: "http://127.0.0.1:8001"}]
"""

BAD = """
listen: {port: 99999}
upstreams:
  - name: a
    balancer: fastest
    backends:
      - url: ftp://nowhere
      - {url: "http://ok:1", weight: 0}
      - url: http://user:secret@ok:1
      - url: http://ok:1/?tenant=a
      - url: https://gw.example.com/team-a/v1
    colour: blue
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "warden.yaml"
    path.write_text(text)
    return path


def test_good_config_loads_with_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, GOOD))
    assert settings.listen.port == 9000
    llama = settings.upstreams[0]
    assert llama.backends[0].url == "http://10.0.0.1:8000"
    assert llama.backends[0].weight == 2
    assert settings.upstreams[1].models == ["*"]
    assert settings.upstreams[1].balancer == "least_outstanding"


def test_every_error_is_listed_with_its_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, BAD))
    text = "\n".join(info.value.problems)
    for path in ("listen.port", "upstreams.0.balancer", "upstreams.0.backends.0.url",
                 "upstreams.0.backends.1.weight", "upstreams.0.colour"):
        assert path + ":" in text, path
    assert "upstreams.0.backends.2.url: Value error, may not carry credentials" in text
    assert "upstreams.0.backends.3.url: Value error, may not carry a query" in text
    assert len(info.value.problems) == 7  # a backend under a path prefix (the 5th) is fine


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, "listen:\n  port: [1,\n upstreams: x\n"))
    assert "invalid YAML at line" in info.value.problems[0]


def test_duplicate_groups_and_no_groups_are_errors(tmp_path: Path) -> None:
    dup = "upstreams:\n" + "  - {name: a, backends: [{url: 'http://h:1'}]}\n" * 2
    with pytest.raises(ConfigError, match="duplicate upstream group names: a"):
        load_settings(write(tmp_path, dup))
    with pytest.raises(ConfigError, match="at least one upstream group"):
        load_settings(write(tmp_path, "listen: {port: 1}\n"))


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARDEN_LISTEN__PORT", "7777")
    monkeypatch.setenv("WARDEN_TIMEOUTS__READ_S", "3.5")
    settings = load_settings(write(tmp_path, GOOD))
    assert settings.listen.port == 7777
    assert settings.listen.host == "0.0.0.0"  # the rest of the section still comes from the file
    assert settings.timeouts.read_s == 3.5


def test_check_config_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(write(tmp_path, GOOD))]) == 0
    assert "OK (2 upstream group(s), 2 backend(s)" in capsys.readouterr().out
    assert main(["check-config", str(write(tmp_path, BAD))]) == 1
    err = capsys.readouterr().err
    assert "7 problem(s)" in err and "upstreams.0.backends.0.url" in err
    assert main(["check-config", str(tmp_path / "missing.yaml")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_serve_without_upstreams_explains(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve"]) == 2
    assert "give --upstream URL" in capsys.readouterr().err


def test_shipped_example_config_is_valid() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "warden.yaml"
    settings = load_settings(example)
    assert [g.name for g in settings.upstreams] == ["llama", "everything-else"]
