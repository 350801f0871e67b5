"""The review section is validated with the path of the bad key; passwords hash and verify."""

from __future__ import annotations

import pytest

from proxy.review.auth import Signer, check_login, hash_password, token_sha256, verify_password
from proxy.review.settings import ReviewerSettings
from proxy.settings import ConfigError, build_settings

UPSTREAMS = [{"name": "g", "backends": [{"url": "http://127.0.0.1:9"}]}]


def problems(review: dict[str, object]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        build_settings({"upstreams": UPSTREAMS, "review": review})
    return caught.value.problems


def test_review_is_off_by_default_and_checked_when_on() -> None:
    assert not build_settings({"upstreams": UPSTREAMS}).review.enabled
    assert "review.enabled needs at least one entry in review.reviewers" in problems({"enabled": True})[0]
    (bad_hash,) = problems({"reviewers": [{"name": "a", "password_hash": "plaintext"}]})
    assert bad_hash.startswith("review.reviewers.0.password_hash:")
    (no_secret,) = problems({"reviewers": [{"name": "a"}]})
    assert "needs password_hash or token_sha256" in no_secret
    (rate,) = problems({"rate": 2})
    assert rate.startswith("review.rate:")
    (typo,) = problems({"cap_per_windw": 5})
    assert typo.startswith("review.cap_per_windw:")


def test_passwords_tokens_and_sessions() -> None:
    stored = hash_password("s3cret")
    assert verify_password("s3cret", stored) and not verify_password("s3cret!", stored)
    assert not verify_password("x", "scrypt$garbage")
    reviewers = [ReviewerSettings(name="a", password_hash=stored),
                 ReviewerSettings(name="b", token_sha256=token_sha256("t"))]
    assert check_login(reviewers, "a", "s3cret") is reviewers[0]
    assert check_login(reviewers, "b", "t") is reviewers[1]
    assert check_login(reviewers, "b", "s3cret") is None and check_login(reviewers, "zed", "t") is None
    signer = Signer(b"k" * 32)
    cookie = signer.session_cookie("a", ttl_s=60, now=1000)
    session = signer.read_session(cookie, now=1030)
    assert session is not None and session.reviewer == "a"
    assert signer.read_session(cookie, now=1061) is None  # expired
    assert signer.read_session(cookie.replace("a|", "b|", 1), now=1030) is None  # forged name
    assert Signer(b"other" * 8).read_session(cookie, now=1030) is None
    assert signer.check_csrf(session.nonce, signer.csrf_token(session.nonce))
    assert not signer.check_csrf(session.nonce, None) and not signer.check_csrf(session.nonce, "x")
