"""Replay's "run a succeeded job again" consent, in a form a plain producer cannot forge.

`labstream replay run --execute --rerun-succeeded` marks each record it produces
with `labstream-replay-rerun-succeeded: v1.<expires>.<hmac>`: an HMAC-SHA256, under
`LABSTREAM_REPLAY_CONSENT_KEY`, over the replay id, the expiry and digests of the
record's key and value bytes. The worker launches a succeeded job again only when
that HMAC checks out for the record it holds and the expiry has not passed. So:

- anyone who can produce to Kafka but lacks the key cannot ask for a re-run
  (the old `true` is ignored);
- a valid header copied onto another record (other key or value) is ignored;
- a copied record, bytes and all, re-runs at most the same job, and only until
  the consent expires (`LABSTREAM_REPLAY_CONSENT_TTL_S`, one day by default).

The key is shared by whoever runs `labstream replay` and the workers; keep it with
the other secrets, never in a topic. Without it a worker never re-runs a
succeeded job and `--rerun-succeeded` refuses to start.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from base.contracts import headers
from base.errors import ConfigError

RERUN_SUCCEEDED_HEADER = headers.RERUN_SUCCEEDED
REPLAY_ID_HEADER = headers.REPLAY_ID
_VERSION = "v1"


class ConsentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LABSTREAM_REPLAY_", frozen=True,
                                      extra="ignore")

    consent_key: SecretStr | None = Field(default=None, description=(
        "Secret shared by `labstream replay` and the workers: signs --rerun-succeeded."))
    consent_ttl_s: int = Field(default=86_400, ge=60, description=(
        "Seconds a signed re-run consent stays valid after the replay produced it."))


def consent_key(settings: ConsentSettings | None = None) -> bytes | None:
    value = (settings or ConsentSettings()).consent_key
    return value.get_secret_value().encode() if value and value.get_secret_value() else None


def require_consent_key() -> bytes:
    key = consent_key()
    if key is None:
        raise ConfigError(
            "--rerun-succeeded needs LABSTREAM_REPLAY_CONSENT_KEY: the workers only re-run a "
            "succeeded job for a record signed with it",
            hint="set the same LABSTREAM_REPLAY_CONSENT_KEY for the workers and for replay")
    return key


def _mac(key: bytes, replay_id: str, expires: int, record_key: bytes | None,
         record_value: bytes | None) -> str:
    message = "|".join((_VERSION, replay_id, str(expires),
                        hashlib.sha256(record_key or b"").hexdigest(),
                        hashlib.sha256(record_value or b"").hexdigest()))
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def sign(key: bytes, *, replay_id: str, record_key: bytes | None,
         record_value: bytes | None, ttl_s: int | None = None,
         now: float | None = None) -> bytes:
    """The header value consenting to re-run what this very record triggers."""
    ttl = ttl_s if ttl_s is not None else ConsentSettings().consent_ttl_s
    expires = int((now if now is not None else time.time()) + ttl)
    return f"{_VERSION}.{expires}.{_mac(key, replay_id, expires, record_key, record_value)}" \
        .encode()


def consented(headers: Sequence[tuple[str, bytes | None]], *, key: bytes | None,
              record_key: bytes | None, record_value: bytes | None,
              now: float | None = None) -> bool:
    """True only for a valid, unexpired signature over this record by the consent key."""
    if key is None:
        return False
    named = {name.lower(): value for name, value in headers if value is not None}
    raw, replay_id = named.get(RERUN_SUCCEEDED_HEADER), named.get(REPLAY_ID_HEADER)
    if raw is None or replay_id is None:
        return False
    try:
        version, expires_text, mac = raw.decode("ascii").strip().split(".")
        expires = int(expires_text)
    except (UnicodeDecodeError, ValueError):
        return False  # `true` (the old, forgeable form) or garbage
    if version != _VERSION or expires < (now if now is not None else time.time()):
        return False
    expected = _mac(key, replay_id.decode("utf-8", "replace"), expires, record_key, record_value)
    return hmac.compare_digest(mac, expected)
