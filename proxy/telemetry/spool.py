"""The disk spool: batches the store could not take, kept in order until it takes them.

Layout of the spool directory:
- `seg-<n>.spool`: append-only segments of records. A record is a 12-byte header (magic,
  payload length, CRC32) and a zlib-compressed JSON batch (column-oriented). Each append is
  flushed and fsynced, so an acknowledged batch survives a crash; a record torn by a crash
  mid-append fails its length or CRC check and is cut off when the spool next opens.
- `cursor.json`: the position of the first record not yet in the store, and the replay plan in
  flight (the "intent"), replaced atomically. The intent makes a replay interrupted by a crash
  repeat exactly the same inserts with the same deduplication tokens, so nothing doubles.
- `rejected.spool`: records the store refused while healthy (bad data), kept for a person.
- `lock`: an exclusive flock; two processes appending to one spool would interleave records.

Not thread-safe by design: the writer calls it from its one I/O thread, which serialises every
operation without locks. Fully replayed segments are deleted, which is what frees the disk cap.

Spooled rows are prompts, outputs and audit events, so the directory is 0700 and every file in
it 0600, with explicit modes whatever the process umask (`_private_dir`, `_open_private`).
With encryption at rest (proxy/sealing.py) a record's compressed batch is sealed (magic `WSP2`,
the CRC over the sealed bytes), compressed first because ciphertext does not compress. Opening
a spool checks that every sealed record's key id is in the ring, so a wrong key stops the start
instead of failing at replay; records from before encryption was on still replay.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import struct
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

from proxy.sealing import KID_BYTES, Sealer, SealingError, refuse_sealed_without_key

log = logging.getLogger("warden.telemetry.spool")

MAGIC = b"WSP1"
SEALED_MAGIC = b"WSP2"  # the payload is a sealed envelope of the compressed batch
_AAD = b"warden telemetry spool"
HEADER = struct.Struct(">4sII")
Pos = tuple[int, int]  # (segment number, byte offset)


class SpoolLocked(Exception):
    """Another writer (this process or another) holds the spool directory."""


@dataclass
class Entry:
    """One batch: a table's rows as columns, with the id that is its deduplication token."""

    id: str
    table: str
    names: list[str]
    columns: list[list[Any]]
    attempted: bool = False  # an insert was tried and its outcome is unknown: replay it alone

    @property
    def rows(self) -> int:
        return len(self.columns[0]) if self.columns else 0


@dataclass
class Record:
    entry: Entry
    start: Pos
    end: Pos
    blob: bytes


def encode(entry: Entry, sealer: Sealer | None = None) -> bytes:
    body = {"id": entry.id, "table": entry.table, "names": entry.names, "columns": entry.columns,
            "attempted": entry.attempted}
    payload = zlib.compress(json.dumps(body, separators=(",", ":"), default=str).encode(), 1)
    magic = MAGIC
    if sealer is not None:
        payload, magic = sealer.seal(payload, _AAD), SEALED_MAGIC
    return HEADER.pack(magic, len(payload), zlib.crc32(payload)) + payload


def _read_blob(f: BinaryIO) -> bytes | None:
    """The next whole, intact record at the file position, or None at the end or a torn record."""
    header = f.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    magic, length, crc = HEADER.unpack(header)
    if magic not in (MAGIC, SEALED_MAGIC):
        return None
    payload = f.read(length)
    if len(payload) < length or zlib.crc32(payload) != crc:
        return None
    return header + payload


def _private_dir(directory: Path) -> None:
    """Creates `directory` and its missing parents as 0700; existing ones are the operator's to set."""
    missing = [d for d in (directory, *directory.parents) if not d.exists()]
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(d, 0o700)
        os.chmod(d, 0o700)  # mkdir's mode is cut by the umask


def _open_private(path: Path, mode: str) -> BinaryIO:
    """`open(path, mode)` in binary, but created 0600 (and made 0600 if an older run left it wider)."""
    flags = {"ab": os.O_APPEND | os.O_WRONLY, "a+b": os.O_APPEND | os.O_RDWR, "wb": os.O_TRUNC | os.O_WRONLY}[mode]
    fd = os.open(path, flags | os.O_CREAT, 0o600)
    os.fchmod(fd, 0o600)
    return cast(BinaryIO, os.fdopen(fd, mode))


