"""Give the heap a scan freed back to the OS (glibc's malloc_trim)."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def return_freed_memory() -> None:
    """Give back to the OS the heap a full scan used and freed (its decoded live objects, its diff): glibc
    keeps it otherwise, and the operator's RSS would stay at its peak instead of what it keeps."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
