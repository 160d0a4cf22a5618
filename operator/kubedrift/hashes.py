"""Plain (unkeyed) content hashes, and the canonical JSON text they and the keyed digests are taken of.

`sha256:<first 12 hex>` tells two values apart (change detection, oversized values); it is never applied
to a Secret value in clear: those get the keyed digest of kubedrift.digest.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

HASH_HEX_CHARS = 12


def canonical_json(value: Any) -> str:
    """One text per JSON value: sorted keys, no spaces; anything else as str(). Raises RecursionError when
    too deeply nested, ValueError on a circular value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def sha256_hex(text: str, chars: int = HASH_HEX_CHARS) -> str:
    """The first `chars` hex digits of the SHA-256 of `text` (UTF-8)."""
    return hashlib.sha256(text.encode()).hexdigest()[:chars]


def text_hash(text: str) -> str:
    """`sha256:<first 12 hex>` of a text."""
    return f"sha256:{sha256_hex(text)}"


def content_hash(value: Any) -> str:
    """`sha256:<first 12 hex>` of a JSON value's canonical text."""
    return text_hash(canonical_json(value))
