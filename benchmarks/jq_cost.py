"""What the jq sandbox (kubedrift/jq_sandbox.py) costs on a realistic policy.

`.venv/bin/python benchmarks/jq_cost.py [--n 5000] [--repeat 3]`

The same N desired vs N live objects as `make bench` (copies of the captured corpus), compared
with three settings:
- no ignore rules;
- Argo CD's common rule as a jsonPointer (`/spec/replicas` of every Deployment/StatefulSet);
- the same objects matched by a jq rule as Argo CD users write them for sidecars
  (`.spec.template.spec.containers[] | select(.name == "istio-proxy")`) on every workload kind,
  evaluated in the sandbox worker processes: one JSON round trip per matched object.
Prints the diff stage's objects/s for each and the jq rule's cost per matched object.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "operator"))

import jq  # noqa: E402

from generate import generate, load_templates  # noqa: E402
from kubedrift.diff import compare_objects  # noqa: E402
from kubedrift.diff.normalize import normalize  # noqa: E402
from kubedrift.jq_sandbox import program_text, sandbox  # noqa: E402
from kubedrift.model import DiffSettings, IgnoreRule, KubeObject  # noqa: E402

CORPUS = HERE.parent.parent / "shared" / "corpus" / "live-objects"
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")
SIDECAR = '.spec.template.spec.containers[] | select(.name == "istio-proxy")'


def best(run: int, fn: object) -> float:
    times = []
    for _ in range(run):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    args = parser.parse_args()
    data = generate(load_templates(args.corpus), args.n)
    desired = [KubeObject(o, "git") for o in data.desired]
    live = [KubeObject(o, "cluster") for o in data.live]
    matched = sum(1 for o in data.desired if o.get("kind") in WORKLOADS)
    settings = {
        "no rules": DiffSettings(),
        "jsonPointers rule": DiffSettings(ignore_rules=[
            IgnoreRule(kind=kind, json_pointers=["/spec/replicas"]) for kind in WORKLOADS]),
        "jq rule (sandbox)": DiffSettings(ignore_rules=[
            IgnoreRule(kind=kind, jq_path_expressions=[SIDECAR]) for kind in WORKLOADS]),
    }
    sandbox().paths(SIDECAR, [{}])  # workers started: start-up is paid once per process, not per scan
    print(f"N = {args.n}, objects a workload rule matches: {matched}")
    print("| settings | diff s | objects/s |")
    print("|---|---:|---:|")
    seconds = {}
    for name, setting in settings.items():
        seconds[name] = best(args.repeat, lambda s=setting: compare_objects(desired, live, s))
        print(f"| {name} | {seconds[name]:.2f} | {args.n / seconds[name]:,.0f} |")
    extra = seconds["jq rule (sandbox)"] - seconds["jsonPointers rule"]
    print(f"\njq rule cost: {extra:.2f}s per scan, {extra / max(matched, 1) * 1e6:,.0f} µs per matched object")

    # One call = desired + live of one object: in a sandbox worker vs the jq binding in-process.
    bodies = [normalize(o) for o in data.live if o.get("kind") in WORKLOADS][:500]
    program = jq.compile(program_text(SIDECAR))
    in_sandbox = best(args.repeat, lambda: [sandbox().paths(SIDECAR, [b, b]) for b in bodies])
    in_process = best(args.repeat, lambda: [(program.input_value(b).first(), program.input_value(b).first())
                                            for b in bodies])
    print(f"per object, both sides: sandbox {in_sandbox / len(bodies) * 1e6:,.0f} µs, "
          f"in-process {in_process / len(bodies) * 1e6:,.0f} µs")
    sandbox().close()


if __name__ == "__main__":
    main()
