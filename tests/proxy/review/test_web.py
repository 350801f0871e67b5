"""The reviewer UI over HTTP: login, CSRF, leases between two reviewers, escaping, export, reveal audit."""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

import aiohttp

from proxy.exchange import FindingRecord
from proxy.review.store import Item
from tests.proxy.conftest import RunningProxy
from tests.proxy.review.conftest import PASSWORDS, TOKEN, Client, ClientFactory, service_of

XSS = '<script>document.title="pwned"</script><img src=x onerror=alert(1)>'


async def add(proxy: RunningProxy, n: int, output: str = "fine", required: int = 1, raw: str | None = None) -> Item:
    item = Item(id=f"item{n}", created=float(n), request_id=f"req{n}", tenant="t", model="m",
                route="/v1/chat/completions", backend="b", model_version="v1", stratum="flagged", probability=1.0,
                verdict="flag", prompt="user: hi",
                output=output, findings=(FindingRecord("response", "tox", "toxic", 0.8, "flag", "scored 0.8 > 0.5"),),
                required=required)
    await service_of(proxy).add_item(item, raw)
    return item


async def test_login_needs_the_right_password_and_csrf(review_proxy: RunningProxy, make_client: ClientFactory) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        client = Client(review_proxy.url, http)
        status, _ = await client.get("/review/queue", allow_redirects=False)
        assert status == 303  # to the login page
        status, _ = await client.get("/review/login")
        assert status == 200 and client.csrf
        assert (await client.post("/review/login", {"name": "alice", "password": "nope"}))[0] == 401
        assert (await client.post("/review/login", {"name": "mallory", "password": "x"}))[0] == 401
        assert (await client.post("/review/login", {"name": "alice", "password": PASSWORDS["alice"]},
                                  csrf=False))[0] == 403
        status, location, _ = await client.post("/review/login", {"name": "alice", "password": PASSWORDS["alice"]})
        assert (status, location) == (303, "/review/queue")
        cookie = next(c for c in http.cookie_jar if c.key == "warden_review")
        assert cookie["samesite"] == "Strict" and cookie["httponly"] and cookie["path"] == "/review"
    carol = await make_client("carol", TOKEN)  # a token logs in like a password
    assert "carol" in (await carol.get("/review/queue"))[1]


async def test_pages_are_escaped_and_locked_down(review_proxy: RunningProxy, make_client: ClientFactory) -> None:
    await add(review_proxy, 1, output=XSS)
    alice = await make_client("alice", PASSWORDS["alice"])
    async with alice.http.get(review_proxy.url + "/review/items/item1") as resp:
        body = await resp.text()
        csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
    assert "<script>document" not in body and "&lt;script&gt;document.title=&#34;pwned&#34;" in body
    assert "<img src=x" not in body
    assert not re.search(r"<script(?![^>]*src=\"/review/static/review\.js\")", body)  # only our own file
    status, body = await alice.get("/review/nope")
    assert status == 404 and "<h1>404</h1>" in body  # HTML, not the OpenAI JSON error
    async with alice.http.get(review_proxy.url + "/review/static/review.js") as resp:
        assert resp.status == 200 and resp.content_type == "text/javascript"


async def test_a_second_reviewer_cannot_take_a_leased_item(review_proxy: RunningProxy,
                                                           make_client: ClientFactory) -> None:
    await add(review_proxy, 1)
    alice = await make_client("alice", PASSWORDS["alice"])
    bob = await make_client("bob", PASSWORDS["bob"])
    await alice.get("/review/queue")
    status, location, _ = await alice.post("/review/claim-next", {})
    assert (status, location) == (303, "/review/items/item1?stratum=&model=&detector=")
    await bob.get("/review/items/item1")
    status, _, body = await bob.post("/review/items/item1/claim", {})
    assert status == 409 and "another reviewer holds this item" in body
    status, _, _ = await bob.post("/review/items/item1/label", {"label": "ok"})
    assert status == 409
    assert "queue-empty" in (await bob.get("/review/queue"))[1]
    await alice.get("/review/items/item1")
    status, location, _ = await alice.post("/review/items/item1/label", [("label", "violation"), ("category", "pii"),
                                                                         ("category", "bogus"), ("comment", "leak")])
    assert status == 303 and "notice=labelled" in location
    item = await service_of(review_proxy).store.get("item1")
    assert item is not None and [(lab.reviewer, lab.label, lab.categories) for lab in item.labels] == [
        ("alice", "violation", ("pii",))]


async def test_forms_without_their_csrf_token_are_refused(review_proxy: RunningProxy,
                                                          make_client: ClientFactory) -> None:
    await add(review_proxy, 1)
    alice = await make_client("alice", PASSWORDS["alice"])
    bob = await make_client("bob", PASSWORDS["bob"])
    await alice.get("/review/queue")
    assert (await alice.post("/review/claim-next", {}, csrf=False))[0] == 403
    assert (await alice.post("/review/claim-next", {"csrf": bob.csrf}, csrf=False))[0] == 403  # another session's
    assert (await service_of(review_proxy).store.get("item1")).lease_owner is None  # type: ignore[union-attr]
    assert (await alice.post("/review/claim-next", {}))[0] == 303


async def test_labels_and_reveals_reach_telemetry_and_export(review_proxy: RunningProxy,
                                                             make_client: ClientFactory) -> None:
    rows: list[tuple[str, dict[str, Any]]] = []
    service = service_of(review_proxy)
    service.emit = lambda table, row: rows.append((table, row))
    await add(review_proxy, 1, output="=HYPERLINK(1)", raw="the raw text")
    alice = await make_client("alice", PASSWORDS["alice"])
    bob = await make_client("bob", PASSWORDS["bob"])
    assert (await bob.get("/review/items/item1"))[0] == 200
    status, _, body = await bob.post("/review/items/item1/reveal", {})
    assert status == 403 and "the raw text" not in body  # bob may not, and raw_text is off anyway
    await alice.get("/review/items/item1")
    await alice.post("/review/items/item1/claim", {})
    await alice.post("/review/items/item1/label", {"label": "ok", "comment": "fine"})
    assert [t for t, _ in rows] == ["review_samples", "audit_actions", "review_labels"]
    assert rows[1][1]["actor"] == "bob" and rows[1][1]["outcome"] == "refused"
    assert rows[2][1]["label"] == "ok" and rows[2][1]["sample_id"] == "item1"
    async with alice.http.get(review_proxy.url + "/review/export.jsonl") as resp:
        exported = [json.loads(line) for line in (await resp.text()).splitlines()]
    assert exported[0]["outcome"] == "ok" and exported[0]["probability"] == 1.0 and "raw" not in json.dumps(exported)
    async with alice.http.get(review_proxy.url + "/review/export.csv") as resp:
        table = list(csv.DictReader(io.StringIO(await resp.text())))
    assert table[0]["output"] == "'=HYPERLINK(1)" and table[0]["labels"] == "alice:ok"
