"""Hostile-client regressions, one file per class of docs/reliability.md's "hostile clients" section."""

from __future__ import annotations

from tests.proxy.conftest import http, make_proxy, make_upstream  # noqa: F401  (shared fixtures)
