"""Reviewer logins, signed session cookies and CSRF tokens, with the standard library only.

- Passwords are stored as scrypt (or PBKDF2-SHA256) hashes with a random salt; tokens as their
  SHA-256 (a long random token needs no slow hash). Every comparison is constant-time.
- Scrypt costs at least OWASP's floor (n=2^17, r=8, p=1: about 0.4 s and 128 MiB), so it never
  runs on the event loop: `PasswordHasher` owns a small thread pool and refuses work past a
  short queue. A hash carries its parameters; one below the current cost is replaced on the
  next good login (`check_login` returns the new hash, the review store keeps it).
- Every login attempt costs exactly one scrypt at the current cost, whether the name is unknown,
  a token-only reviewer or a password reviewer, so timing does not tell which names exist.
- `LoginThrottle` counts attempts per client address and per name and answers with a growing
  wait; its memory is bounded whatever names and addresses a client makes up.
- A session is `name|expiry|nonce|mac`, the MAC an HMAC-SHA256 under the server's key, so a
  cookie cannot be forged or extended without the key; logout records the nonce as ended in the
  review store, so a copied cookie stops working at logout, not only at expiry.
- The CSRF token is an HMAC of the session's nonce: a page from this server can carry it, a
  form on another site cannot know it. Before login, a random pre-session cookie plays the role
  of the nonce, so the login form is protected too.

Run `python -m proxy.review.auth hash` to make a password hash for the config.
"""

from __future__ import annotations

import asyncio
import base64
import getpass
import hashlib
import hmac
import math
import os
import secrets
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from proxy.review.settings import ReviewerSettings

# OWASP's password storage floor for scrypt. Tests may pass a lower `n`; nothing else should.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**17, 8, 1
# Parameters a stored hash may ask for: beyond them a bad config line would cost seconds or GiBs.
_MAX_N, _MAX_R, _MAX_P = 2**20, 32, 4


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    # OpenSSL refuses more than 32 MiB unless told: scrypt needs 128 * r * (n + p + 2) bytes.
    maxmem = 128 * r * (n + p + 2) + (1 << 20)
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32, maxmem=maxmem)


def hash_password(password: str, salt: bytes | None = None, *, n: int = SCRYPT_N) -> str:
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = _scrypt(password, salt, n, SCRYPT_R, SCRYPT_P)
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def _scrypt_params(stored: str) -> tuple[int, int, int] | None:
    parts = stored.split("$")
    if parts[0] != "scrypt" or len(parts) != 6 or not all(x.isdigit() for x in parts[1:4]):
        return None
    n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
    if not (1 < n <= _MAX_N and n & (n - 1) == 0 and 0 < r <= _MAX_R and 0 < p <= _MAX_P):
        return None
    return n, r, p


def verify_password(password: str, stored: str) -> bool:
    parts = stored.split("$")
    try:
        if (params := _scrypt_params(stored)) is not None:
            digest = _scrypt(password, bytes.fromhex(parts[4]), *params)
        elif parts[0] == "pbkdf2_sha256" and len(parts) == 4:
            digest = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(parts[2]), int(parts[1]))
        else:
            return False
        return hmac.compare_digest(digest.hex(), parts[-1])
    except ValueError:
        return False


def needs_rehash(stored: str, n: int = SCRYPT_N) -> bool:
    """True for PBKDF2 hashes and scrypt hashes below the current cost."""
    params = _scrypt_params(stored)
    return params is None or params[0] < n or params[1] < SCRYPT_R


def dummy_hash(n: int = SCRYPT_N) -> str:
    """A hash no password matches, at the current cost: checked when there is no real one."""
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${'00' * 16}${'00' * 32}"


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class LoginResult:
    reviewer: ReviewerSettings | None
    new_hash: str | None = None  # the password's hash at the current cost, when the stored one is older


