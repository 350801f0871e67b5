"""Class 8: `admin.listen` serves /admin, /review and /metrics on their own address, off the API port.

Operators put the API port on the public interface and the admin address on a private one; with
`admin.listen` set, the API port answers those paths 404 (OpenAI-style JSON), and the admin
address serves no /v1 route.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from proxy.cli import main as warden
from proxy.control.listener import ADMIN_SITE
from proxy.review.auth import token_sha256
from proxy.settings import ConfigError, build_settings
from tests.proxy.conftest import ProxyFactory, RunningProxy, UpstreamFactory
from tests.proxy.governance.conftest import Key, governed_config, make_key

ADMIN = "admin-token-" + "7" * 20
ADMIN_HEADERS = {"Authorization": "Bearer " + ADMIN}
REVIEWER_TOKEN = "erin-token-0123456789abcdef"
CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
ADMIN_PATHS = ("/admin/keys", "/admin/abuse", "/review", "/review/login", "/review/queue", "/metrics")


def config_with(up_url: str, key: Key, tmp_path: Path, **admin: Any) -> dict[str, Any]:
    config = governed_config([up_url], [key], admin_token_sha256=[hashlib.sha256(ADMIN.encode()).hexdigest()])
    config["review"] = {"enabled": True, "db_path": str(tmp_path / "review.sqlite3"),
                        "reviewers": [{"name": "erin", "token_sha256": token_sha256(REVIEWER_TOKEN)}]}
    if admin:
        config["admin"] = admin
    return config


def admin_url(proxy: RunningProxy) -> str:
    app = proxy.runner.app
    assert isinstance(app, aiohttp.web.Application)
    url = app[ADMIN_SITE].url
    assert url is not None
    return url


async def status_of(http: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, Any]:
    async with http.get(url, allow_redirects=False, **kw) as resp:
        body = await resp.json() if resp.content_type == "application/json" else await resp.text()
        return resp.status, body


async def test_admin_paths_live_only_on_the_admin_address(make_upstream: UpstreamFactory, make_proxy: ProxyFactory,
                                                          http: aiohttp.ClientSession, tmp_path: Path) -> None:
    up = await make_upstream()
    key = make_key("acme")
    proxy = await make_proxy(config_with(up.url, key, tmp_path, listen="127.0.0.1:0"))
    admin = admin_url(proxy)
    assert admin != proxy.url
    for path in ADMIN_PATHS:
        status, body = await status_of(http, proxy.url + path, headers=ADMIN_HEADERS)
        assert status == 404 and body["error"]["code"] == "not_found", (path, body)
        status, body = await status_of(http, proxy.url + path.upper())
        assert status == 404, path
    async with http.post(proxy.url + "/admin/reload", headers=ADMIN_HEADERS) as resp:
        assert resp.status == 404
    status, body = await status_of(http, admin + "/admin/keys", headers=ADMIN_HEADERS)
    assert status == 200 and [k["id"] for k in body["data"]] == [key.id]
    status, body = await status_of(http, admin + "/admin/keys")
    assert status == 401  # the admin address is no excuse to skip the token
    status, body = await status_of(http, admin + "/review/login")
    assert status == 200 and "<form" in body
    status, body = await status_of(http, admin + "/metrics")
    assert status == 200 and "warden_requests_total" in body
    for base in (proxy.url, admin):
        for probe in ("/healthz", "/readyz"):
            status, _ = await status_of(http, base + probe)
            assert status == 200, base + probe
    # The admin address is no second API door, with or without a key.
    async with http.post(admin + "/v1/chat/completions", json=CHAT, headers=key.headers) as resp:
        assert resp.status == 404
    async with http.post(proxy.url + "/v1/chat/completions", json=CHAT, headers=key.headers) as resp:
        assert resp.status == 200
    assert [r["path"] for r in up.requests] == ["/v1/chat/completions"]
    # What the API port served shows in the metrics the admin address serves.
    status, body = await status_of(http, admin + "/metrics")
    assert 'route="/v1/chat/completions"' in body


async def test_without_admin_listen_everything_stays_on_one_port(make_upstream: UpstreamFactory,
                                                                  make_proxy: ProxyFactory,
                                                                  http: aiohttp.ClientSession,
                                                                  tmp_path: Path) -> None:
    up = await make_upstream()
    proxy = await make_proxy(config_with(up.url, make_key("acme"), tmp_path))
    for path in ("/admin/keys", "/review/login", "/metrics"):
        status, _ = await status_of(http, proxy.url + path, headers=ADMIN_HEADERS)
        assert status == 200, path


@pytest.mark.parametrize("listen", ["nope", "127.0.0.1", "127.0.0.1:99999", ":8081", "127.0.0.1:x", "::1:9000",
                                    "127.0.0.1:8080"])
def test_a_bad_admin_listen_is_reported_with_its_key_path(listen: str, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    config = governed_config(["http://127.0.0.1:1"], [])
    config["listen"] = {"host": "127.0.0.1", "port": 8080}
    config["admin"] = {"listen": listen}
    with pytest.raises(ConfigError) as caught:
        build_settings(config)
    assert [p for p in caught.value.problems if "admin.listen" in p], caught.value.problems
    path = tmp_path / "warden.yaml"
    path.write_text(yaml.safe_dump(config))
    assert warden(["check-config", str(path)]) == 1
    assert "admin.listen" in capsys.readouterr().err


def test_good_admin_listens_parse() -> None:
    for listen, host, port in (("127.0.0.1:9090", "127.0.0.1", 9090), ("[::1]:9090", "::1", 9090),
                               ("localhost:0", "localhost", 0)):
        settings = build_settings({**governed_config(["http://127.0.0.1:1"], []), "admin": {"listen": listen}})
        assert settings.admin.listen == listen
        assert (settings.admin.host, settings.admin.port) == (host, port)
