"""Render the docs' benchmark tables from bench/results/*.json, so every figure comes from a run.

``python -m bench.report`` replaces the text between ``<!-- bench:SUITE -->`` and
``<!-- /bench:SUITE -->`` in the docs with a table made from bench/results/SUITE.json, in every
docs/*.md file holding such a marker (or only in the files given). ``--check`` changes nothing
and exits 1 when a table is out of date. A suite without a renderer here, or without a
results file, keeps its block as it is (and is named on stderr).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOCS = ROOT / "docs"
BLOCK = re.compile(r"(<!-- bench:([\w-]+) -->\n)(.*?)(<!-- /bench:\2 -->)", re.DOTALL)
DASH = "\u2014"  # em dash: no value
TIMES = "\u00d7"  # multiplication sign, for ratios


def _num(value: Any, digits: int = 1) -> str:
    if value is None:
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def _x(value: Any) -> str:
    """A ratio, written as a multiplier."""
    return DASH if value is None else f"{value:.2f}{TIMES}"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _caption(record: dict[str, Any]) -> str:
    rounds = record.get("args", {}).get("rounds")
    note = f", `--rounds {rounds}`" if rounds is not None else ""
    return (
        f"*From `bench/results/{record['suite']}.json`: {record['when']}, Python "
        f"{record['python']}, {record['machine']}{note}.*"
    )


def tokens(results: dict[str, Any]) -> str:
    """Per algorithm: every row's µs/token and ratio to the floor; oauth_shield's lead per peer."""
    parts = []
    for alg, data in results.items():
        if alg == "summary":
            continue
        rows = []
        for name, row in data["rows"].items():
            peer, _, mode = name.rpartition(" ")
            speedup = data["speedup"].get(peer, {}).get(mode)
            rows.append((name, _num(row["us"]), _x(row["x_floor"]), _x(speedup)))
        header = ("Contender", "µs/token", f"{TIMES} floor", "peer time ÷ oauth_shield's")
        parts.append(f"**{alg}**\n\n" + _table(header, rows))
        best = data["best_peer"]
        overhead = data.get("settings_overhead", {})
        parts.append(
            f"Best peer: fresh {best['fresh']['peer']} ({_x(best['fresh']['speedup'])}), "
            f"repeated {best['repeated']['peer']} ({_x(best['repeated']['speedup'])}). "
            f"Ahead of every peer: {_num(data['ahead_of_every_peer'])}."
            + "".join(f" {peer}: skipped, {why}." for peer, why in data.get("skipped", {}).items())
            + "".join(
                f" {name.removeprefix('oauth_shield fresh, ')}: {_x(ratio)} the same tokens'"
                f" row with default settings, {_x(data['over_todays_fresh'][name])} the fresh row."
                for name, ratio in overhead.items()
            )
        )
    summary = results.get("summary")
    if summary:
        parts.append(
            f"All algorithms: ahead of every peer: {_num(summary['ahead_of_every_peer'])}; "
            f"smallest lead over the best peer {_x(summary['min_speedup'])}."
            + (
                f" Nested scope_claims and five issuers cost at most "
                f"{_x(summary['max_settings_overhead'])} the same tokens with default settings "
                f"(bound 1.05{TIMES}: {_num(summary['settings_within_bound'])}), at most "
                f"{_x(summary['max_over_todays_fresh'])} the fresh row; the RS256 repeated row is "
                f"{_x(summary['rs256_repeated_x_floor'])} the floor (bound 0.15{TIMES}: "
                f"{_num(summary['repeated_within_bound'])})."
                if "max_settings_overhead" in summary
                else ""
            )
        )
    return "\n\n".join(parts)


def dpop(results: dict[str, Any]) -> str:
    """DPoP requests: µs per request against the floor of their signature checks."""
    rows = [(name, _num(row["us"])) for name, row in results["rows"].items()]
    return (
        _table(("Row", "µs/request"), rows)
        + f"\n\nFresh DPoP request (new token, new proof): {_x(results['fresh_x_floor'])} the "
        "floor of its two signature checks. Steady state (known token, new proof): "
        f"{_x(results['steady_x_floor'])} the floor of one proof check."
    )


def introspection(results: dict[str, Any]) -> str:
    peers = list(results["peers"])
    header = ("Contender", "µs per validation", *(f"{p}: its time ÷ this" for p in peers))
    hit, miss = results["hit"], results["miss"]
    rows = [
        (
            "oauth_shield hit (cached)",
            f"{_num(hit['us'], 2)} (CPU {_num(hit['cpu_us'], 2)})",
            *(_x(hit["speedup"][p]) for p in peers),
        ),
        ("oauth_shield miss", _num(miss["us"]), *(_x(miss["speedup"][p]) for p in peers)),
        (
            "miss floor (bare httpx.AsyncClient POST)",
            _num(miss.get("floor_us")),
            *(DASH,) * len(peers),
        ),
        *((p, _num(results["peers"][p]["us"]), *(DASH,) * len(peers)) for p in peers),
    ]
    flight = results["single_flight"]
    return (
        _table(header, rows)
        + f"\n\nSingle-flight: {_num(flight['concurrent_validations'])} concurrent validations "
        f"of one new token made {_num(flight['introspection_calls'])} introspection call(s) in "
        f"{_num(flight['batch_ms'])} ms (as sequential misses: "
        f"{_num(flight['vs_sequential_misses_ms'])} ms)."
    )


def herd(results: dict[str, Any]) -> str:
    jwt_header = (
        "Contender",
        "first result (ms)",
        "all done (ms)",
        "discovery",
        "JWK set",
        "failed",
        "unfinished",
        "cold, 1 request (ms)",
    )
    jwt_rows = [
        (
            name,
            _num(r["herd"]["first_ms"]),
            _num(r["herd"]["all_ms"]),
            _num(r["herd"]["discovery"]),
            _num(r["herd"]["jwks"])
            + (
                f" ({_num(r['herd']['fetches_started'])} started)"
                if "fetches_started" in r["herd"]
                else ""
            ),
            _num(r["herd"]["failed"]),
            _num(r["herd"]["unfinished"]),
            _num(r["cold"]["first_ms"]),
        )
        for name, r in results["jwt"].items()
    ]
    opaque_header = (
        "Contender",
        "first result (ms)",
        "all done (ms)",
        "introspection calls",
        "failed",
        "cold, 1 request (ms)",
    )
    opaque_rows = [
        (
            name,
            _num(r["herd"]["first_ms"]),
            _num(r["herd"]["all_ms"]),
            _num(r["herd"]["introspection"]),
            _num(r["herd"]["failed"]),
            _num(r["cold"]["first_ms"]),
        )
        for name, r in results["opaque"].items()
    ]
    n = _num(results["herd"])
    return (
        f"**JWTs: {n} concurrent requests, distinct tokens, cold cache**\n\n"
        + _table(jwt_header, jwt_rows)
        + f"\n\n**Opaque: {n} concurrent requests, one new token, cold cache**\n\n"
        + _table(opaque_header, opaque_rows)
        + f"\n\nThreaded peers ran on the default executor ({results['executor_threads']} threads)."
    )


#: How the throughput tables name each server.
TITLES = {"quart-otel": "Quart with OpenTelemetry on (SDK, exporters that drop everything)"}


def throughput(results: dict[str, Any]) -> str:
    parts = []
    for framework, data in results.items():
        routes = [
            (route, values)
            for route, values in data.items()
            if route not in ("ratios", "otel_cost_us")
        ]
        rows = [
            (
                f"`/{route}`",
                _num(v["rps"], 0),
                _num(v["p50_ms"], 2),
                _num(v["p99_ms"], 2),
                _num(v["cpu_us_per_request"], 0),
            )
            for route, v in routes
        ]
        header = ("Route", "requests/s", "p50 (ms)", "p99 (ms)", "server CPU µs/request")
        ratios = [
            (pair, _x(r["rps_ratio"]), _x(r["cpu_ratio"]))
            for pair, r in data.get("ratios", {}).items()
        ]
        cost = data.get("otel_cost_us")
        parts.append(
            f"**{TITLES.get(framework, framework.capitalize())}**\n\n"
            + _table(header, rows)
            + "\n\n"
            + _table(("Capacity ratio", "by requests/s", "by server CPU"), ratios)
            + (
                ""
                if cost is None
                else f"\n\nOpenTelemetry's cost on `/protected`: {_num(cost, 1)} µs of server "
                "CPU per request (this app's figure minus plain Quart's)."
            )
        )
    return "\n\n".join(parts)


def redaction(results: dict[str, Any]) -> str:
    rows = [
        (name, _num(r["plain_us"], 2), _num(r["redacted_us"], 2), _num(r["filter_cost_us"], 2))
        for name, r in results.items()
    ]
    return _table(("Record", "plain µs", "redacted µs", "filter cost µs"), rows)


def resilience(results: dict[str, Any]) -> str:
    """Per phase: statuses by class, p50/p99 as the client saw them and inside the app."""
    classes = ("jwt", "rotated", "opaque_cached", "opaque_new", "bad", "bad_opaque", "control")
    rows = []
    for name, phase in results["phases"].items():
        for kind in classes:
            c = phase["classes"].get(kind)
            if c is None:
                continue
            statuses = ", ".join(f"{status}: {n:,}" for status, n in c["statuses"].items())
            rows.append(
                (
                    f"`{name}`" if kind == "jwt" else "",
                    kind,
                    statuses,
                    f"{_num(c['p50_ms'], 2)} / {_num(c['p99_ms'], 2)}",
                    f"{_num(c['in_app_p50_ms'], 2)} / {_num(c['in_app_p99_ms'], 2)}",
                    " ".join(f"{k} {v}" for k, v in phase["fetches"].items())
                    if kind == "jwt"
                    else "",
                )
            )
    header = (
        "Phase",
        "Class",
        "Statuses",
        "client p50 / p99 (ms)",
        "in app p50 / p99 (ms)",
        "Provider calls",
    )
    summary = results["summary"]
    p99 = summary["jwt_p99_ms_by_phase"].values()
    unexpected = sum(n for phase in summary["unexpected_statuses"].values() for n in phase.values())
    worst = {k: _num(max(v[k] for v in p99), 2) for k in ("in_app", "client", "control_client")}
    return (
        f"{summary['requests']:,} requests at {_num(results['rate_per_second'], 0)}/s, "
        f"{_num(results['seconds_per_phase'], 0)} s per phase, {results['workers']} workers. "
        f"Statuses outside what a class allows: {unexpected:,}. Bad tokens accepted: "
        f"{summary['bad_tokens_accepted']:,}. JWT p99 in the worst phase: {worst['in_app']} ms "
        f"inside the app, {worst['client']} ms as the client saw it (the unprotected control: "
        f"{worst['control_client']} ms).\n\n" + _table(header, rows)
    )


def profile(results: dict[str, Any]) -> str:
    """Per algorithm: the signature check's share of a fresh token, and the top self times."""
    parts = []
    for alg, data in results.items():
        rows = [(f"`{name}`", f"{share * 100:.1f} %") for name, share in data["top"].items()]
        parts.append(
            f"**{alg}**: the signature check is {data['signature_share'] * 100:.1f} % of the "
            f"samples ({_num(data['samples_s'], 2)} s sampled).\n\n"
            + _table(("Function (module)", "self time"), rows)
        )
    return "\n\n".join(parts)


RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "tokens": tokens,
    "dpop": dpop,
    "introspection": introspection,
    "herd": herd,
    "throughput": throughput,
    "redaction": redaction,
    "resilience": resilience,
    "profile": profile,
}


def render(record: dict[str, Any]) -> str | None:
    """A results record as markdown (caption and tables), or None without a renderer."""
    renderer = RENDERERS.get(record["suite"])
    return None if renderer is None else _caption(record) + "\n\n" + renderer(record["results"])


def update(text: str, results: Path = RESULTS) -> tuple[str, list[str]]:
    """The text with every known block re-rendered, and the suites left as they were."""
    skipped: list[str] = []

    def replace(match: re.Match[str]) -> str:
        suite = match.group(2)
        path = results / f"{suite}.json"
        rendered = render(json.loads(path.read_text())) if path.exists() else None
        if rendered is None:
            skipped.append(suite)
            return match.group(0)
        return f"{match.group(1)}{rendered}\n{match.group(4)}"

    return BLOCK.sub(replace, text), skipped


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("files", nargs="*", type=Path, help="docs to update (default: docs/*.md)")
    parser.add_argument("--check", action="store_true", help="exit 1 if a table is out of date")
    args = parser.parse_args(argv)
    files = args.files or sorted(p for p in DOCS.glob("*.md") if "<!-- bench:" in p.read_text())
    stale = []
    for path in files:
        text = path.read_text()
        new, skipped = update(text)
        for suite in skipped:
            print(
                f"{path}: bench:{suite} left as it was (no results or no renderer)", file=sys.stderr
            )
        if new != text:
            stale.append(path)
            if not args.check:
                path.write_text(new)
                print(f"updated {path}")
    if args.check and stale:
        print("out of date: " + ", ".join(map(str, stale)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
