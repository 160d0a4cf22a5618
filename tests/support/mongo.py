"""A real MongoDB wire server for tests: `MONGODB_URI` when set, otherwise secantusd-py on 127.0.0.1.

Import the fixtures into a test module (`from tests.support.mongo import mongo_uri`). `mongo_uri` gives
each test its own database; `own_mongo` always starts a private secantusd-py process, for tests that
kill and restart the server.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pymongo
import pytest
from pymongo.uri_parser import parse_uri
from tests.support.ports import free_port

START_TIMEOUT = 30.0


def _server_binary() -> str:
    local = Path(sys.executable).parent / "secantusd-py"
    found = str(local) if local.exists() else shutil.which("secantusd-py")
    if not found:
        raise RuntimeError("secantusd-py not found: install the test extras (`make install`)")
    return found


class MongoServer:
    """One secantusd-py process with on-disk storage, so data survives kill + restart."""

    def __init__(self, storage: Path, port: int | None = None) -> None:
        self.storage = storage
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = storage.parent / f"secantusd-{self.port}.log"

    def uri(self, database: str = "kubedrift") -> str:
        return f"mongodb://127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        self.storage.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [_server_binary(), "--host", "127.0.0.1", "--port", str(self.port),
                 "--storage-path", str(self.storage), "--log-level", "WARNING",
                 # journaled acknowledgements (j:true) must survive a SIGKILL, as with mongod
                 "--sync-on-commit"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"secantusd-py exited early; see {self.log_path}")
            try:
                with pymongo.MongoClient(self.uri(), serverSelectionTimeoutMS=300) as client:
                    client.admin.command("ping")
                return
            except pymongo.errors.PyMongoError:
                time.sleep(0.1)
        raise RuntimeError(f"secantusd-py did not answer within {START_TIMEOUT}s; see {self.log_path}")

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="session")
def mongo_base_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mongodb://host:port` of a shared server (MONGODB_URI's server when set)."""
    external = os.environ.get("MONGODB_URI")
    if external:
        parsed = parse_uri(external)
        host, port = parsed["nodelist"][0]
        yield f"mongodb://{host}:{port}"
        return
    server = MongoServer(tmp_path_factory.mktemp("mongo") / "data")
    server.start()
    try:
        yield f"mongodb://127.0.0.1:{server.port}"
    finally:
        server.stop()


@pytest.fixture()
def mongo_uri(mongo_base_uri: str) -> Iterator[str]:
    """A URI naming a fresh database; dropped after the test."""
    database = f"kubedrift_test_{uuid.uuid4().hex[:12]}"
    yield f"{mongo_base_uri}/{database}"
    with pymongo.MongoClient(mongo_base_uri, serverSelectionTimeoutMS=2000) as client:
        client.drop_database(database)


@pytest.fixture()
def own_mongo(tmp_path: Path) -> Iterator[MongoServer]:
    """A private secantusd-py the test may kill and restart."""
    server = MongoServer(tmp_path / "mongo-data")
    server.start()
    try:
        yield server
    finally:
        server.stop()
