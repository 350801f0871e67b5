"""Rendering for the reviewer UI: autoescaping templates, strict headers, HTML error pages.

Every value reaches the page through Jinja2 with autoescape on, and the Content-Security-Policy
allows only this server's own script and stylesheet: no inline script runs even if some markup
slipped through, which is the second wall behind escaping for model output (attacker-chosen text).
"""

from __future__ import annotations

import time
from importlib import resources
from typing import Any

import jinja2
from aiohttp import web

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
STATIC = {"review.js": "text/javascript", "review.css": "text/css"}


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("proxy.review", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a misspelt name fails the test that renders it, not silently
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda v: "–" if v is None else f"{100 * v:.2f}%"
    env.filters["num"] = lambda v: "–" if v is None else f"{v:.3f}"
    env.filters["when"] = lambda ts: time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))
    return env


def static_file(name: str) -> bytes | None:
    if name not in STATIC:
        return None
    return resources.files("proxy.review").joinpath("static", name).read_bytes()


def secure(response: web.StreamResponse) -> web.StreamResponse:
    for key, value in SECURITY_HEADERS.items():
        response.headers.setdefault(key, value)
    return response


def html(env: jinja2.Environment, name: str, status: int = 200, **context: Any) -> web.Response:
    body = env.get_template(name).render(**context)
    response = web.Response(text=body, status=status, content_type="text/html", charset="utf-8")
    secure(response)
    return response


def error_page(env: jinja2.Environment, status: int, message: str, reviewer: str | None = None) -> web.Response:
    return html(env, "error.html", status=status, status_code=status, message=message, reviewer=reviewer,
                csrf="")


def redirect(location: str) -> web.Response:
    response = web.Response(status=303, headers={"Location": location})
    secure(response)
    return response
