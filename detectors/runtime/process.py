"""`warden scanner` / `python -m detectors.runtime`: load, warm up, serve until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from pydantic import ValidationError

from detectors.runtime.logs import formatter
from detectors.runtime.settings import ScannerSettings

if TYPE_CHECKING:
    from detectors.runtime.runner import Runner

log = logging.getLogger("warden.scanner")


def load_runners(settings: ScannerSettings) -> dict[str, Runner]:
    from detectors.runtime.hf import share_tokenizers
    from detectors.runtime.models import load_runner

    runners = {}
    for model in settings.models:
        runner = load_runner(model)
        runner.warm_up()
        runners[model.task] = runner
    share_tokenizers(runners.values())
    return runners


async def serve(settings: ScannerSettings, runners: dict[str, Runner] | None = None) -> None:
    from detectors.runtime.server import Scanner

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if runners is None:
        runners = await asyncio.to_thread(load_runners, settings)  # minutes on a cold disk: off the loop
    scanner = Scanner(settings, runners)
    await scanner.start()
    try:
        await stop.wait()
    finally:
        log.info("scanner stopping")
        await scanner.stop()


def _settings(args: argparse.Namespace) -> ScannerSettings:
    if args.settings_json:
        settings = ScannerSettings.model_validate_json(args.settings_json)
    elif args.config:
        data = yaml.safe_load(Path(args.config).read_text()) or {}
        settings = ScannerSettings.model_validate(data.get("scanner") or {})
    else:
        raise SystemExit("warden scanner: give --config FILE (its scanner: section) or --settings-json JSON")
    updates = {k: v for k, v in (("socket", args.socket), ("tcp", args.tcp)) if v}
    return settings.model_copy(update=updates) if updates else settings


def main(argv: list[str] | None = None, prog: str = "warden scanner") -> int:
    parser = argparse.ArgumentParser(prog=prog, description="Run the scanner: the process that owns the "
                                     "detector models and the GPU, serving micro-batched scans on a local socket.")
    parser.add_argument("--config", metavar="FILE", help="warden YAML config; its scanner: section is used")
    parser.add_argument("--settings-json", metavar="JSON", help="the scanner section as JSON (used by warden serve)")
    parser.add_argument("--socket", help="Unix socket path (overrides the config)")
    parser.add_argument("--tcp", metavar="HOST:PORT", help="listen on TCP instead of the Unix socket")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", default="text", choices=["text", "json"],
                        help="log lines as text or one JSON object each (warden serve passes server.log_format)")
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(args.log_format))
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler])
    # OpenMP's busy-wait makes a forward pass several times slower when the cores are shared (as on a
    # sidecar host); measured in bench/scanner.py. Set before torch loads; the environment still wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # The tokenizer's Rust core may use several threads for a batch: this process never forks after
    # loading it, which is the case that variable guards against.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    try:
        settings = _settings(args)
    except (ValidationError, OSError, yaml.YAMLError) as exc:
        print(f"{prog}: bad scanner settings: {exc}", file=sys.stderr)
        return 2
    if not settings.models:
        print(f"{prog}: no models configured (scanner.models is empty)", file=sys.stderr)
        return 2
    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    # numpy's BLAS (spaCy's NER products: detectors/pii_presidio.py `matmul_ops`) on one thread: its
    # matrices are small, and a second BLAS thread doubled NER's CPU for a third less wall time,
    # on cores this process shares with its own model threads and the proxy.
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(serve(settings))
    return 0


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed, as the proxy runs: every scan is a socket round trip on this one loop."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
