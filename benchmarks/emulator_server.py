"""The API emulator as a process of its own, for the operator benchmark.

    emulator_server.py LIVE_JSON CONTROL_DIR

Serves the test harness's emulator (tests/support/emulator.py: kmock over real HTTP) on 127.0.0.1 with
kubedrift's CRDs, a SealedSecret CRD, the namespaces and every object of LIVE_JSON. Writes
CONTROL_DIR/kubeconfig, then CONTROL_DIR/stats-port: `GET /stats` on that port answers how many API
requests it served, how many watches are open and how many LIST pages it answered. Runs until SIGTERM.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.emulator import EmulatorServer  # noqa: E402

SEALED_SECRETS_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "sealedsecrets.bitnami.com"},
    "spec": {"group": "bitnami.com", "scope": "Namespaced",
             "names": {"kind": "SealedSecret", "plural": "sealedsecrets", "singular": "sealedsecret"},
             "versions": [{"name": "v1alpha1", "served": True, "storage": True,
                           "subresources": {"status": {}}}]},
}


def main(live_json: str, control_dir: str) -> int:
    control = Path(control_dir)
    control.mkdir(parents=True, exist_ok=True)
    server = EmulatorServer().start()
    server.emulator.bookmark_interval = 60.0  # as an API server does, about once a minute
    for crd in sorted((REPO / "crds").glob("*.yaml")):
        server.register_crd_file(crd)
    server.run(server.emulator.register_crd, SEALED_SECRETS_CRD)
    items: list[dict[str, Any]] = json.loads(Path(live_json).read_text())["items"]
    for namespace in sorted({"kubedrift", *(str(i["metadata"].get("namespace") or "") for i in items)} - {""}):
        server.seed({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    for item in items:
        server.seed(item)
    server.write_kubeconfig(control / "kubeconfig")

    class Stats(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"requests": len(server.emulator.audit), "open_watches": server.open_watches(),
                               "list_pages": server.emulator.list_pages}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    stats = ThreadingHTTPServer(("127.0.0.1", 0), Stats)
    threading.Thread(target=stats.serve_forever, daemon=True).start()
    (control / "stats-port.tmp").write_text(str(stats.server_address[1]))
    (control / "stats-port.tmp").rename(control / "stats-port")
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    stopped.wait()
    stats.shutdown()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
