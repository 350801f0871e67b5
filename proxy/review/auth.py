"""Reviewer logins, signed session cookies and CSRF tokens, with the standard library only.

- Passwords are stored as scrypt (or PBKDF2-SHA256) hashes with a random salt; tokens as their
  SHA-256 (a long random token needs no slow hash). Every comparison is constant-time.
- A session is `name|expiry|nonce|mac`, the MAC an HMAC-SHA256 under the server's key: no
  server-side session table, and a cookie cannot be forged or extended without the key.
- The CSRF token is an HMAC of the session's nonce: a page from this server can carry it, a
  form on another site cannot know it. Before login, a random pre-session cookie plays the role
  of the nonce, so the login form is protected too.

Run `python -m proxy.review.auth hash` to make a password hash for the config.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import os
import secrets
import sys
import time
from dataclasses import dataclass

from proxy.review.settings import ReviewerSettings

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    parts = stored.split("$")
    try:
        if parts[0] == "scrypt" and len(parts) == 6:
            n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
            digest = hashlib.scrypt(password.encode(), salt=bytes.fromhex(parts[4]), n=n, r=r, p=p, dklen=32,
                                    maxmem=256 * 1024 * 1024)
        elif parts[0] == "pbkdf2_sha256" and len(parts) == 4:
            digest = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(parts[2]), int(parts[1]))
        else:
            return False
        return hmac.compare_digest(digest.hex(), parts[-1])
    except ValueError:
        return False


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_login(reviewers: list[ReviewerSettings], name: str, secret: str) -> ReviewerSettings | None:
    """The reviewer whose password or token `secret` is; the same work is done for unknown names."""
    found = None
    for reviewer in reviewers:
        if hmac.compare_digest(reviewer.name.encode(), name.encode()):
            found = reviewer
    if found is None:
        verify_password(secret, _DUMMY_HASH)  # as slow as a real check: no user enumeration by timing
        return None
    ok = found.token_sha256 is not None and hmac.compare_digest(found.token_sha256, token_sha256(secret))
    if found.password_hash is not None:
        ok = verify_password(secret, found.password_hash) or ok
    return found if ok else None


_DUMMY_HASH = f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${'00' * 16}${'00' * 32}"


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
