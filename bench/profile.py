"""Where a fresh token's time goes: a sampling profile of oauth_shield against the floor.

``./run bench profile`` validates fresh RS256, ES256 and EdDSA tokens (key set cached, the
verified-token cache cleared before each pass) under pyinstrument, a sampling profiler, so the
shares are not inflated by per-call tracing as cProfile's are. Time inside the signature
check (a Rust call from ``cryptography``) shows as the self time of the Python function that
calls it: ``_jose.verify``. Everything else is what oauth_shield adds over the floor.

It reports, per algorithm: the share of samples in the signature check, and the functions
with the most self time, grouped by module, so the gap to the floor is visible line by line.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path
from typing import Any

from pyinstrument import Profiler
from pyinstrument.frame import Frame

from oauth_shield import TokenValidator
from oauth_shield.testing import LocalIssuer

from .peers import SCOPE
from .tokens import ALGORITHMS

TOP = 12


def _self_times(frame: Frame, into: defaultdict[str, float]) -> None:
    """Self time per function (``name (file)``), summed over the whole call tree."""
    if not frame.is_synthetic:
        into[f"{frame.function} ({Path(frame.file_path_short or '?').name})"] += (
            frame.total_self_time
        )
    for child in frame.children:
        _self_times(child, into)


def _profile(validator: TokenValidator, tokens: list[str], passes: int) -> dict[str, float]:
    loop = asyncio.new_event_loop()

    async def one_pass() -> None:
        for token in tokens:
            await validator.validate(token, [SCOPE])

    loop.run_until_complete(one_pass())  # key set fetched, everything warm
    profiler = Profiler(interval=0.0001, async_mode="disabled")
    for _ in range(passes):
        validator._verified.clear()
        profiler.start()
        loop.run_until_complete(one_pass())
        profiler.stop()
    loop.run_until_complete(validator.aclose())
    loop.close()
    session = profiler.last_session
    times: defaultdict[str, float] = defaultdict(float)
    root = session.root_frame() if session is not None else None
    if root is not None:
        _self_times(root, times)
    return times


def suite(*, n: int = 400, rounds: int = 10) -> dict[str, Any]:
    """``rounds``: profiled passes over ``n`` fresh tokens per algorithm."""
    issuer = LocalIssuer(algorithms=ALGORITHMS)
    results: dict[str, Any] = {}
    with issuer.serve():
        for alg in ALGORITHMS:
            validator = TokenValidator(
                issuer=issuer.issuer, audience=issuer.audience, algorithms=ALGORITHMS
            )
            tokens = [issuer.token(alg=alg, scope="read write", sub=f"u{i}") for i in range(n)]
            times = _profile(validator, tokens, rounds)
            total = sum(times.values())
            signature = sum(t for name, t in times.items() if name.endswith(".verify (<built-in>)"))
            results[alg] = {
                "samples_s": round(total, 4),
                "signature_share": round(signature / total, 3),
                "top": {
                    name: round(t / total, 3)
                    for name, t in sorted(times.items(), key=lambda item: -item[1])[:TOP]
                },
            }
    return results