def decode(blob: bytes, sealer: Sealer | None = None) -> Entry:
    payload = blob[HEADER.size:]
    if blob[:len(SEALED_MAGIC)] == SEALED_MAGIC:
        if sealer is None:
            raise SealingError("a sealed spool record, but encryption is off")
        payload = sealer.open(payload, _AAD)
    body = json.loads(zlib.decompress(payload))
    return Entry(body["id"], body["table"], body["names"], body["columns"], bool(body.get("attempted")))


def key_ids(paths: list[Path]) -> Counter[str]:
    """Records per key id (`plaintext` for unsealed ones) in these spool files, read from the headers."""
    counts: Counter[str] = Counter()
    for path in (p for p in paths if p.exists()):
        with path.open("rb") as f:
            while len(header := f.read(HEADER.size)) == HEADER.size:
                magic, length, _ = HEADER.unpack(header)
                if magic == SEALED_MAGIC and length >= 4 + KID_BYTES:
                    counts[f.read(4 + KID_BYTES)[4:].hex()] += 1
                    f.seek(length - 4 - KID_BYTES, os.SEEK_CUR)
                else:
                    counts["plaintext"] += 1
                    f.seek(length, os.SEEK_CUR)
    return counts


def spool_key_ids(directory: Path) -> Counter[str]:
    """Every spool under `directory` (the workers' too), without taking their locks: for reports only."""
    return key_ids(sorted(directory.rglob("seg-*.spool")) + sorted(directory.rglob("rejected.spool")))


