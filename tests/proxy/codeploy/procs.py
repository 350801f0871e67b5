"""Reading /proc (psutil is not a dependency) to prove that no managed process outlived its supervisor."""

from __future__ import annotations

import os
import time
from pathlib import Path


def _stat(pid_dir: Path) -> tuple[int, int, int, str] | None:
    """(pid, ppid, pgrp, state) of one /proc entry, or None when it vanished while we looked."""
    try:
        text = (pid_dir / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the command name may hold spaces and parentheses
    return int(pid_dir.name), int(fields[1]), int(fields[2]), fields[0]


def processes() -> list[tuple[int, int, int, str]]:
    found = [_stat(p) for p in Path("/proc").iterdir() if p.name.isdigit()]
    return [f for f in found if f is not None]


def alive_in_groups(groups: set[int]) -> list[int]:
    """Pids whose process group is one of `groups`: running ones, and zombies that are ours to reap.

    A killed grandchild (a worker the server forked) is re-parented to init, which reaps it when it
    gets to it (tini does in a container; this sandbox's init may never): dead, and not our leak.
    """
    me = os.getpid()
    return [pid for pid, ppid, pgrp, state in processes() if pgrp in groups and (state != "Z" or ppid == me)]


def children_of(parent: int) -> list[int]:
    return [pid for pid, ppid, _, _ in processes() if ppid == parent]


def wait_gone(groups: set[int], timeout_s: float = 2.0) -> list[int]:
    """What is still alive after `timeout_s`: a SIGKILLed process is gone once the kernel has run its exit."""
    deadline = time.monotonic() + timeout_s
    while (left := alive_in_groups(groups)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return left
