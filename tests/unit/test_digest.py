"""Keyed digests of Secret values (kubedrift.digest): `hmac:` with the installation's or the run's key."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubedrift import digest
from kubedrift.diff.normalize import normalize

PASSWORD = "admin"


@pytest.fixture(autouse=True)
def restore_key() -> Iterator[None]:
    yield
    digest.use_key(digest.new_key())


def test_digest_is_hmac_sha256_with_the_key_never_a_plain_hash() -> None:
    key = b"k" * 32
    digest.use_key(key)

    value = digest.secret_digest(PASSWORD)

    assert value == "hmac:" + hmac.new(key, PASSWORD.encode(), hashlib.sha256).hexdigest()[:12]
    assert hashlib.sha256(PASSWORD.encode()).hexdigest()[:12] not in value
    assert digest.is_digest(value) and not digest.is_digest("sha256:8c6976e5b541")


def test_another_key_gives_another_digest_and_short_keys_are_refused() -> None:
    digest.use_key(b"a" * 32)
    first = digest.secret_digest(PASSWORD)
    digest.use_key(b"b" * 32)
    assert digest.secret_digest(PASSWORD) != first
    with pytest.raises(digest.DigestKeyError, match="at least 16 bytes"):
        digest.use_key(b"short")


def test_secret_data_and_string_data_digest_alike() -> None:
    digest.use_key(b"c" * 32)
    as_data = {"kind": "Secret", "data": {"password": "YWRtaW4="}}
    as_string = {"kind": "Secret", "stringData": {"password": PASSWORD}}

    assert normalize(as_data)["data"] == normalize(as_string)["data"] == {"password": digest.secret_digest(PASSWORD)}


def _scan_digest(tmp_path: Path, *extra: str) -> str:
    secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: a}\nstringData: {password: %s}\n"
    (tmp_path / "git.yaml").write_text(secret % "git-side")
    (tmp_path / "live.yaml").write_text(secret % "live-side")
    done = subprocess.run([sys.executable, "-m", "kubedrift", "scan", "--manifests", str(tmp_path / "git.yaml"),
                           "--live", str(tmp_path / "live.yaml"), "-o", "json", *extra],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    return str(json.loads(done.stdout)["drifts"][0]["changes"][0]["desired"])


def test_scan_draws_a_key_per_run_unless_a_key_file_is_given(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("0123456789abcdef0123456789abcdef\n")
    expected = "hmac:" + hmac.new(b"0123456789abcdef0123456789abcdef", b"git-side", hashlib.sha256).hexdigest()[:12]

    assert _scan_digest(tmp_path, "--digest-key-file", str(key_file)) == expected
    assert _scan_digest(tmp_path, "--digest-key-file", str(key_file)) == expected
    assert _scan_digest(tmp_path) != _scan_digest(tmp_path)  # a new key each run: nothing to compare offline
