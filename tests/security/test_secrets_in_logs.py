"""Class 4: no log line and no error body holds a credential or a request body.

aiohttp answers a request its parser refuses (bare LF line endings, a bad header) with the
parser's message, which quotes the raw bytes read so far, and logs it at ERROR with the same
bytes: the API key, the cookie and the start of the body. Warden answers and logs the kind of
error only. The session-wide check in tests/conftest.py greps every log record of the suite.
"""

from __future__ import annotations

import logging

import pytest

from proxy.governance.keys import digest
from tests.proxy.conftest import ProxyFactory, UpstreamFactory, proxy_config
from tests.proxy.governance.conftest import make_key
from tests.reliability.test_security import raw

BODY_SECRET = "body-secret-4f1e"
COOKIE_SECRET = "cookie-secret-9d2a"
ADMIN_TOKEN = "admin-token-secret-77c1"


def malformed(key: str) -> list[bytes]:
    body = b'{"model":"m","messages":[{"role":"user","content":"' + BODY_SECRET.encode() + b'"}]}'
    headers = (f"Authorization: Bearer {key}\nX-Api-Key: {key}\nCookie: warden_review={COOKIE_SECRET}\n"
               f"Content-Length: {len(body)}\n").encode()
    return [
        b"POST /v1/chat/completions HTTP/1.1\nHost: x\n" + headers + b"\n" + body,  # bare LF throughout
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + headers.replace(b"\n", b"\r\n", 2)
        + b"\r\n" + body,  # bare LF from the third header on
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + headers.replace(b"\n", b"\r\n")
        + b"Bad Header\x01: x\r\n\r\n" + body,  # a control character in a header name
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + headers.replace(b"\n", b"\r\n")
        + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n" + body,  # a bad chunk after valid headers
    ]


@pytest.mark.parametrize("case", range(4))
async def test_a_malformed_request_leaks_nothing(make_upstream: UpstreamFactory, make_proxy: ProxyFactory,
                                                 caplog: pytest.LogCaptureFixture, case: int) -> None:
    key = make_key("acme")
    up = await make_upstream()
    config = proxy_config([up.url])
    config["governance"] = {"keys": [key.config()], "admin_token_sha256": [digest(ADMIN_TOKEN)]}
    proxy = await make_proxy(config)
    caplog.set_level(logging.DEBUG)
    answer = await raw(proxy, malformed(key.secret)[case])
    assert answer.split(b"\r\n")[0].endswith(b"400 Bad Request"), answer[:300]
    logged = "\n".join(caplog.text.splitlines() + [r.getMessage() for r in caplog.records])
    for secret in (key.secret, COOKIE_SECRET, BODY_SECRET, "Bearer"):
        assert secret.encode() not in answer, answer
        assert secret not in logged, logged
    assert up.requests == []
