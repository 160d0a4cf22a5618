"""The scan result as unified diffs, one per drifted object, as `kubectl diff` users read them.

Each diff compares the two sides the diff stage compared (`ResourceDrift.view`): the fields Git
declares, and the same fields live plus those a person added. Secret values are digests there
already. Headers: `--- git/<Kind>/<namespace>/<name>`, `+++ live/<Kind>/<namespace>/<name>`
(the namespace is empty for cluster-scoped objects, as in the resource id `Kind::name`).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Any

import yaml
from rich.console import Console
from rich.text import Text

from kubedrift.model import ResourceDrift, ScanResult

CONTEXT_LINES = 3
_STYLES = {"---": "bold", "+++": "bold", "@@": "cyan", "-": "red", "+": "green"}


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (a config file in a ConfigMap) as `|` blocks: a diff then shows the line that changed."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _represent_str)


def _yaml_lines(value: Any) -> list[str]:
    if value is None:
        return []
    text = yaml.dump(value, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=10_000)
    return text.splitlines()


def _label(drift: ResourceDrift) -> str:
    key = drift.key
    return f"{key.kind}/{key.namespace}/{key.name}"


def unified_diff(drift: ResourceDrift) -> Iterator[str]:
    """The lines of one object's diff (no line endings); nothing for a drift without a view."""
    if drift.view is None:
        return iter(())
    label = _label(drift)
    return difflib.unified_diff(
        _yaml_lines(drift.view.desired),
        _yaml_lines(drift.view.live),
        fromfile=f"git/{label}",
        tofile=f"live/{label}",
        n=CONTEXT_LINES,
        lineterm="",
    )


def _style(line: str) -> str:
    for prefix, style in _STYLES.items():
        if line.startswith(prefix):
            return style
    return ""


def render_diff(result: ScanResult, console: Console) -> None:
    """Every drifted object's diff on `console` (coloured only when it is a terminal)."""
    for drift in result.drifts:
        for line in unified_diff(drift):
            console.print(Text(line, style=_style(line)), soft_wrap=True, highlight=False)
