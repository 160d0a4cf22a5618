"""`python -m build` makes an sdist and a wheel that install without a package index and run.

Everything comes from the wheelhouse `make wheelhouse` builds (the same pinned wheels the image
installs), so nothing is downloaded while the test runs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from kubedrift import __version__

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
WHEELHOUSE = REPO / "build" / "image" / "wheels"


def _run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=600, check=False, cwd=cwd,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


def test_built_wheel_installs_offline_and_runs(tmp_path: Path) -> None:
    made = _run("make", "--no-print-directory", "wheelhouse", cwd=REPO)
    assert made.returncode == 0, made.stdout + made.stderr
    offline = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(WHEELHOUSE), "PIP_CONFIG_FILE": os.devnull}
    built = _run(sys.executable, "-m", "build", "--outdir", str(tmp_path / "dist"), str(REPO), env=offline)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("kubedrift-*.whl")
    (sdist,) = (tmp_path / "dist").glob("kubedrift-*.tar.gz")
    assert wheel.name.startswith(f"kubedrift-{__version__}-py3-none-any")
    assert sdist.name == f"kubedrift-{__version__}.tar.gz"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(f"kubedrift-{__version__}.dist-info/METADATA").decode()
        entry_points = archive.read(f"kubedrift-{__version__}.dist-info/entry_points.txt").decode()
    assert {"kubedrift/py.typed", "kubedrift/cli.py", "kubedrift/version.py"} <= names
    assert not [n for n in names if n.startswith(("tests/", "operator/"))]
    assert f"Version: {__version__}" in metadata and "Requires-Python: >=3.11" in metadata
    assert "kubedrift = kubedrift.cli:main" in entry_points

    venv = tmp_path / "venv"
    assert _run(sys.executable, "-m", "venv", str(venv)).returncode == 0
    installed = _run(str(venv / "bin" / "pip"), "install", "--quiet", str(wheel), env=offline)
    assert installed.returncode == 0, installed.stderr[-3000:]

    version = _run(str(venv / "bin" / "kubedrift"), "version", cwd=tmp_path)
    assert version.returncode == 0, version.stderr
    assert re.fullmatch(rf"kubedrift {re.escape(__version__)} \(commit unknown\)\n", version.stdout)
    scan = _run(str(venv / "bin" / "kubedrift"), "scan", "--manifests", str(REPO / "examples" / "gitops" / "base"),
                "--live", str(REPO / "examples" / "live" / "cluster-snapshot.yaml"), "--namespace", "shop",
                "--output", "json", cwd=tmp_path)
    assert scan.returncode == 2, scan.stdout[-2000:] + scan.stderr[-2000:]
    assert '"Deployment:shop:web"' in scan.stdout
