"""The parse floor: read a benchmark's inputs and do nothing else (run as its own process).

Usage: parse_floor.py MANIFEST_DIR LIVE_JSON. Prints the number of objects read.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml


def main(manifests: str, live: str) -> int:
    count = 0
    for path in sorted(Path(manifests).rglob("*.yaml")):
        with path.open() as stream:
            count += sum(1 for doc in yaml.load_all(stream, Loader=yaml.CSafeLoader) if doc)
    count += len(json.loads(Path(live).read_text())["items"])
    print(count)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
