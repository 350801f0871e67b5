"""Interleaved rounds of fresh child processes, as `proxy_cpu.py` and `telemetry_rows.py` run them.

A fresh process per name and round keeps imports, heaps and engines from carrying over from one
measurement to the next; interleaving (round 1 of every name, then round 2, ...) spreads a noisy
minute of this shared machine over all of them alike.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Sequence
from typing import Any

Result = dict[str, Any]


def child_json(argv: list[str], name: str) -> Result:
    """Run one child; its last stdout line is its JSON result. A failed child ends the bench."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    result: Result = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def interleaved(names: Sequence[str], rounds: int, run: Callable[[str], Result],
                line: Callable[[str, Result], str]) -> dict[str, list[Result]]:
    """Every name once per round, `line` printed as each result comes in."""
    results: dict[str, list[Result]] = {name: [] for name in names}
    for number in range(1, rounds + 1):
        for name in names:
            result = run(name)
            results[name].append(result)
            print(f"round {number} {line(name, result)}", flush=True)
    return results
