"""`warden keys new-data-key` and `warden keys rotate-data-key`: the data key ring of encryption at rest.

Rotation never needs everything rewritten at once, because every sealed record names its key id
(proxy/sealing.py). The ring's first key seals; the others only open. So a rotation is:
1. put the new key first in the ring and keep the old one after it; restart Warden (it seals
   under the new key from then on and still opens what the old one sealed);
2. `warden keys rotate-data-key --config warden.yaml`: re-seals the review store under the new
   key in short batches, beside the running Warden (each batch is one SQLite transaction, so the
   live store waits at most one batch), then reports what still names the old key: spooled
   batches (replayed and deleted as Warden runs), cache entries in Redis (gone after `ttl_s`), and
   the columns Warden sealed in ClickHouse (kept until their retention ends);
3. once nothing you still need names the old key, drop it from the ring and restart.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from pathlib import Path

from proxy.review.sqlite_store import SQLiteStore
from proxy.sealing import Sealer, SealingError, load_sealer, new_key
from proxy.settings import ConfigError, WardenSettings, load_settings
from proxy.telemetry.spool import spool_key_ids


def cmd_new_data_key(args: argparse.Namespace) -> int:
    print(new_key())
    print("a 256-bit data key: put it first in the ring (WARDEN_DATA_KEY, encryption.key_file or your KMS); "
          "keep the old key after it until `warden keys rotate-data-key` reports it unused", file=sys.stderr)
    return 0


def cmd_rotate_data_key(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(Path(args.config))
        sealer = load_sealer(settings.encryption)
    except (SealingError, ConfigError) as exc:
        print(f"warden: {exc}", file=sys.stderr)
        return 1
    if sealer is None:
        print(f"warden: {args.config}: encryption.enabled is false: there is no data key to rotate", file=sys.stderr)
        return 2
    print(f"sealing under key id {sealer.current}; the ring holds {', '.join(sealer.kids)}")
    try:
        old = asyncio.run(rotate(settings, sealer, args.batch, args.pause_s))
    except SealingError as exc:
        print(f"warden: {exc}", file=sys.stderr)
        return 1
    if old:
        print(f"still in use: key id(s) {', '.join(sorted(old))}: keep them in the ring for now")
    else:
        print(f"nothing names a key other than {sealer.current}: the older keys may leave the ring")
    return 0


async def rotate(settings: WardenSettings, sealer: Sealer, batch: int, pause_s: float) -> set[str]:
    """Re-seal what can be rewritten, report the rest; returns the key ids other than the current still in use."""
    old: set[str] = set()
    if settings.review.enabled and await asyncio.to_thread(Path(settings.review.db_path).exists):
        store = SQLiteStore(settings.review.db_path, sealer)
        await store.open()
        try:
            done, started = 0, time.monotonic()
            while n := await store.reseal(batch):
                done += n
                await asyncio.sleep(pause_s)  # the live Warden's store gets its turn between batches
            left = await store.key_ids()
        finally:
            await store.close()
        took = time.monotonic() - started
        print(f"review store {settings.review.db_path}: {done} item(s) re-sealed in {took:.1f} s; now {_counts(left)}")
        old |= set(left) - {sealer.current}
    if settings.telemetry.enabled:
        spooled = await asyncio.to_thread(spool_key_ids, Path(settings.telemetry.spool_dir))
        print(f"telemetry spool {settings.telemetry.spool_dir}: {_counts(spooled) or 'empty'} (replayed and deleted "
              "while Warden runs; not rewritten)")
        old |= set(spooled) - {sealer.current, "plaintext"}
        print("ClickHouse: review_samples prompt/output and drift_samples embeddings sealed under older keys stay "
              "so until their retention ends (telemetry.retention_days); keep the old key to read them until then")
    if settings.cache.enabled and settings.cache.store == "redis":
        print(f"cache (Redis): entries sealed under older keys expire within ttl_s = {settings.cache.ttl_s:g} s of "
              "the restart that switched keys")
    return old


def _counts(kids: Counter[str]) -> str:
    return ", ".join(f"{n} under {kid}" for kid, n in sorted(kids.items()))


def add_data_key_parsers(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    actions.add_parser("new-data-key", help="print a fresh 256-bit data key for encryption at rest (base64)")
    rotate_parser = actions.add_parser(
        "rotate-data-key", help="re-seal stored records under the ring's first data key, beside the running Warden")
    rotate_parser.add_argument("--config", metavar="FILE", required=True, help="the config with the encryption block")
    rotate_parser.add_argument("--batch", type=int, default=200, metavar="N", help="items per transaction (200)")
    rotate_parser.add_argument("--pause-s", type=float, default=0.05, metavar="S", help="pause between batches")


def cmd_data_key(args: argparse.Namespace) -> int | None:
    """The data-key actions of `warden keys`; None for the others."""
    if args.action == "new-data-key":
        return cmd_new_data_key(args)
    if args.action == "rotate-data-key":
        return cmd_rotate_data_key(args)
    return None
