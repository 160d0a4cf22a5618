"""Throughput and scale benchmark (`make bench`).

For each N: N desired objects (a repo-like YAML tree) against N live objects (one JSON List),
about 5% drifted. Reports the diff stage alone (compare_objects on pre-loaded objects), the whole
`kubedrift scan --output json` process (wall time, peak RSS) and the parse floor: a process that
only parses the same inputs (CSafeLoader + json.loads). The target is scan <= 2x floor at 5k.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "operator"))

from generate import Dataset, Template, generate, load_templates, resource_id, write  # noqa: E402
from kubedrift.diff import compare_objects  # noqa: E402
from kubedrift.model import DiffSettings, KubeObject  # noqa: E402
from operator_bench import measure_operator  # noqa: E402
from operator_bench import table as operator_table  # noqa: E402

# The source root on the path, so the scan also runs from a checkout that was never pip-installed.
_PATH = [str(REPO / "operator"), *filter(None, [os.environ.get("PYTHONPATH")])]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(_PATH)}
TARGET_N = 5000
TARGET_RATIO = 2.0


@dataclass
class Process:
    wall: float
    peak_rss_mib: float
    returncode: int
    stdout: str


@dataclass
class Row:
    n: int
    diff_rate: float
    scan: Process
    floor: Process
    found: int
    expected: int
    false_positives: int
    missed: int

    @property
    def ratio(self) -> float:
        return self.scan.wall / self.floor.wall


def run_process(argv: list[str]) -> Process:
    """Wall time and peak RSS of a command, measured by peak_rss.py around it."""
    with tempfile.TemporaryFile(mode="w+") as out, tempfile.NamedTemporaryFile(suffix=".json") as result:
        subprocess.run([sys.executable, str(HERE / "peak_rss.py"), result.name, *argv],
                       stdout=out, stderr=subprocess.DEVNULL, env=ENV, check=True)
        measured = json.loads(Path(result.name).read_text())
        out.seek(0)
        return Process(measured["wall"], measured["peak_rss_kib"] / 1024, measured["returncode"], out.read())


def best_of(repeat: int, argv: list[str]) -> Process:
    return min((run_process(argv) for _ in range(repeat)), key=lambda p: p.wall)


def diff_rate(data: Dataset, repeat: int) -> tuple[float, set[str]]:
    desired = [KubeObject(obj, "bench") for obj in data.desired]
    live = [KubeObject(obj, "bench") for obj in data.live]
    best, ids = float("inf"), set()
    for _ in range(repeat):
        start = time.perf_counter()
        result = compare_objects(desired, live, DiffSettings())
        best = min(best, time.perf_counter() - start)
        ids = {d.id for d in result.drifts}
    return len(desired) / best, ids


def kubedrift_command() -> list[str]:
    script = Path(sys.executable).parent / "kubedrift"
    return [str(script)] if script.exists() else [sys.executable, "-m", "kubedrift.cli"]


def measure(n: int, templates: list[Template], out: Path, repeat: int) -> Row:
    data = generate(templates, n)
    folder = out / f"n{n}"
    shutil.rmtree(folder, ignore_errors=True)
    manifests, live = write(data, folder)
    rate, diff_ids = diff_rate(data, repeat)
    scan = best_of(repeat, [*kubedrift_command(), "scan", "--manifests", str(manifests), "--live", str(live),
                            "--output", "json"])
    if scan.returncode not in (0, 2):
        raise SystemExit(f"kubedrift scan failed at N={n} (exit {scan.returncode})")
    scan_ids = {d["id"] for d in json.loads(scan.stdout)["drifts"]}
    if scan_ids != diff_ids:
        print(f"warning: N={n}: the CLI and compare_objects disagree on {len(scan_ids ^ diff_ids)} ids",
              file=sys.stderr)
    floor = best_of(repeat, [sys.executable, str(HERE / "parse_floor.py"), str(manifests), str(live)])
    expected = data.drifted_ids
    assert {resource_id(o) for o in data.desired} >= expected
    return Row(n, rate, scan, floor, len(scan_ids), len(expected), len(scan_ids - expected),
               len(expected - scan_ids))


def table(rows: list[Row]) -> str:
    lines = [
        "| N (desired = live) | diff stage objects/s | scan wall s | scan peak RSS MiB | parse floor s "
        "| floor peak RSS MiB | scan / floor | drifts found / seeded (FP, missed) |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.n:,} | {r.diff_rate:,.0f} | {r.scan.wall:.2f} | {r.scan.peak_rss_mib:.0f} | {r.floor.wall:.2f} "
            f"| {r.floor.peak_rss_mib:.0f} | {r.ratio:.2f}x | {r.found} / {r.expected} "
            f"({r.false_positives}, {r.missed}) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,5000,10000", help="comma-separated object counts")
    parser.add_argument("--repeat", type=int, default=2, help="runs per measurement; the best one counts")
    parser.add_argument("--out", type=Path, default=HERE / "out")
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "corpus" / "live-objects")
    parser.add_argument("--operator-sizes", default="1000,10000",
                        help="object counts of the operator benchmark (empty: skip it)")
    parser.add_argument("--changes", type=int, default=50, help="hand edits (and reverts) per operator size")
    parser.add_argument("--quiet", type=float, default=60.0, help="seconds of steady state to count requests")
    args = parser.parse_args(argv)
    templates = load_templates(args.corpus)
    rows = []
    for n in (int(s) for s in args.sizes.split(",") if s.strip()):
        rows.append(measure(n, templates, args.out, args.repeat))
        print(f"N={n:,} done", file=sys.stderr)
    report = table(rows) if rows else ""
    if rows:
        print(report)
    target = next((r for r in rows if r.n == TARGET_N), None)
    if target is not None:
        verdict = "met" if target.ratio <= TARGET_RATIO else "NOT met"
        print(f"\nTarget (scan of {TARGET_N:,} within {TARGET_RATIO:.0f}x the parse floor): {verdict} "
              f"({target.ratio:.2f}x)")
    operator_rows = []
    for n in (int(s) for s in args.operator_sizes.split(",") if s.strip()):
        operator_rows.append(measure_operator(n, templates, args.out, args.changes, args.quiet,
                                              kubedrift_command()))
        print(f"operator N={n:,} done", file=sys.stderr)
    if operator_rows:
        operator_report = operator_table(operator_rows, args.quiet)
        print("\n" + operator_report)
        report += "\n\n" + operator_report
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
