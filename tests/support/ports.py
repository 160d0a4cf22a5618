"""Free TCP ports for servers the tests start (operator, emulator, MongoDB, Pushgateway, receivers).

A port the kernel hands out for `bind(0)` comes from the ephemeral range, which every outgoing
connection of the suite (git, HTTP clients, pymongo) draws from too: between picking it and the
server binding it, a client may take it ("address already in use"). Ports below the ephemeral range
are never given to outgoing connections, so only another explicit bind could race for them.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_LOWEST = 10000


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port on 127.0.0.1 that is free now and outside the ephemeral range."""
    top = _ephemeral_start()
    candidates = list(range(_LOWEST, top)) if top > _LOWEST + 100 else []
    random.shuffle(candidates)
    for port in candidates[:200]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # no room below it: the kernel's choice
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
