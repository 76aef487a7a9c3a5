#!/usr/bin/env python3
"""Turns compare.sh's loadgen JSON lines into the BENCHMARKS.md tables.

Usage: report.py RESULTS.jsonl COMMANDS.txt "header line"

Each cell is the median over the runs of that scenario and server. The second
table checks issue 4's targets: Switchboard against the best peer.
"""

import json
import statistics
import sys

SCENARIOS = ["idle", "connect-rate", "fanout-1k", "fanout-5k", "channels", "plugins"]
SERVERS = ["switchboard", "nchan", "nats"]


def load(path):
    cells = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            cells.setdefault((r.get("scenario"), r.get("target")), []).append(r)
    return cells


def get(r, dotted):
    for part in dotted.split("."):
        if not isinstance(r, dict):
            return None
        r = r.get(part)
    return r


def med(runs, key):
    values = [get(r, key) for r in runs if not r.get("failed")]
    values = [v for v in values if isinstance(v, (int, float))]
    return statistics.median(values) if values else None


def per_cpu(runs):
    """Median deliveries per second of server CPU: robust to a machine shared
    with other work, where the wall-clock rate depends on the CPU share."""
    values = [
        r["delivered"] / r["server_cpu_secs"]
        for r in runs
        if not r.get("failed") and r.get("server_cpu_secs") and r.get("delivered")
    ]
    return statistics.median(values) if values else None


def first_run(runs, key):
    """Memory per connection from the first run only: a server process keeps
    the memory it grew for the first 10k connections, so later runs against
    the same process measure reuse, not cost."""
    first = [r for r in runs if not r.get("failed") and r.get("run", 1) == 1]
    return med(first, key) if first else None


def fmt(v, digits=1, pct=False):
    if v is None:
        return "–"
    if pct:
        return f"{v * 100:.2f}%"
    if isinstance(v, float) and digits == 0:
        return f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:,.{digits}f}"


