"""A writer in its own process, for the test that kills one mid-batch (`python -m` this module).

argv: a TelemetrySettings JSON and a row count. It emits the rows, prints FLUSHED once every
row is in the store or the spool, and runs until it is killed.
"""

from __future__ import annotations

import asyncio
import sys

from prometheus_client import CollectorRegistry

from proxy.telemetry import TelemetryWriter
from proxy.telemetry.settings import TelemetrySettings


async def main(settings_json: str, rows: int) -> None:
    registry = CollectorRegistry()
    writer = TelemetryWriter(TelemetrySettings.model_validate_json(settings_json), registry, retry_s=(0.05, 0.1))
    await writer.start()
    for i in range(rows):
        writer.emit("requests", {"request_id": f"k{i}", "status": 200})

    def done() -> float:
        return sum(registry.get_sample_value(f"warden_telemetry_rows_{kind}_total", {"table": "requests"}) or 0.0
                   for kind in ("spooled", "written"))

    while True:
        if done() >= rows:
            break
        await asyncio.sleep(0.01)
    print("FLUSHED", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
