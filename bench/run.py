"""Run the benchmarks: ``./run bench [suite ...]``; results go to bench/results/<suite>.json.

Suites: tokens (per-token cost against the floor and peers), introspection (cached and
uncached opaque tokens, single-flight, a peer), herd (cold start and 1,000 concurrent requests
on a cold cache: fetch counts), throughput (unprotected, protected and peer-protected requests
per second under wrk), redaction (the log filter's cost per record), resilience (two workers
sharing Redis under load while the provider and Redis fail: statuses and latencies by phase),
profile (where a fresh token's time goes, sampled by pyinstrument).
Each suite prints the tables ``python -m bench.report`` puts in docs/ (performance.md,
deployment.md).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import (
    dpop,
    herd,
    introspection,
    profile,
    redaction,
    report,
    resilience,
    throughput,
    tokens,
)

SUITES: dict[str, Callable[..., dict[str, Any]]] = {
    "tokens": tokens.suite,
    "dpop": dpop.suite,
    "introspection": introspection.suite,
    "herd": herd.suite,
    "throughput": throughput.suite,
    "redaction": redaction.suite,
    "resilience": resilience.suite,
    "profile": profile.suite,
}
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("suites", nargs="*", help=f"of {', '.join(SUITES)} (default: all)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per suite (its default)")
    args = parser.parse_args()
    unknown = set(args.suites) - set(SUITES)
    if unknown:
        parser.error(f"unknown suite(s): {', '.join(sorted(unknown))}")
    RESULTS.mkdir(exist_ok=True)
    for name in args.suites or SUITES:
        started = time.time()
        result = SUITES[name](**({} if args.rounds is None else {"rounds": args.rounds}))
        record = {
            "suite": name,
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "python": platform.python_version(),
            "machine": platform.machine(),
            "args": {} if args.rounds is None else {"rounds": args.rounds},
            "results": result,
        }
        path = RESULTS / f"{name}.json"
        path.write_text(json.dumps(record, indent=2) + "\n")
        print(f"\n## {name}\n\n{report.render(record) or json.dumps(record, indent=2)}")
        print(f"\n(written to {path.relative_to(ROOT)}; `python -m bench.report` updates the docs)")


if __name__ == "__main__":
    main()
