"""What `kubedrift version` prints: the package version and the commit it was built from."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from kubedrift import __version__

UNKNOWN = "unknown"


def commit() -> str:
    """The image's build commit (KUBEDRIFT_COMMIT, set by the Dockerfile), else the source checkout's HEAD."""
    baked = os.environ.get("KUBEDRIFT_COMMIT", "").strip()
    if baked and baked != UNKNOWN:
        return baked
    source_root = Path(__file__).resolve().parents[2]
    if not (source_root / "pyproject.toml").is_file() or Path(__file__).resolve().parent.parent.name != "operator":
        return UNKNOWN  # an installed wheel: no checkout to ask
    try:
        done = subprocess.run(["git", "-C", str(source_root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5, check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return UNKNOWN
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else UNKNOWN


def version_line() -> str:
    return f"kubedrift {__version__} (commit {commit()})"
