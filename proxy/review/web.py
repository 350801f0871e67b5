"""The reviewer UI at /review: login, queue, claim with a lease, label, estimates, export.

Every route here answers HTML (errors too), so the OpenAI error middleware never sees an
exception from /review: handlers are wrapped by `_guard`, and a catch-all route answers
unknown /review paths. State changes are POST only, each checked against the session's CSRF
token; pages are read-only.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from multidict import MultiDictProxy

from proxy.review import export, pages
from proxy.review.auth import HasherBusy, LoginThrottle, PasswordHasher, Session, Signer, retry_after
from proxy.review.estimates import agreement, detector_quality, rates_by_model
from proxy.review.service import ReviewService
from proxy.review.settings import ReviewerSettings, ReviewSettings
from proxy.review.store import LABELS, Filters, Item, Label

log = logging.getLogger("warden.review.web")

SESSION_COOKIE = "warden_review"
PRE_COOKIE = "warden_review_pre"
PREFIX = "/review"
Form = MultiDictProxy[str | bytes | Any]
Authed = Callable[["ReviewWeb", web.Request, Session, Form | None], Awaitable[web.StreamResponse]]
Plain = Callable[["ReviewWeb", web.Request], Awaitable[web.StreamResponse]]


def _guard(handler: Plain) -> Plain:
    """HTML for every failure, so nothing from here reaches the JSON error middleware."""

    async def guarded(self: ReviewWeb, request: web.Request) -> web.StreamResponse:
        if self.service is None:
            return pages.error_page(self.env, 503, "review is starting or stopping; try again in a moment")
        try:
            return await handler(self, request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return pages.error_page(self.env, exc.status, exc.reason)
        except Exception:
            log.exception("review page %s failed", request.path)
            return pages.error_page(self.env, 500, "internal error; see the proxy's log")

    return guarded


def _authed(handler: Authed) -> Plain:
    async def authed(self: ReviewWeb, request: web.Request) -> web.StreamResponse:
        session = await self.session_of(request)
        if session is None:
            return pages.redirect(f"{PREFIX}/login")
        form = None
        if request.method == "POST":
            form = await request.post()
            token = form.get("csrf")
            if not self.signer.check_csrf(session.nonce, token if isinstance(token, str) else None):
                return pages.error_page(self.env, 403, "form refused: its CSRF token is missing or wrong; reload the "
                                        "page and try again", session.reviewer)
        return await handler(self, request, session, form)

    return _guard(authed)


def _filters(source: Any) -> Filters:
    return Filters(*(str(source.get(k, ""))[:200] for k in ("stratum", "model", "detector")))


class ReviewWeb:
    def __init__(self, settings: ReviewSettings, hasher: PasswordHasher | None = None,
                 throttle: LoginThrottle | None = None) -> None:
        self.settings = settings
        self.env = pages.environment()
        self.signer = Signer.from_env(settings.session_secret_env)
        self.reviewers = {r.name: r for r in settings.reviewers}
        self.hasher = hasher or PasswordHasher()  # its pool is shut down by `close` (the review cleanup context)
        self.throttle = throttle or LoginThrottle()
        self.service: ReviewService | None = None  # set while the review cleanup context runs

    async def close(self) -> None:
        await self.hasher.close()

    @property
    def svc(self) -> ReviewService:
        assert self.service is not None  # _guard answers 503 before any handler runs without it
        return self.service

    async def session_of(self, request: web.Request) -> Session | None:
        session = self.signer.read_session(request.cookies.get(SESSION_COOKIE))
        if session is None or session.reviewer not in self.reviewers:
            return None
        return None if await self.svc.store.session_ended(session.nonce) else session

    def _cookie(self, request: web.Request, response: web.StreamResponse, name: str, value: str, ttl: float) -> None:
        secure = self.settings.cookie_secure == "always" or (self.settings.cookie_secure == "auto" and request.secure)
        response.set_cookie(name, value, max_age=int(ttl), path=PREFIX, httponly=True, samesite="Strict",
                            secure=secure)

    def page(self, name: str, session: Session | None, status: int = 200, **context: Any) -> web.Response:
        return pages.html(self.env, name, status, reviewer=session.reviewer if session else None,
                          csrf=self.signer.csrf_token(session.nonce) if session else "", **context)

    # -- login ----------------------------------------------------------------------------------------

    @_guard
    async def login_form(self, request: web.Request) -> web.StreamResponse:
        pre = request.cookies.get(PRE_COOKIE) or secrets.token_urlsafe(16)
        response = pages.html(self.env, "login.html", reviewer=None, csrf=self.signer.csrf_token("login:" + pre),
                              error="")
        self._cookie(request, response, PRE_COOKIE, pre, 3600)
        return response

    @_guard
    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        pre, token = request.cookies.get(PRE_COOKIE, ""), form.get("csrf")
        if not pre or not self.signer.check_csrf("login:" + pre, token if isinstance(token, str) else None):
            return pages.error_page(self.env, 403, "form refused: its CSRF token is missing or wrong; reload the "
                                    "login page and try again")
        name, secret = str(form.get("name", "")), str(form.get("password", ""))
        # No reviewer name is longer than 64 (settings); a longer one would only bloat the throttle's keys.
        reviewer = await self._check_login(request, pre, name, secret) if 0 < len(name) <= 64 and secret else None
        if isinstance(reviewer, web.Response):
            return reviewer
        if reviewer is None:
            return pages.html(self.env, "login.html", status=401, reviewer=None,
                              csrf=self.signer.csrf_token("login:" + pre), error="wrong name or password")
        response = pages.redirect(f"{PREFIX}/queue")
        cookie = self.signer.session_cookie(reviewer.name, self.settings.session_ttl_s)
        self._cookie(request, response, SESSION_COOKIE, cookie, self.settings.session_ttl_s)
        response.del_cookie(PRE_COOKIE, path=PREFIX)
        return response

    async def _check_login(self, request: web.Request, pre: str, name: str,
                           secret: str) -> ReviewerSettings | web.Response | None:
        """Throttle first (a refused attempt costs no hash), then one hash off the loop."""
        address = request.remote or "-"
        wait = 1.0 if self.hasher.busy else self.throttle.admit(address, name, known=name in self.reviewers)
        if wait <= 0:
            configured = self.reviewers[name].password_hash if name in self.reviewers else None
            upgraded = await self.svc.store.credential(name, configured or "")
            try:
                result = await self.hasher.authenticate(self.settings.reviewers, name, secret,
                                                        {name: upgraded} if upgraded else {})
            except HasherBusy:
                wait = 1.0
            else:
                if result.reviewer is None:
                    return None
                self.throttle.succeeded(address, name)
                if result.new_hash is not None and configured is not None:
                    await self.svc.store.save_credential(name, configured, result.new_hash)
                    log.warning("reviewer %s's password hash was below the current scrypt cost: the review store "
                                "now keeps a stronger one; replace the config's with `python -m proxy.review.auth "
                                "hash`", name)
                return result.reviewer
        response = pages.html(self.env, "login.html", status=429, reviewer=None,
                              csrf=self.signer.csrf_token("login:" + pre),
                              error=f"too many login attempts; try again in {retry_after(wait)} s")
        response.headers["Retry-After"] = retry_after(wait)
        return response

    @_authed
    async def logout(self, request: web.Request, session: Session, form: Form | None) -> web.StreamResponse:
        await self.svc.store.end_session(session.nonce, session.expires)
        response = pages.redirect(f"{PREFIX}/login")
        response.del_cookie(SESSION_COOKIE, path=PREFIX)
        return response

    # -- queue and items ------------------------------------------------------------------------------

    @_guard
    async def index(self, request: web.Request) -> web.StreamResponse:
        return pages.redirect(f"{PREFIX}/queue")

    @_authed
    async def queue(self, request: web.Request, session: Session, form: Form | None) -> web.StreamResponse:
        filters = _filters(request.query)
        items = await self.svc.store.queue(session.reviewer, filters, time.time())
        facets = await self.svc.store.facets()
        return self.page("queue.html", session, items=items, filters=filters, facets=facets,
                         notice=request.query.get("notice", "")[:200])

    @_authed
    async def claim_next(self, request: web.Request, session: Session, form: Form | None) -> web.StreamResponse:
        filters = _filters(form)
        item = await self.svc.store.claim_next(session.reviewer, filters, time.time(), self.settings.lease_s)
        if item is None:
            return pages.redirect(f"{PREFIX}/queue?" + urlencode({**filters.__dict__, "notice": "queue is empty"}))
        return pages.redirect(f"{PREFIX}/items/{item.id}?" + urlencode(filters.__dict__))

    async def _item(self, request: web.Request) -> Item:
        item = await self.svc.store.get(request.match_info["item_id"])
        if item is None:
            raise web.HTTPNotFound(reason="no such review item")
        return item

    def _item_page(self, session: Session, item: Item, request: web.Request, status: int = 200,
                   raw: str | None = None, notice: str = "") -> web.Response:
        now = time.time()
        mine = item.lease_owner == session.reviewer and item.lease_until >= now
        held = item.lease_owner not in (None, session.reviewer) and item.lease_until >= now
        done = any(lab.reviewer == session.reviewer for lab in item.labels) or len(item.labels) >= item.required
        reveal = self.settings.raw_text and item.has_raw and self.reviewers[session.reviewer].can_reveal
        return self.page("item.html", session, status, item=item, mine=mine, held=held, done=done, raw=raw,
                         can_reveal=reveal, categories=self.settings.categories, filters=_filters(request.query),
                         notice=notice, lease_left=max(0, int(item.lease_until - now)))

    @_authed
    async def item(self, request: web.Request, session: Session, form: Form | None) -> web.StreamResponse:
        return self._item_page(session, await self._item(request), request)

    @_authed
    async def claim(self, request: web.Request, session: Session, form: Form | None) -> web.StreamResponse:
        item = await self._item(request)
        if not await self.svc.store.claim(item.id, session.reviewer, time.time(), self.settings.lease_s):
            fresh = await self.svc.store.get(item.id) or item
            return self._item_page(session, fresh, request, 409, notice="another reviewer holds this item "
                                   "(or it needs no more reviews); it was not claimed")
        return pages.redirect(f"{PREFIX}/items/{item.id}")

    @_authed
    async def label(self, request: web.Request, session: Session, form: Form | None) -> web.StreamResponse:
        assert form is not None
        item = await self._item(request)
        value = str(form.get("label", ""))
        categories = tuple(c for c in (str(v) for v in form.getall("category", [])) if c in self.settings.categories)
        if value not in LABELS:
            return self._item_page(session, item, request, 400, notice="choose ok, violation or unsure")
        label = Label(session.reviewer, value, categories if value == "violation" else (),
                      str(form.get("comment", ""))[:4000], time.time())
        if not await self.svc.label(item, session.reviewer, label):
            return self._item_page(session, item, request, 409, notice="you do not hold this item's lease (it "
                                   "expired or another reviewer has it); claim it first")
        return pages.redirect(f"{PREFIX}/queue?" + urlencode({**_filters(form).__dict__, "notice": "labelled"}))

    @_authed
    async def skip(self, request: web.Request, session: Session, form: Form | None) -> web.StreamResponse:
        item = await self._item(request)
        await self.svc.store.release(item.id, session.reviewer)
        return pages.redirect(f"{PREFIX}/queue?" + urlencode({**_filters(form).__dict__, "notice": "skipped"}))

    @_authed
    async def reveal(self, request: web.Request, session: Session, form: Form | None) -> web.StreamResponse:
        item = await self._item(request)
        allowed = self.settings.raw_text and self.reviewers[session.reviewer].can_reveal
        self.svc.audit_reveal(item, session.reviewer, "shown" if allowed else "refused")
        if not allowed:
            return self._item_page(session, item, request, 403, notice="raw text is not available to you")
        return self._item_page(session, item, request, raw=await self.svc.store.raw_output(item.id) or "")

    # -- estimates and export -------------------------------------------------------------------------

    @_authed
    async def estimates(self, request: web.Request, session: Session, form: Form | None) -> web.StreamResponse:
        inputs = await self.svc.store.estimate_inputs()
        return self.page("estimates.html", session, rates=rates_by_model(inputs.traffic, inputs.items),
                         detectors=detector_quality(inputs.items), agreement=agreement(inputs.pairs))

    @_authed
    async def export(self, request: web.Request, session: Session, form: Form | None) -> web.StreamResponse:
        kind = request.match_info["kind"]
        rows = await self.svc.store.export()
        body, content_type = export.jsonl(rows) if kind == "jsonl" else export.csv_text(rows)
        response = web.Response(text=body, content_type=content_type, charset="utf-8", headers={
            "Content-Disposition": f'attachment; filename="warden-review.{kind}"'})
        pages.secure(response)
        return response

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        data = pages.static_file(name)
        if data is None:
            return pages.error_page(self.env, 404, "no such file")
        response = web.Response(body=data, content_type=pages.STATIC[name])
        pages.secure(response)
        response.headers["Cache-Control"] = "no-cache"
        return response

    @_guard
    async def not_found(self, request: web.Request) -> web.StreamResponse:
        return pages.error_page(self.env, 404, "no such page", None)


def add_review_routes(app: web.Application, review: ReviewWeb) -> None:
    r = app.router
    r.add_get(PREFIX, review.index)
    r.add_get(f"{PREFIX}/login", review.login_form)
    r.add_post(f"{PREFIX}/login", review.login)
    r.add_post(f"{PREFIX}/logout", review.logout)
    r.add_get(f"{PREFIX}/queue", review.queue)
    r.add_post(f"{PREFIX}/claim-next", review.claim_next)
    r.add_get(f"{PREFIX}/items/{{item_id}}", review.item)
    for action in ("claim", "label", "skip", "reveal"):
        r.add_post(f"{PREFIX}/items/{{item_id}}/{action}", getattr(review, action))
    r.add_get(f"{PREFIX}/estimates", review.estimates)
    r.add_get(f"{PREFIX}/export.{{kind:jsonl|csv}}", review.export)
    r.add_get(f"{PREFIX}/static/{{name}}", review.static)
    r.add_route("*", f"{PREFIX}/{{tail:.*}}", review.not_found)