class Spool:
    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int = 16 << 20,
                 sealer: Sealer | None = None) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.sealer = sealer
        _private_dir(directory)
        self._lock = _open_private(directory / "lock", "a+b")
        try:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise SpoolLocked(f"the telemetry spool {directory} is in use by another writer; give each "
                              "process its own telemetry.spool_dir") from None
        self._sizes: dict[int, int] = {n: self._path(n).stat().st_size for n in self._scan()}
        self._active: BinaryIO | None = None
        self.cursor: Pos = (min(self._sizes, default=0), 0)
        self.intent: dict[str, Any] | None = None
        self._load_cursor()
        self._repair_tail()
        try:
            self._check_keys()
        except SealingError:
            self.close()
            raise

    def encode(self, entry: Entry) -> bytes:
        """A record in this spool's format: sealed when encryption at rest is on."""
        return encode(entry, self.sealer)

    def _check_keys(self) -> None:
        """The key ids of every sealed record (headers only: nothing is decrypted) against the ring."""
        counts = key_ids([self._path(n) for n in self._sizes] + [self.directory / "rejected.spool"])
        plain = counts.pop("plaintext", 0)
        kids = set(counts)
        where = f"the telemetry spool {self.directory}"
        if self.sealer is None:
            refuse_sealed_without_key(kids, where)
        else:
            self.sealer.check(kids, where)
            if plain:
                log.warning("%s: %d record(s) from before encryption was on are plaintext; they replay as they are",
                            where, plain)

    # -- state -------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Bytes on disk, the figure the cap applies to."""
        return sum(self._sizes.values())

    @property
    def end(self) -> Pos:
        if not self._sizes:
            return self.cursor
        last = max(self._sizes)
        return (last, self._sizes[last])

    @property
    def pending(self) -> bool:
        return self._normal(self.cursor) < self.end

    def _path(self, n: int) -> Path:
        return self.directory / f"seg-{n:010d}.spool"

    def _scan(self) -> list[int]:
        return sorted(int(p.stem[4:]) for p in self.directory.glob("seg-*.spool"))

    def _normal(self, pos: Pos) -> Pos:
        """A position at the end of a segment is the start of the next one, if there is one."""
        seg, off = pos
        later = [n for n in self._sizes if n > seg]
        if later and off >= self._sizes.get(seg, 0):
            return (min(later), 0)
        return pos

    def _load_cursor(self) -> None:
        path = self.directory / "cursor.json"
        if not path.exists():
            return
        try:
            state = json.loads(path.read_text())
            self.cursor = (int(state["cursor"][0]), int(state["cursor"][1]))
            self.intent = state.get("intent")
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            log.error("spool cursor %s is unreadable (%s); replaying the spool from its start", path, exc)

    def _save_cursor(self) -> None:
        path = self.directory / "cursor.json"
        tmp = path.with_suffix(".tmp")
        with _open_private(tmp, "wb") as f:
            f.write(json.dumps({"cursor": list(self.cursor), "intent": self.intent}).encode())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def _repair_tail(self) -> None:
        if not self._sizes:
            return
        last = max(self._sizes)
        with self._path(last).open("r+b") as f:
            good = 0
            while _read_blob(f) is not None:
                good = f.tell()
            if good < self._sizes[last]:
                log.warning("spool segment %s ends in a torn record (crash mid-write): cutting %d bytes",
                            self._path(last).name, self._sizes[last] - good)
                f.truncate(good)
                self._sizes[last] = good

    # -- writing -----------------------------------------------------------------------------

    def append(self, blob: bytes) -> bool:
        """Append one encoded record, durably; False (and nothing written) when over the cap."""
        if self.size + len(blob) > self.max_bytes:
            return False
        tail = self._sizes[max(self._sizes)] if self._active is not None else 0
        if self._active is None or (tail > 0 and tail + len(blob) > self.segment_bytes):
            self._rotate()
        assert self._active is not None
        self._active.write(blob)
        self._active.flush()
        os.fsync(self._active.fileno())
        self._sizes[max(self._sizes)] += len(blob)
        return True

    def _rotate(self) -> None:
        if self._active is not None:
            self._active.close()
        last = max(self._sizes, default=None)
        if last is not None and self._active is None and self._sizes[last] < self.segment_bytes:
            number = last  # reopen the tail segment after a restart
        else:
            number = max(last if last is not None else -1, self.cursor[0] - 1) + 1
        self._active = _open_private(self._path(number), "ab")
        self._sizes.setdefault(number, 0)

    def reject(self, record: Record) -> None:
        with _open_private(self.directory / "rejected.spool", "ab") as f:
            f.write(record.blob)
            f.flush()
            os.fsync(f.fileno())

    def reject_rows(self, entry: Entry) -> None:
        """Rows cut from a batch because no store can take them (a lone surrogate, a wrong type)."""
        self.reject(Record(entry, (0, 0), (0, 0), self.encode(entry)))

    # -- reading and acknowledging -----------------------------------------------------------

    def read(self, max_records: int, max_rows: int, until: Pos | None = None) -> list[Record]:
        """Records from the cursor in order: up to `until` exactly, or within the limits."""
        records: list[Record] = []
        rows = 0
        seg, off = self._normal(self.cursor)
        while seg in self._sizes:
            with self._path(seg).open("rb") as f:
                f.seek(off)
                while off < self._sizes[seg]:
                    if until is not None and (seg, off) >= until:
                        return records
                    if until is None and records and (len(records) >= max_records or rows >= max_rows):
                        return records
                    blob = _read_blob(f)
                    if blob is None:
                        log.error("spool segment %s is corrupt at byte %d; skipping its remainder",
                                  self._path(seg).name, off)
                        break
                    entry = decode(blob, self.sealer)
                    records.append(Record(entry, (seg, off), (seg, off + len(blob)), blob))
                    rows += entry.rows
                    off += len(blob)
            later = [n for n in self._sizes if n > seg]
            if not later:
                break
            seg, off = min(later), 0
        return records

    def set_intent(self, intent: dict[str, Any] | None) -> None:
        self.intent = intent
        self._save_cursor()

    def ack(self, end: Pos) -> None:
        """Everything before `end` is in the store: move the cursor, free whole segments."""
        self.cursor = end
        self.intent = None
        first = self._normal(end)[0]
        for n in [n for n in self._sizes if n < first]:
            self._drop_segment(n)
        if end >= self.end and self._sizes:
            last = max(self._sizes)
            self._drop_segment(last)
            self.cursor = (last + 1, 0)
        self._save_cursor()

    def _drop_segment(self, n: int) -> None:
        if self._active is not None and n == max(self._sizes):
            self._active.close()
            self._active = None
        self._path(n).unlink(missing_ok=True)
        del self._sizes[n]

    def close(self) -> None:
        if self._active is not None:
            self._active.close()
            self._active = None
        self._lock.close()
