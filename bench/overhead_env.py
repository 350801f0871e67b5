"""What the results were measured on, for the JSON: numbers from another machine do not compare."""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def _first_line(argv: list[str]) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError, IndexError):
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        return (proc.stdout + proc.stderr).strip().splitlines()[0]
    return "unknown"


def describe(args: argparse.Namespace) -> dict[str, Any]:
    import aiohttp
    import uvloop

    cpu_model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), platform.processor())
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "host_cpus": os.cpu_count(),
        "cpu": cpu_model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "uvloop": getattr(uvloop, "__version__", "unknown"),
        "nginx": _first_line(["/usr/sbin/nginx", "-v"]),
        "wrk": _first_line(["wrk", "--version"]),
        "pinning": {"load_and_upstreams": args.load_cpus, "proxy": args.proxy_cpus, "warden_x2": args.x2_cpus},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
