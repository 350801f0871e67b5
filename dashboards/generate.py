"""Writes dashboards/*.json from dashboards/views.py and dashboards/sql/; `--check` fails when they differ.

Run from the repository root: `python -m dashboards.generate` (the tests run the check).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from dashboards.grafana import Json
from dashboards.views import BOARDS

DIR = Path(__file__).parent


def render(board: Json) -> str:
    return json.dumps(board, indent=2, ensure_ascii=False) + "\n"


def build_all() -> dict[Path, str]:
    return {DIR / f"{uid}.json": render(make().json()) for uid, make in BOARDS.items()}


def main(argv: list[str]) -> int:
    stale = [path for path, text in build_all().items() if not path.exists() or path.read_text() != text]
    if "--check" in argv:
        for path in stale:
            print(f"{path} is out of date: run python -m dashboards.generate", file=sys.stderr)
        return 1 if stale else 0
    for path, text in build_all().items():
        path.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
