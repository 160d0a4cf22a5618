"""Kubernetes name rules (DNS-1123), for names that come from untrusted input."""

from __future__ import annotations

import re

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_LABEL = re.compile(rf"^{_LABEL}$")
_DNS_SUBDOMAIN = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
# fullmatch, not match: Python's `$` also matches before a final newline ("web\n").


def is_dns_label(name: str) -> bool:
    """A namespace name: at most 63 lowercase alphanumerics or '-', alphanumeric at both ends."""
    return len(name) <= 63 and bool(_DNS_LABEL.fullmatch(name))


def is_dns_subdomain(name: str) -> bool:
    """An object name such as a ServiceAccount's: dot-separated DNS labels, at most 253 characters."""
    return len(name) <= 253 and bool(_DNS_SUBDOMAIN.fullmatch(name))
