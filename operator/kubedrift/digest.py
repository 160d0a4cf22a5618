"""Keyed digests of Secret values: `hmac:<first 12 hex>` of HMAC-SHA256 (SPEC §2 Secrets).

A plain hash of a password can be confirmed offline by hashing guesses (`sha256("admin")` is
well known). Keyed with a secret key, equal values still compare equal within one installation,
but a reader of a report, record or log cannot test a guess.

The key is process-wide: the operator loads it once at start from a Secret of its own namespace
(created on first start, see cluster/digest_key.py) so digests stay stable across restarts and
replicas; `kubedrift scan` draws a fresh one per run unless `--digest-key-file` is given. Every
stage that shows a Secret value calls `secret_digest` (normalize) or `value_digest` (the store's
defence in depth): one mechanism, one key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from typing import Any

from kubedrift.hashes import canonical_json

PREFIX = "hmac:"
KEY_BYTES = 32
MIN_KEY_BYTES = 16
_HEX_CHARS = 12

_lock = threading.Lock()
_key: bytes = secrets.token_bytes(KEY_BYTES)


class DigestKeyError(ValueError):
    """A digest key is missing or too short; the message never holds the key."""


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def use_key(key: bytes) -> None:
    """Make `key` the key of every digest this process computes from now on."""
    if len(key) < MIN_KEY_BYTES:
        raise DigestKeyError(f"a digest key needs at least {MIN_KEY_BYTES} bytes, got {len(key)}")
    global _key
    with _lock:
        _key = bytes(key)


def read_key_file(path: str) -> bytes:
    """A key file's bytes (surrounding whitespace dropped, so `openssl rand -hex 32 > f` works)."""
    try:
        with open(path, "rb") as fh:
            key = fh.read(4096).strip()
    except OSError as exc:
        raise DigestKeyError(f"cannot read the digest key file {path}: {exc.strerror or type(exc).__name__}") from None
    if len(key) < MIN_KEY_BYTES:
        raise DigestKeyError(f"the digest key file {path} holds {len(key)} bytes; at least {MIN_KEY_BYTES} needed")
    return key


def secret_digest(value: bytes | str | None) -> str:
    """`hmac:<12 hex>` of a Secret value: equal values compare equal, nothing can be confirmed offline."""
    raw = value.encode() if isinstance(value, str) else (value or b"")
    return PREFIX + hmac.new(_key, raw, hashlib.sha256).hexdigest()[:_HEX_CHARS]


def value_digest(value: Any) -> str:
    """The keyed digest of any JSON value (its canonical text)."""
    return secret_digest(canonical_json(value))


def is_digest(value: Any) -> bool:
    return (
        isinstance(value, str)
        and value.startswith(PREFIX)
        and len(value) == len(PREFIX) + _HEX_CHARS
        and all(c in "0123456789abcdef" for c in value[len(PREFIX):])
    )