def authenticate(reviewers: list[ReviewerSettings], name: str, secret: str, *, n: int = SCRYPT_N,
                 upgraded: Mapping[str, str] | None = None) -> LoginResult:
    """Exactly one scrypt at cost `n` (or the stored hash's) for any name, then the token check.

    `upgraded` maps a reviewer to a hash that replaced its configured one (see `needs_rehash`).
    Blocking: call it through `PasswordHasher`, never on the event loop.
    """
    found = None
    for reviewer in reviewers:
        if hmac.compare_digest(reviewer.name.encode(), name.encode()):
            found = reviewer
    stored = None
    if found is not None and found.password_hash is not None:
        stored = (upgraded or {}).get(found.name) or found.password_hash
    password_ok = verify_password(secret, stored or dummy_hash(n)) and stored is not None
    token_ok = (found is not None and found.token_sha256 is not None
                and hmac.compare_digest(found.token_sha256, token_sha256(secret)))
    if found is None or not (password_ok or token_ok):
        return LoginResult(None)
    rehash = password_ok and stored is not None and needs_rehash(stored, n)
    return LoginResult(found, hash_password(secret, n=n) if rehash else None)


def check_login(reviewers: list[ReviewerSettings], name: str, secret: str, *,
                n: int = SCRYPT_N) -> ReviewerSettings | None:
    """The reviewer whose password or token `secret` is; the same work is done for unknown names."""
    return authenticate(reviewers, name, secret, n=n).reviewer


class HasherBusy(Exception):
    """More logins are waiting for a hash than the pool takes; the caller answers 429."""


class PasswordHasher:
    """Scrypt off the event loop, on a pool this object owns, with a bounded queue.

    Each hash holds 128 MiB for about 0.4 s, so two threads bound both the CPU and the memory a
    flood can take; past `max_waiting` logins in flight new ones are refused at once rather than
    queued without end. `close` shuts the pool down (the review cleanup context calls it).
    """

    def __init__(self, n: int = SCRYPT_N, workers: int = 2, max_waiting: int = 8) -> None:
        self.n = n
        self.max_waiting = max_waiting
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="warden-review-hash")
        self._in_flight = 0

    @property
    def busy(self) -> bool:
        return self._in_flight >= self.max_waiting

    async def authenticate(self, reviewers: list[ReviewerSettings], name: str, secret: str,
                           upgraded: Mapping[str, str]) -> LoginResult:
        if self.busy:
            raise HasherBusy
        self._in_flight += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._pool, lambda: authenticate(reviewers, name, secret, n=self.n, upgraded=upgraded))
        finally:
            self._in_flight -= 1

    async def close(self) -> None:
        """Waits (off the loop) for hashes already running; queued ones are dropped."""
        await asyncio.to_thread(self._pool.shutdown, True, cancel_futures=True)


@dataclass
class _Strikes:
    count: int = 0
    until: float = 0.0  # attempts are refused before this
    last: float = 0.0


