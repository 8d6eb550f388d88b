#!/usr/bin/env python3
"""Benchmark the provisioner on a simulated fleet: the real phases and executor, a simulated network.

For sizes the lab cannot hold (250, 1000, 5000 hosts: one server and N agents), runs `up` on a
fresh fleet, an unchanged rerun, and `plan`, over ``SimulatedK3sFleet`` (tests/unit/fakes.py):
every command and upload costs ``--latency`` seconds, every connect ``--handshake`` seconds.
Each size runs in its own process, so its peak RSS is its own. Records wall time, the
provisioner's CPU per host (process time: no SSH crypto here, see docs/benchmarks.md), peak RSS,
and the most threads alive; prints a table (Markdown with --markdown), checks the targets, and
draws wall time against hosts (with matplotlib, the optional `bench` extra; skipped without it).

    .venv/bin/python bench/bench_fleet.py [--sizes 250 1000 5000] [--markdown] [--plot docs/fleet.png]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = ("fresh", "rerun", "plan")


class ThreadPeak:
    """Samples the number of live threads every few milliseconds; ``peak`` is the most seen."""

    def __init__(self) -> None:
        self.peak = threading.active_count()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, threading.active_count() - 1)  # not counting the sampler

    def __enter__(self) -> ThreadPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def measure_one(agents: int, latency: float, handshake: float, concurrency: int, connect_concurrency: int) -> dict[str, object]:
    """Run the three scenarios on a fleet of 1 + ``agents`` in this process."""
    sys.path.insert(0, str(REPO))
    from provisioner import actions, kubeconfig
    from provisioner.phases import Options
    from provisioner.testing import Link
    from tests.unit.fakes import SimulatedK3sFleet, fleet_inventory

    kubeconfig.check = lambda config, timeout=10: kubeconfig.Check("ok", "simulated")  # no HTTPS API here
    os.chdir(tempfile.mkdtemp(prefix="bench-fleet-"))
    fleet = SimulatedK3sFleet(fleet_inventory(agents), link=Link(latency=latency, handshake=handshake))
    options = Options(concurrency=concurrency, connect_concurrency=connect_concurrency, timeout=60)
    hosts = agents + 1
    results: dict[str, object] = {"hosts": hosts}
    for scenario in SCENARIOS:
        run = actions.plan if scenario == "plan" else actions.up
        with ThreadPeak() as threads:
            wall, cpu = time.monotonic(), time.process_time()
            outcome = run(fleet.inventory, options, connector=fleet.connector)
            wall, cpu = time.monotonic() - wall, time.process_time() - cpu
        if not outcome.ok:
            raise SystemExit(f"{scenario} on 1+{agents} failed: {outcome.error}")
        changed = sum(1 for o in outcome.summary.outcomes.values() if o.result == "changed")
        commands = fleet.commands_per_host()
        results[scenario] = {
            "wall": wall,
            "cpu": cpu,
            "cpu_per_host_ms": 1000 * cpu / hosts,
            "threads": threads.peak,
            "changed": changed,
            "agent_commands": sorted({commands[h.name] for h in fleet.inventory.agents}),
            "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    return results


def floor(hosts: int, per_host_ops: int, latency: float, handshake: float, width: int) -> float:
    """The least wall time the simulated network allows: rounds of ``width`` hosts at once."""
    rounds = -(-hosts // width)
    return rounds * (handshake + per_host_ops * latency)


def plot(rows: list[dict], path: Path, latency: float, handshake: float) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no plot", file=sys.stderr)
        return False
    hosts = [r["hosts"] for r in rows]
    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=110)
    for scenario, marker in (("fresh", "o"), ("rerun", "s"), ("plan", "^")):
        axes.plot(hosts, [r[scenario]["wall"] for r in rows], marker=marker, label=f"{scenario} (wall)")
    axes.plot(hosts, [r["floor_connect"] for r in rows], linestyle="--", color="grey", label="network floor: connect + facts")
    axes.set_xscale("log")
    axes.set_yscale("log")
    for axis in (axes.xaxis, axes.yaxis):
        axis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes.set_xticks(hosts)
    walls = [r[s]["wall"] for r in rows for s in SCENARIOS] + [r["floor_connect"] for r in rows]
    axes.set_yticks([t for t in (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500) if min(walls) / 2 <= t <= max(walls) * 2])
    axes.set_xlabel("hosts (1 server + N agents)")
    axes.set_ylabel("wall time (s)")
    axes.set_title(f"Simulated fleet: {latency * 1000:.0f} ms per command, {handshake * 1000:.0f} ms handshake")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[250, 1000, 5000], help="hosts per fleet (1 server + N-1 agents)")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per command and upload")
    parser.add_argument("--handshake", type=float, default=0.15, help="seconds per connect")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--connect-concurrency", type=int, default=32)
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--plot", type=Path, default=None, help="write the plot here (PNG)")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure_one(args.one, args.latency, args.handshake, args.concurrency, args.connect_concurrency)))
        return 0

    rows = []
    for size in args.sizes:
        child = subprocess.run(
            [
                sys.executable,
                __file__,
                "--one",
                str(size - 1),
                "--latency",
                str(args.latency),
                "--handshake",
                str(args.handshake),
                "--concurrency",
                str(args.concurrency),
                "--connect-concurrency",
                str(args.connect_concurrency),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if child.returncode != 0:
            raise SystemExit(f"size {size} failed: {child.stderr[-2000:]}")
        row = json.loads(child.stdout)
        row["floor_connect"] = floor(row["hosts"], 1, args.latency, args.handshake, args.connect_concurrency)
        rows.append(row)
        print(f"measured {size} hosts", file=sys.stderr)

    header = (
        "hosts",
        "scenario",
        "wall (s)",
        "network floor (s)",
        "CPU (s)",
        "CPU per host (ms)",
        "peak RSS (MiB)",
        "threads",
        "commands per agent",
        "changed",
    )
    table = []
    for row in rows:
        for scenario in SCENARIOS:
            m = row[scenario]
            net = row["floor_connect"] + (floor(row["hosts"] - 1, 2, args.latency, 0, args.concurrency) if scenario == "fresh" else 0)
            table.append(
                (
                    str(row["hosts"]),
                    scenario,
                    f"{m['wall']:.2f}",
                    f"{net:.2f}",
                    f"{m['cpu']:.2f}",
                    f"{m['cpu_per_host_ms']:.2f}",
                    f"{m['rss_mib']:.0f}",
                    str(m["threads"]),
                    "/".join(map(str, m["agent_commands"])),
                    str(m["changed"]),
                )
            )

    checks: list[tuple[str, bool, str]] = []
    worst_rerun = max(r["rerun"]["cpu_per_host_ms"] for r in rows)
    checks.append(
        ("provisioner CPU per host on a rerun ≤ 30 ms (simulated: no SSH crypto)", worst_rerun <= 30, f"at most {worst_rerun:.2f} ms")
    )
    near = min(rows, key=lambda r: abs(r["hosts"] - 1000))
    checks.append(
        (
            f"peak RSS ≤ 200 MB at {near['hosts']} simulated hosts",
            near["plan"]["rss_mib"] * 1.048576 <= 200,
            f"{near['plan']['rss_mib'] * 1.048576:.0f} MB",
        )
    )
    checks.append(
        (
            f"`plan` of {near['hosts']} simulated hosts ({args.latency * 1000:.0f} ms per command) ≤ 5 s",
            near["plan"]["wall"] <= 5,
            f"{near['plan']['wall']:.2f} s, network floor {near['floor_connect']:.2f} s",
        )
    )
    first, last = rows[0], rows[-1]
    growth = last["rerun"]["cpu_per_host_ms"] / first["rerun"]["cpu_per_host_ms"]
    checks.append((f"(info) CPU per host on a rerun, {last['hosts']} vs {first['hosts']} hosts", growth <= 1.5, f"{growth:.2f}x"))

    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for line in table:
            print("| " + " | ".join(line) + " |")
        print()
        for name, ok, value in checks:
            print(f"- {'met' if ok else 'MISSED'}: {name} ({value})")
    else:
        widths = [max(len(r[i]) for r in [header, *table]) for i in range(len(header))]
        for line in [header, *table]:
            print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)))
        print()
        for name, ok, value in checks:
            print(f"{'met   ' if ok else 'MISSED'} {name}: {value}")
    if args.plot is not None and plot(rows, args.plot, args.latency, args.handshake):
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0 if all(ok for name, ok, _ in checks if not name.startswith("(info)")) else 1


if __name__ == "__main__":
    sys.exit(main())
