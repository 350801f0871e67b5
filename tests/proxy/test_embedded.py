"""`warden up` (make run) defaults: every installed detector is on, each missing one is named."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from proxy.embedded import embedded_settings


def test_installed_detectors_are_all_on(tmp_path: Path) -> None:
    settings = embedded_settings("http://127.0.0.1:1", 8080, "127.0.0.1", tmp_path, review_token="t0ken")
    assert [d.name for d in settings.detectors] == ["secrets", "injection", "toxicity", "pii"]
    assert {m.task for m in settings.scanner.models} == {"toxicity", "pii", "embed"}
    assert settings.telemetry.dsn == f"chdb://{tmp_path / 'clickhouse'}"
    assert settings.drift.enabled and settings.drift.embed_task == "embed"
    assert settings.review.enabled and settings.review.db_path == str(tmp_path / "review.sqlite3")
    (admin,) = settings.review.reviewers
    assert admin.token_sha256 == hashlib.sha256(b"t0ken").hexdigest()


def test_missing_model_packages_turn_detectors_off_loudly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr("proxy.embedded._installed", lambda *modules: False)
    settings = embedded_settings("http://127.0.0.1:1", 8080, "127.0.0.1", tmp_path)
    assert [d.name for d in settings.detectors] == ["secrets", "injection"]
    assert settings.scanner.mode == "off"
    assert "toxicity detector OFF" in caplog.text and "PII detector OFF" in caplog.text
    assert "drift OFF" in caplog.text and not settings.drift.enabled
    assert not settings.review.enabled  # no token given: no reviewer, so no queue
