"""The post-deploy smoke test: a configured prompt set, sent to every replica of a new version.

A prompt passes when the detectors let it through as a request, the replica answers 200 with a
chat completion, the answer contains `expect` (when set), and the detectors let the answer
through as a response. The verdicts here are not recorded as traffic: no client sent these.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp

from proxy.codeploy.settings import SmokeSettings
from proxy.policy.engine import Action, Scope
from proxy.policy.service import PolicyService

log = logging.getLogger("warden.codeploy.smoke")


async def _blocked(policy: PolicyService | None, text: str, direction: str, scope: Scope) -> str | None:
    if policy is None or not policy.enforce:
        return None
    chain = policy.chain
    if direction == "request" and not chain.applies("request"):
        return None
    if direction == "response" and not chain.applies("response"):
        return None
    findings = await chain.scan([text], "request" if direction == "request" else "response")
    verdict = policy.engine.decide(findings, "request" if direction == "request" else "response", scope)
    return verdict.reasons if verdict.action == Action.BLOCK else None


def _content(data: Any) -> str | None:
    try:
        content = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None
    return content if isinstance(content, str) else None


async def smoke_one(session: aiohttp.ClientSession, url: str, prompt: str, model: str, settings: SmokeSettings,
                    policy: PolicyService | None, scope: Scope) -> str | None:
    """None when the prompt passed on this backend, else why it did not."""
    reason = await _blocked(policy, prompt, "request", scope)
    if reason:
        return f"the prompt was blocked by request policy ({reason})"
    payload = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": settings.max_tokens,
               "stream": False}
    try:
        timeout = aiohttp.ClientTimeout(total=settings.timeout_s)
        async with session.post(url + "/v1/chat/completions", json=payload, timeout=timeout) as resp:
            body = await resp.read()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        return f"request failed: {exc!r}"
    if status != 200:
        return f"answered HTTP {status}: {body[:200]!r}"
    try:
        content = _content(json.loads(body))
    except ValueError:
        content = None
    if content is None:
        return "the answer is not a chat completion"
    if settings.expect is not None and settings.expect not in content:
        return f"the answer does not contain {settings.expect!r}"
    reason = await _blocked(policy, content, "response", scope)
    return f"the answer was blocked by response policy ({reason})" if reason else None


async def run_smoke(session: aiohttp.ClientSession, urls: list[str], model: str, settings: SmokeSettings,
                    policy: PolicyService | None, group: str) -> list[str]:
    """Every prompt on every replica; the problems found (empty: passed)."""
    scope = Scope(tenant="warden-smoke", route="/v1/chat/completions", model=model, request_id=f"smoke-{group}")
    problems = []
    for url in urls:
        for index, prompt in enumerate(settings.prompts):
            problem = await smoke_one(session, url, prompt, model, settings, policy, scope)
            if problem is not None:
                problems.append(f"{url} prompt {index}: {problem}")
    return problems
