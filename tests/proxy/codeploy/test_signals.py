"""Load signals: parsing what vLLM and llama.cpp report, and the balancer that weighs them."""

from __future__ import annotations

import random

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.codeploy.settings import UpstreamGroupSettings as GroupSettings
from proxy.codeploy.signals import LoadScraper, parse_signals
from proxy.upstream import Backend, Group, UpstreamPool
from proxy.upstream.balancer import LeastLoaded, reported_load
from proxy.upstream.settings import HealthSettings

VLLM = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="llama"} 7.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="llama"} 3.0
vllm:num_requests_waiting{engine="1",model_name="llama"} 2.0
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{engine="0",model_name="llama"} 0.5
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{le="0.001",model_name="llama"} 0.0
"""
LLAMA = "# TYPE llamacpp:requests_processing gauge\nllamacpp:requests_processing 2\nllamacpp:requests_deferred 1\n"


def test_parses_vllm_and_llamacpp_names() -> None:
    vllm = parse_signals(VLLM)
    assert vllm is not None and (vllm.running, vllm.waiting, vllm.kv_usage) == (7.0, 5.0, 0.5)
    llama = parse_signals(LLAMA)
    assert llama is not None and (llama.running, llama.waiting, llama.kv_usage) == (2.0, 1.0, None)
    assert parse_signals("# nothing we know\nprocess_cpu_seconds_total 3\n") is None
    assert parse_signals("<html>not metrics</html>") is None


def backend(url: str, **fields: float) -> Backend:
    b = Backend(url=url, group="g", health=HealthSettings())
    for name, value in fields.items():
        setattr(b, name, value)
    return b


def test_least_loaded_prefers_the_backend_with_the_shorter_server_queue() -> None:
    idle, queued = backend("http://a", reported_pressure=0.0), backend("http://b", reported_pressure=6.0)
    busy_elsewhere = backend("http://c", reported_running=9.0)  # other clients keep it busy: Warden cannot see that
    balancer = LeastLoaded(random.Random(1))
    picks = [balancer.pick([idle, queued], None) for _ in range(50)]
    assert picks.count(idle) == 50
    assert reported_load(busy_elsewhere) == 9.0 and balancer.pick([idle, busy_elsewhere], None) is idle
    idle.outstanding = 12  # Warden's own count is fresher than any scrape
    assert balancer.pick([idle, busy_elsewhere], None) is busy_elsewhere


async def test_scraper_sets_backend_load_and_queue_pressure() -> None:
    app = web.Application()

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text=LLAMA)

    app.router.add_get("/metrics", metrics)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        url = str(server.make_url("")).rstrip("/")
        group = Group(GroupSettings(name="g", backends=[{"url": url}, {"url": "http://127.0.0.1:9"}],
                                    balancer="least_loaded", load={"waiting_weight": 2.0}))
        async with aiohttp.ClientSession() as session:
            scraper = LoadScraper(UpstreamPool([group]), session)
            await scraper.scrape_all()
        up, down = group.backends
        assert (up.reported_running, up.reported_pressure) == (2.0, 2.0)
        assert (down.reported_running, down.reported_pressure) == (0.0, 0.0)  # unreachable: Warden's count only
        assert scraper.queue_pressure(group) == 0.5  # one request waiting over two available backends
    finally:
        await server.close()
