"""`warden serve` starts the scanner it is configured with and serves its metrics in the same scrape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from tests.proxy.conftest import ProxyFactory, UpstreamFactory, proxy_config


def with_scanner(config: dict[str, Any], tmp_path: Path, classifier_dir: Path) -> dict[str, Any]:
    """The config with a managed scanner running the tiny toxicity classifier."""
    config["scanner"] = {"socket": str(tmp_path / "s.sock"), "torch_threads": 1,
                         "models": [{"task": "toxicity", "kind": "classifier", "path": str(classifier_dir),
                                     "device": "cpu"}]}
    return config


async def test_managed_scanner_starts_with_the_proxy_and_stops_with_it(
    tmp_path: Path, classifier_dir: Path, make_upstream: UpstreamFactory, make_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
) -> None:
    up = await make_upstream()
    config = with_scanner(proxy_config([up.url]), tmp_path, classifier_dir)
    proxy = await make_proxy(config)
    scanner = proxy.state.scanner
    assert scanner is not None
    result = await scanner.scan("toxicity", ["hello world"])
    assert result.scores is not None and result.scores.shape == (1, 6)
    async with http.get(proxy.url + "/metrics") as resp:
        text = await resp.text()
    assert "warden_requests_total" in text and 'warden_scanner_items_total{task="toxicity"} 1.0' in text
    await proxy.runner.cleanup()
    assert proxy.state.scanner is None
    assert not (tmp_path / "s.sock").exists()


async def test_no_models_means_no_scanner(make_upstream: UpstreamFactory, make_proxy: ProxyFactory) -> None:
    up = await make_upstream()
    proxy = await make_proxy(proxy_config([up.url]))
    assert proxy.state.scanner is None


async def test_a_repeated_message_is_answered_from_the_cache(
    tmp_path: Path, classifier_dir: Path, make_upstream: UpstreamFactory, make_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
) -> None:
    up = await make_upstream()
    config = with_scanner(proxy_config([up.url]), tmp_path, classifier_dir)
    config["detectors"] = [{"name": "tox", "type": "scanner", "task": "toxicity", "directions": ["request"]}]
    proxy = await make_proxy(config)

    async def metric(name: str) -> float:
        async with http.get(proxy.url + "/metrics") as resp:
            text = await resp.text()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))

    system = {"role": "system", "content": "You are a careful assistant for a bakery."}
    for n in range(1, 4):  # a conversation: each request carries the system prompt and the earlier turns
        messages = [system] + [{"role": "user", "content": f"question number {i}"} for i in range(n)]
        async with http.post(proxy.url + "/v1/chat/completions", json={"model": "m", "messages": messages}) as resp:
            assert resp.status == 200, await resp.text()
    hits = await metric('warden_detector_cache_total{detector="tox",result="hit"}')
    misses = await metric('warden_detector_cache_total{detector="tox",result="miss"}')
    # texts: 2 + 3 + 4, of which new: the system prompt and questions 0, 1 and 2
    assert (hits, misses) == (5.0, 4.0)
    items = await metric('warden_scanner_items_total{task="toxicity"}')
    async with http.post(proxy.url + "/v1/chat/completions",
                         json={"model": "m", "messages": [system, {"role": "user", "content": "question number 0"}]}):
        pass
    assert await metric('warden_scanner_items_total{task="toxicity"}') == items  # nothing reached the scanner


async def test_a_stream_s_windows_are_not_kept_in_the_findings_cache(
    tmp_path: Path, classifier_dir: Path, make_upstream: UpstreamFactory, make_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
) -> None:
    up = await make_upstream()
    up.script.pieces = [f"part {i} of a long streamed answer about bread. " for i in range(12)]
    config = with_scanner(proxy_config([up.url]), tmp_path, classifier_dir)
    config["detectors"] = [{"name": "tox", "type": "scanner", "task": "toxicity"}]
    config["policy"] = {"stream_window_chars": 64}
    proxy = await make_proxy(config)
    policy = proxy.state.policy
    assert policy is not None
    cache = policy.chain.entries[0].detector.cache  # type: ignore[attr-defined]
    question = {"role": "user", "content": "tell me about bread"}
    async with http.post(proxy.url + "/v1/chat/completions",
                         json={"model": "m", "stream": True, "messages": [question]}) as resp:
        streamed = await resp.text()
    assert resp.status == 200 and "part 11" in streamed
    assert len(cache) == 1  # the question; none of the answer's windows
