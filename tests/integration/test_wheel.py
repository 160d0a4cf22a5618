"""The built wheel carries what the installed CLI needs: the DriftPolicy schema and both entry points.

The package holds crds/driftpolicy.yaml as a symlink to the repository's crds/ (one copy in git);
this checks that a wheel built from a fresh copy of the tree holds the file itself and that the
installed package, away from any checkout, validates a policy with it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TREE = ("pyproject.toml", "README.md", "operator", "crds")

CHECK = """
import kubedrift, sys
from kubedrift.policy_schema import PolicySchemaError, validate_policy
assert kubedrift.__file__.startswith(sys.argv[1]), kubedrift.__file__
try:
    validate_policy({"apiVersion": "kubedrift.dev/v1alpha1", "kind": "DriftPolicy", "metadata": {"name": "p"},
                     "spec": {"source": {"repoURL": "https://example.com/r.git"}, "ignoreDiferences": []}})
except PolicySchemaError as exc:
    print(exc)
"""


def test_wheel_ships_the_policy_schema_and_the_kubectl_plugin(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in TREE:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, symlinks=True,
                            ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
        else:
            shutil.copy2(REPO / name, source / name)
    dist = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--skip-dependency-check",
         "--outdir", str(dist), str(source)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    [wheel] = dist.glob("kubedrift-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        schema = archive.read("kubedrift/crds/driftpolicy.yaml")
        entry_points = archive.read(next(n for n in archive.namelist() if n.endswith("entry_points.txt"))).decode()
    assert schema == (REPO / "crds" / "driftpolicy.yaml").read_bytes()
    assert "kubectl-drift = kubedrift.cli:main" in entry_points and "kubedrift = kubedrift.cli:main" in entry_points

    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--target", str(site),
         str(wheel)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert install.returncode == 0, install.stderr
    installed = site / "kubedrift" / "crds" / "driftpolicy.yaml"
    assert installed.is_file() and not installed.is_symlink()
    # PYTHONPATH comes before the editable install's path entry: the wheel's copy is the one imported.
    check = subprocess.run(
        [sys.executable, "-c", CHECK, str(site)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False,
        env={**os.environ, "PYTHONPATH": str(site)},
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "spec.ignoreDiferences: unknown field (did you mean ignoreDifferences?)"
