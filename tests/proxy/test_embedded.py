"""`warden up` (make run) defaults: every installed detector is on, each missing one is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.embedded import embedded_settings


def test_installed_detectors_are_all_on(tmp_path: Path) -> None:
    settings = embedded_settings("http://127.0.0.1:1", 8080, "127.0.0.1", tmp_path)
    assert [d.name for d in settings.detectors] == ["secrets", "injection", "toxicity", "pii"]
    assert {m.task for m in settings.scanner.models} == {"toxicity", "pii"}
    assert settings.telemetry.dsn == f"chdb://{tmp_path / 'clickhouse'}"


def test_missing_model_packages_turn_detectors_off_loudly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr("proxy.embedded._installed", lambda *modules: False)
    settings = embedded_settings("http://127.0.0.1:1", 8080, "127.0.0.1", tmp_path)
    assert [d.name for d in settings.detectors] == ["secrets", "injection"]
    assert settings.scanner.mode == "off"
    assert "toxicity detector OFF" in caplog.text and "PII detector OFF" in caplog.text
