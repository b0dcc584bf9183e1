"""Run the benchmarks: ``./run bench [suite ...]``; results go to bench/results/<suite>.json.

Suites: tokens (per-token cost against the floor and peers), introspection (cached and
uncached opaque tokens, single-flight), throughput (protected/unprotected requests per second
under wrk), redaction (the log filter's cost per record). See docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import introspection, redaction, throughput, tokens

SUITES = {
    "tokens": tokens.suite,
    "introspection": introspection.suite,
    "throughput": throughput.suite,
    "redaction": redaction.suite,
}
RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("suites", nargs="*", default=list(SUITES), choices=list(SUITES))
    parser.add_argument("--rounds", type=int, default=None, help="rounds per suite (its default)")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    for name in args.suites:
        started = time.time()
        result = SUITES[name](**({} if args.rounds is None else {"rounds": args.rounds}))
        record = {
            "suite": name,
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "python": platform.python_version(),
            "machine": platform.machine(),
            "results": result,
        }
        (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
        print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
