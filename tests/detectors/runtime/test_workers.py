"""`scanner.workers: 2`: two scanner processes both serve one client's frames, and a crash of one
costs a retry on the other, not the scans in flight."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from detectors.runtime.client import ScannerClient, merge_metrics
from detectors.runtime.settings import ScannerSettings
from detectors.runtime.supervisor import ScannerSupervisor
from tests.detectors.runtime.test_batcher import sentences
from tests.detectors.runtime.test_scanner_process import scanner_settings


def test_each_worker_has_its_own_address() -> None:
    settings = ScannerSettings(socket="/run/w/scanner.sock", workers=3)
    assert settings.address == "unix:///run/w/scanner.sock,unix:///run/w/scanner.1.sock,unix:///run/w/scanner.2.sock"
    assert ScannerSettings(tcp="127.0.0.1:7070", workers=2).address == "tcp://127.0.0.1:7070,tcp://127.0.0.1:7071"
    assert ScannerSettings(workers=1).address == "unix://.warden/scanner.sock"


def test_metrics_of_workers_add_up() -> None:
    one = ('# HELP warden_scanner_items_total Texts scanned.\n# TYPE warden_scanner_items_total counter\n'
           'warden_scanner_items_total{task="pii"} 3.0\n')
    assert 'warden_scanner_items_total{task="pii"} 6.0' in merge_metrics([one, one])


async def test_two_workers_serve_and_a_crash_of_one_is_survived(tmp_path: Path, classifier_dir: Path,
                                                                embedder_dir: Path, device: str) -> None:
    settings = scanner_settings(tmp_path, classifier_dir, embedder_dir, device, queue_size=4096)
    supervisor = ScannerSupervisor(settings.model_copy(update={"workers": 2, "restart_backoff_s": 0.2}))
    await supervisor.start()
    client = ScannerClient(supervisor.settings.address, call_timeout_s=30)
    try:
        assert len(supervisor.pids) == 2
        for i in range(10):  # one frame each (a loop turn's scans share one): they rotate over the workers
            await client.scan("toxicity", sentences(4, seed=i))
        metrics = [await ScannerClient(supervisor.settings.worker(i).address).metrics_text() for i in (0, 1)]
        served = [float(line.rsplit(" ", 1)[1]) for text in metrics for line in text.splitlines()
                  if line.startswith('warden_scanner_items_total{task="toxicity"}')]
        assert len(served) == 2 and all(count > 0 for count in served), served  # both processes took frames

        calls = [asyncio.create_task(client.scan("toxicity", sentences(8, seed=i))) for i in range(200)]
        await asyncio.sleep(0.05)
        os.kill(supervisor.pids[0], 9)
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert not [r for r in results if isinstance(r, BaseException)]  # retried on the live worker
        for _ in range(600):
            if len(supervisor.pids) == 2 and supervisor.restarts == 1:
                break
            await asyncio.sleep(0.1)
        assert len(supervisor.pids) == 2 and supervisor.restarts == 1
        assert (await client.scan("toxicity", ["after the restart"])).scores is not None
    finally:
        await client.close()
        await supervisor.stop()
    assert not supervisor.pids