class LoginThrottle:
    """Login attempts per client address and per name, with an exponential wait past `free`.

    An attempt is counted when it is admitted (before the hash), so concurrent guesses are
    counted too; a good login gives its attempt back. Configured reviewer names have their own
    table, bounded by the config; addresses and unknown names live in LRU tables of
    `max_entries` each, so made-up names or addresses cost bounded memory, and evicting them
    never resets a real reviewer's count. Counts are forgotten after `forget_s` of quiet.
    """

    def __init__(self, free: int = 5, base_s: float = 1.0, max_s: float = 300.0, forget_s: float = 900.0,
                 max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.free, self.base_s, self.max_s, self.forget_s = free, base_s, max_s, forget_s
        self.max_entries = max_entries
        self.clock = clock
        self._known: dict[str, _Strikes] = {}
        self._unknown: OrderedDict[str, _Strikes] = OrderedDict()
        self._addresses: OrderedDict[str, _Strikes] = OrderedDict()

    def size(self) -> int:
        return len(self._known) + len(self._unknown) + len(self._addresses)

    def _get(self, table: dict[str, _Strikes], key: str, now: float, create: bool) -> _Strikes | None:
        strikes = table.get(key)
        if strikes is not None and strikes.until <= now and strikes.last + self.forget_s <= now:
            del table[key]
            strikes = None
        if strikes is None and create:
            strikes = table[key] = _Strikes()
            if isinstance(table, OrderedDict) and len(table) > self.max_entries:
                table.popitem(last=False)
        if strikes is not None and isinstance(table, OrderedDict):
            table.move_to_end(key)
        return strikes

    def _tables(self, address: str, name: str, known: bool) -> list[tuple[dict[str, _Strikes], str]]:
        return [(self._addresses, address), (self._known if known else self._unknown, name)]

    def admit(self, address: str, name: str, known: bool) -> float:
        """0 with the attempt counted, or the seconds to wait (the attempt is not counted)."""
        now = self.clock()
        tables = self._tables(address, name, known)
        wait = max((s.until - now for t, k in tables if (s := self._get(t, k, now, create=False)) is not None),
                   default=0.0)
        if wait > 0:
            return wait
        for table, key in tables:
            strikes = self._get(table, key, now, create=True)
            assert strikes is not None
            strikes.count += 1
            strikes.last = now
            if strikes.count >= self.free:
                strikes.until = now + min(self.base_s * 2 ** (strikes.count - self.free), self.max_s)
        return 0.0

    def succeeded(self, address: str, name: str) -> None:
        """A good login: the name starts afresh, the address gets its attempt back."""
        now = self.clock()
        self._known.pop(name, None)
        strikes = self._get(self._addresses, address, now, create=False)
        if strikes is not None:
            strikes.count = max(0, strikes.count - 1)
            if strikes.count < self.free:
                strikes.until = 0.0


def retry_after(wait_s: float) -> str:
    return str(max(1, math.ceil(wait_s)))


@dataclass(frozen=True)
class Session:
    reviewer: str
    expires: float
    nonce: str


class Signer:
    """Signs sessions and derives CSRF tokens under one key."""

    def __init__(self, key: bytes) -> None:
        self.key = key

    @classmethod
    def from_env(cls, env_var: str) -> Signer:
        value = os.environ.get(env_var, "")
        return cls(value.encode() if value else secrets.token_bytes(32))

    def _mac(self, purpose: str, message: str) -> str:
        mac = hmac.new(self.key, f"{purpose}\x00{message}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def session_cookie(self, reviewer: str, ttl_s: float, now: float | None = None) -> str:
        expires = int((now if now is not None else time.time()) + ttl_s)
        body = f"{reviewer}|{expires}|{secrets.token_urlsafe(16)}"
        return f"{body}|{self._mac('session', body)}"

    def read_session(self, cookie: str | None, now: float | None = None) -> Session | None:
        if not cookie or cookie.count("|") != 3:
            return None
        body, mac = cookie.rsplit("|", 1)
        if not hmac.compare_digest(mac, self._mac("session", body)):
            return None
        reviewer, expires, nonce = body.split("|")
        if not expires.isdigit() or int(expires) < (now if now is not None else time.time()):
            return None
        return Session(reviewer, float(expires), nonce)

    def csrf_token(self, nonce: str) -> str:
        return self._mac("csrf", nonce)

    def check_csrf(self, nonce: str, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_token(nonce), token or "")


def main(argv: list[str]) -> int:
    if argv[:1] == ["hash"]:
        password = getpass.getpass("password: ")
        if password != getpass.getpass("again: "):
            print("the passwords differ", file=sys.stderr)
            return 1
        print(hash_password(password))
        return 0
    if argv[:1] == ["token"]:
        token = secrets.token_urlsafe(32)
        print(f"token (give to the reviewer): {token}\ntoken_sha256 (put in the config): {token_sha256(token)}")
        return 0
    print("usage: python -m proxy.review.auth hash|token", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
