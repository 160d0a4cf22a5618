"""The scan result for people: one row per drifted object, its changes beneath, a summary line."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from kubedrift.model import Change, ResourceDrift, ScanResult, Severity

SEVERITY_STYLE = {
    Severity.LOW: "cyan",
    Severity.MEDIUM: "yellow",
    Severity.HIGH: "bold red",
    Severity.CRITICAL: "bold white on red",
}
MAX_VALUE = 60
NATURAL_WIDTH = 100_000
WIDE_ENOUGH = 120
"""Below this width a table that does not fit gets two columns instead of five."""


def _short(value: Any) -> str:
    if value is None:
        return "∅"
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"


def _change_line(change: Change) -> Text:
    line = Text()
    line.append(change.path or "(object)", style="bold")
    line.append(": ")
    line.append(_short(change.desired), style="green")
    line.append(" → ")
    line.append(_short(change.live), style="red")
    who = ", ".join(x for x in (change.changed_by and f"by {change.changed_by}", change.changed_at) if x)
    if who:
        line.append(f"  ({who})", style="dim")
    return line


def _resource_cell(drift: ResourceDrift) -> Text:
    cell = Text(drift.id, style="bold")
    for change in drift.changes:
        cell.append("\n  ")
        cell.append_text(_change_line(change))
    return cell


def _wide_table(result: ScanResult) -> Table:
    table = Table(show_lines=True, header_style="bold")
    table.add_column("SEVERITY", no_wrap=True)
    table.add_column("SCORE", justify="right")
    table.add_column("STATE", no_wrap=True)
    table.add_column("CATEGORIES")
    table.add_column("RESOURCE / CHANGES (git → live)", overflow="fold")
    for drift in result.drifts:
        table.add_row(
            Text(drift.severity.label, style=SEVERITY_STYLE[drift.severity]),
            str(drift.score),
            drift.state.value,
            "\n".join(drift.categories),
            _resource_cell(drift),
        )
    return table


def _narrow_table(result: ScanResult) -> Table:
    """Two columns for a narrow terminal: the changes keep most of the width."""
    table = Table(show_lines=True, header_style="bold")
    table.add_column("DRIFT", no_wrap=True)
    table.add_column("RESOURCE / CHANGES (git → live)", overflow="fold")
    for drift in result.drifts:
        verdict = Text.assemble(
            (drift.severity.label, SEVERITY_STYLE[drift.severity]), f" {drift.score}\n{drift.state.value}"
        )
        for category in drift.categories:
            verdict.append(f"\n{category}", style="dim")
        table.add_row(verdict, _resource_cell(drift))
    return table


def render_table(result: ScanResult, console: Console) -> None:
    """The drift table, fitted to the console: five columns when they leave room for the changes."""
    if result.drifts:
        wide = _wide_table(result)
        natural = console.measure(wide, options=console.options.update_width(NATURAL_WIDTH)).maximum
        if natural > console.width and console.width < WIDE_ENOUGH:
            console.print(_narrow_table(result))
        else:
            console.print(wide)
    for error in result.errors:
        console.print(Text.assemble(("error ", "bold red"), (f"{error.file}: " if error.file else ""), error.message))
    console.print(summary_line(result), markup=False, highlight=False)


def summary_line(result: ScanResult) -> str:
    counts = ", ".join(f"{n} {label}" for label, n in result.by_severity().items() if n)
    return (
        f"{result.resources} resources compared, {result.drifted} drifted"
        f" ({result.missing} missing{', ' + counts if counts else ''}), {len(result.errors)} errors"
    )
