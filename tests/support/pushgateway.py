"""A real Prometheus Pushgateway for tests: Debian's `prometheus-pushgateway` on 127.0.0.1, in memory."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.support.ports import free_port

START_TIMEOUT = 30.0
Series = dict[tuple[tuple[str, str], ...], float]
"""Sorted label pairs -> value."""


class Pushgateway:
    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"pushgateway-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("prometheus-pushgateway")
        if not binary:
            pytest.fail("prometheus-pushgateway is not installed: run `make system-deps` "
                        "(Debian package prometheus-pushgateway)")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                # --persistence.file= keeps the metrics in memory (the package default is under /var/lib).
                [binary, f"--web.listen-address=127.0.0.1:{self.port}", "--persistence.file=", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus-pushgateway exited early; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"prometheus-pushgateway did not answer within {START_TIMEOUT}s; see {self.log_path}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def exposition(self) -> str:
        """/metrics as Prometheus scrapes it."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as response:
            text: str = response.read().decode()
        return text

    def series(self, name: str, /, **labels: str) -> Series:
        """Samples of `name` whose labels include `labels`, as Prometheus stores them with honor_labels."""
        out: Series = {}
        for family in text_string_to_metric_families(self.exposition()):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    out[tuple(sorted(sample.labels.items()))] = sample.value
        return out


@contextlib.contextmanager
def running_pushgateway(log_dir: Path) -> Iterator[Pushgateway]:
    gateway = Pushgateway(log_dir)
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()
