"""Pure logic of the lab API's access control: tokens, rate limits, input checks."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from labstream.api.app import _nul_field, parse_experiment
from labstream.api.auth import RateLimiter
from labstream.api.exceptions import BadInput, PayloadTooLarge, RateLimited
from labstream.auth.tokens import Role, TokenRow, hash_secret, secret_matches, split_token


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_bucket_allows_the_burst_then_says_when_to_retry() -> None:
    clock = Clock()
    limiter = RateLimiter(rate_per_s=0.5, burst=2, clock=clock)
    limiter.take("a")
    limiter.take("a")
    with pytest.raises(RateLimited) as refused:
        limiter.take("a")
    assert refused.value.retry_after == 2 and refused.value.headers == {"Retry-After": "2"}
    limiter.take("b")  # per credential
    clock.now += 2.0
    limiter.take("a")


def test_tokens_split_only_when_well_formed() -> None:
    secret = "A" * 43
    assert split_token(f"lst_0123456789abcdef_{secret}") == ("0123456789abcdef", secret)
    for bad in ("", "lst_0123_x", f"lst_0123456789ABCDEF_{secret}",
                f"xyz_0123456789abcdef_{secret}", f"lst_0123456789abcdef_{secret}!"):
        assert split_token(bad) is None


def test_the_secret_matches_only_its_own_hash() -> None:
    salt = b"s" * 16
    row = TokenRow(id="0123456789abcdef", name="t", role=Role.VIEWER, tenant_id="acme",
                   secret_hash=hash_secret("right", salt, n=2**4), salt=salt, scrypt_n=2**4,
                   scrypt_r=8, scrypt_p=1, created_at=datetime.now(UTC), expires_at=None,
                   revoked_at=None, last_used_at=None)
    assert secret_matches(row, "right") and not secret_matches(row, "wrong")
    assert row.usable(datetime.now(UTC))
    assert "secret_hash" not in row.public() and "salt" not in row.public()
    assert Role.SCIENTIST.may_write and not Role.VIEWER.may_write and not Role.OPERATOR.may_write


def test_nul_bytes_are_found_with_their_field() -> None:
    assert _nul_field({"a": {"b": ["ok", "x\x00"]}}, "") == "a.b.1"
    assert _nul_field({"a\x00": 1}, "") == ".'a\\x00'"
    assert _nul_field({"a": [1, {"b": "fine"}]}, "") is None


def test_experiment_fields_over_their_limits_are_413_naming_the_limit() -> None:
    base = {"kind": "hplc", "submitted_by": "ada"}
    with pytest.raises(PayloadTooLarge, match="title is 501 characters; the limit is 500"):
        parse_experiment(json.dumps({**base, "title": "t" * 501}).encode())
    with pytest.raises(PayloadTooLarge, match=r"protocol .* the limit is 131072"):
        parse_experiment(json.dumps({**base, "protocol": {"x": "p" * 131_072}}).encode())
    with pytest.raises(BadInput, match="priority must not be negative"):
        parse_experiment(json.dumps({**base, "priority": -1}).encode())
    assert parse_experiment(json.dumps({**base, "protocol": {"t": -20}}).encode()).protocol == {
        "t": -20}
