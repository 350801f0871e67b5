"""JSON log lines and the access line: they parse, carry the request's fields, and never a key or a body."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import aiohttp
import pytest

from proxy.cli import build_parser, main, version_text
from proxy.exchange import Exchange
from proxy.tracing.logs import CURRENT, JsonFormatter, configure
from tests.proxy.conftest import ProxyFactory, UpstreamFactory, proxy_config


class Lines(logging.Handler):
    """The lines a JSON handler would write, kept for the test."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler = Lines()
    logger = logging.getLogger("warden")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_a_line_inside_a_request_carries_its_fields_and_its_exception(lines: Lines) -> None:
    exchange = Exchange(request_id="r" * 32, started=0.0, model="m1", tenant="acme")
    token = CURRENT.set(exchange)
    try:
        try:
            raise ValueError("bad value")
        except ValueError:
            logging.getLogger("warden.relay").exception("failed for %s", "reason")
    finally:
        CURRENT.reset(token)
    logging.getLogger("warden.app").warning("outside")
    inside, outside = (json.loads(line) for line in lines.lines)
    assert inside["message"] == "failed for reason" and inside["level"] == "error"
    assert inside["logger"] == "warden.relay"
    assert (inside["request_id"], inside["tenant"], inside["model"]) == ("r" * 32, "acme", "m1")
    assert inside["exc_type"] == "ValueError" and inside["exc_message"] == "bad value"
    assert "Traceback" in inside["exc_stack"] and inside["ts"].endswith("Z")
    assert "request_id" not in outside and outside["message"] == "outside"


async def test_access_lines_in_json(make_upstream: UpstreamFactory, make_proxy: ProxyFactory, lines: Lines,
                                    http: aiohttp.ClientSession) -> None:
    up = await make_upstream()
    config = proxy_config([up.url])
    config["server"].update(access_log=True, log_format="json")
    proxy = await make_proxy(config)
    secret = "sk-live-do-not-log-4f1c9a"
    body = {"model": "m1", "stream": True, "messages": [{"role": "user", "content": "a private prompt"}]}
    async with http.post(proxy.url + "/v1/chat/completions", json=body,
                         headers={"Authorization": f"Bearer {secret}"}) as resp:
        await resp.read()
        request_id = resp.headers["X-Request-Id"]
    access = [json.loads(line) for line in lines.lines if '"warden.access"' in line]
    assert len(access) == 1
    line = access[0]
    assert line["request_id"] == request_id and line["tenant"] == "anonymous" and line["model"] == "m1"
    assert line["route"] == "/v1/chat/completions" and line["backend"] == up.url and line["status"] == 200
    assert line["verdict"] == "allow" and line["method"] == "POST" and line["bytes"] > 0
    assert line["duration_s"] >= line["upstream_s"] > 0 and line["ttft_s"] > 0
    assert line["key_id"] is None  # no keys configured; with keys, the public id only
    everything = "\n".join(lines.lines)
    assert secret not in everything and "a private prompt" not in everything


def test_configure_sets_one_root_handler_in_the_chosen_format() -> None:
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    try:
        others = root.handlers[:]  # pytest's own handlers: configure must leave them where they are
        configure("warning", "json")
        ours = [h for h in root.handlers if h not in others]
        assert len(ours) == 1 and isinstance(ours[0].formatter, JsonFormatter)
        assert root.level == logging.WARNING
        configure("info", "text")
        ours = [h for h in root.handlers if h not in others]
        assert len(ours) == 1 and not isinstance(ours[0].formatter, JsonFormatter)
        assert all(h in root.handlers for h in others)
    finally:
        root.handlers[:] = saved
        root.setLevel(level)


def test_serve_takes_a_log_format() -> None:
    args = build_parser().parse_args(["serve", "--upstream", "http://127.0.0.1:1", "--log-format", "json"])
    assert args.log_format == "json"
    assert build_parser().parse_args(["serve", "--upstream", "http://127.0.0.1:1"]).log_format is None


def test_version_prints(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out == version_text() and out.startswith("warden 0.1.0")
