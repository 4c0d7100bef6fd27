"""Run a command, print its wall time (s) and peak resident memory (MiB) as JSON on the last line.

    python benchmarks/measure.py -- CMD ARGS…
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time


def main() -> int:
    cmd = sys.argv[sys.argv.index("--") + 1:]
    t0 = time.perf_counter()
    rc = subprocess.call(cmd)
    wall = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # max over this wrapper's children
    print(json.dumps({"rc": rc, "wall_s": round(wall, 2), "peak_rss_mib": round(peak_kib / 1024, 1)}))
    return rc


if __name__ == "__main__":
    sys.exit(main())
