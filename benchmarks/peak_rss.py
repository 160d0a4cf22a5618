"""Run a command; write its wall time, exit code and peak RSS to a JSON file.

Usage: peak_rss.py RESULT_JSON COMMAND [ARG ...]. A small, freshly started process forks the
command, so the child's ru_maxrss is its own and not inherited from a large parent (the benchmark
holds the whole data set in memory while it measures).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time


def main(result: str, argv: list[str]) -> int:
    start = time.perf_counter()
    code = subprocess.call(argv)
    wall = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    with open(result, "w") as out:
        json.dump({"wall": wall, "returncode": code, "peak_rss_kib": peak_kib}, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
