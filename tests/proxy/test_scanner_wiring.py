"""`warden serve` starts the scanner it is configured with and serves its metrics in the same scrape."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.proxy.conftest import ProxyFactory, UpstreamFactory, proxy_config


async def test_managed_scanner_starts_with_the_proxy_and_stops_with_it(
    tmp_path: Path, classifier_dir: Path, make_upstream: UpstreamFactory, make_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
) -> None:
    up = await make_upstream()
    config = proxy_config([up.url])
    config["scanner"] = {"socket": str(tmp_path / "s.sock"), "torch_threads": 1,
                         "models": [{"task": "toxicity", "kind": "classifier", "path": str(classifier_dir),
                                     "device": "cpu"}]}
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