def main():
    results, commands, header = sys.argv[1], sys.argv[2], sys.argv[3]
    cells = load(results)
    out = [header, ""]
    out.append(
        "| scenario | server | conns ok / failed | connect/s | RSS KiB/conn (idle, run 1) | RssAnon KiB/conn (idle, run 1) "
        "| publish msg/s | completeness | deliveries/s | deliveries per server CPU-s | p50 ms | p99 ms | p99.9 ms | max ms "
        "| server CPU s | load (1 min) |"
    )
    out.append("|" + "---|" * 16)
    for scenario in SCENARIOS:
        for server in SERVERS:
            runs = cells.get((scenario, server))
            if not runs:
                continue
            if all(r.get("failed") for r in runs):
                out.append(f"| {scenario} | {server} | failed | | | | | | | | | | | | | |")
                continue
            publishes = (med(runs, "rate_target") or 0) > 0
            row = [
                scenario,
                server,
                f"{fmt(med(runs, 'connected'), 0)} / {fmt(med(runs, 'failed_connections'), 0)}",
                fmt(med(runs, "connections_per_sec"), 0),
                fmt(first_run(runs, "rss_per_conn_kib"), 2) if scenario == "idle" else "–",
                fmt(first_run(runs, "rss_anon_per_conn_kib"), 2) if scenario == "idle" else "–",
                fmt(med(runs, "publish_rate"), 0) if publishes else "–",
                fmt(med(runs, "completeness"), pct=True) if publishes else "–",
                fmt(med(runs, "deliveries_per_sec"), 0) if publishes else "–",
                fmt(per_cpu(runs), 0) if publishes else "–",
                fmt(med(runs, "latency.p50_ms"), 2) if publishes else "–",
                fmt(med(runs, "latency.p99_ms"), 2) if publishes else "–",
                fmt(med(runs, "latency.p999_ms"), 2) if publishes else "–",
                fmt(med(runs, "latency.max_ms"), 2) if publishes else "–",
                fmt(med(runs, "server_cpu_secs"), 2),
                ", ".join(f"{r.get('load1', 0):.2f}" for r in runs),
            ]
            out.append("| " + " | ".join(row) + " |")

    if ("plugins", "switchboard") in cells:
        out += [
            "",
            "`plugins` has a Switchboard row only: nchan and NATS have no plugin pipeline, so its target "
            "compares it with Switchboard's own `fanout-1k` of the same run.",
        ]
    out += ["", "Targets (issue 4), Switchboard against the best peer in this run:", ""]
    out.append("| scenario | target | Switchboard | best peer | ratio | met |")
    out.append("|---|---|---|---|---|---|")

    def peers(scenario, key, best):
        values = []
        for server in SERVERS[1:]:
            v = med(cells.get((scenario, server), []), key)
            if v is not None:
                values.append((v, server))
        return best(values) if values else (None, None)

    def row(scenario, target, ours, peer, ratio, met):
        peer_text = f"{fmt(peer[0], 2)} ({peer[1]})" if peer[0] is not None else "–"
        ratio_text = f"{ratio:.2f}×" if ratio is not None else "–"
        met_text = "–" if met is None else ("yes" if met else "**no**")
        out.append(f"| {scenario} | {target} | {fmt(ours, 2)} | {peer_text} | {ratio_text} | {met_text} |")

    sb = lambda scenario, key: med(cells.get((scenario, "switchboard"), []), key)  # noqa: E731
    div = lambda a, b: a / b if a is not None and b else None  # noqa: E731

    ours = first_run(cells.get(("idle", "switchboard"), []), "rss_per_conn_kib")
    if ours is not None:
        values = [(first_run(cells.get(("idle", s), []), "rss_per_conn_kib"), s) for s in SERVERS[1:]]
        values = [v for v in values if v[0] is not None]
        peer = min(values) if values else (None, None)
        row("idle", "RSS/conn ≤ 6 KB (KiB shown)", ours, peer, div(ours, peer[0]), ours <= 6.0)
    ours = sb("connect-rate", "connections_per_sec")
    if ours is not None:
        peer = peers("connect-rate", "connections_per_sec", max)
        row("connect-rate", "≥ 10,000 conn/s with JWT", ours, peer, div(ours, peer[0]), ours >= 10_000)
    for scenario, factor in (("fanout-1k", 1.0), ("fanout-5k", 1.2)):
        comp = sb(scenario, "completeness")
        if comp is None:
            continue
        row(scenario, "100% completeness", comp, (None, None), None, comp >= 1.0)
        ours = sb(scenario, "deliveries_per_sec")
        peer = peers(scenario, "deliveries_per_sec", max)
        ratio = div(ours, peer[0])
        row(scenario, f"deliveries/s ≥ {factor}× best peer", ours, peer, ratio, None if ratio is None else ratio >= factor)
        if scenario == "fanout-1k":
            ours = sb(scenario, "latency.p99_ms")
            peer = peers(scenario, "latency.p99_ms", min)
            ratio = div(ours, peer[0])
            row(scenario, "p99 ≤ 0.5× best peer", ours, peer, ratio, None if ratio is None else ratio <= 0.5)
    ours = sb("channels", "latency.p99_ms")
    if ours is not None:
        peer = peers("channels", "latency.p99_ms", min)
        ratio = div(ours, peer[0])
        row("channels", "p99 ≤ best peer", ours, peer, ratio, None if ratio is None else ratio <= 1.0)
    # nchan and NATS have no plugins: the pipeline is measured against
    # Switchboard's own plugin-free fanout-1k of the same run.
    ours = sb("plugins", "deliveries_per_sec")
    if ours is not None:
        base = sb("fanout-1k", "deliveries_per_sec")
        ratio = div(ours, base)
        row(
            "plugins",
            "deliveries/s ≥ 0.7× Switchboard's fanout-1k",
            ours,
            (base, "switchboard fanout-1k"),
            ratio,
            None if ratio is None else ratio >= 0.7,
        )
        comp = sb("plugins", "completeness")
        row("plugins", "100% completeness", comp, (None, None), None, None if comp is None else comp >= 1.0)

    out += ["", "Commands (loadgen from `target/release`; ports, secret and pids are the run's own):", "", "```"]
    seen = []
    with open(commands) as f:
        for line in f:
            if line not in seen:
                seen.append(line)
    out += [line.rstrip("\n") for line in seen]
    out.append("```")
    print("\n".join(out))


if __name__ == "__main__":
    main()
