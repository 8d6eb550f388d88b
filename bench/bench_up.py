#!/usr/bin/env python3
"""Benchmark `provisioner up` on the on-machine lab (root; the k3s here is the stand-in).

Measures, on fresh labs of 1 server + N agents: the wall time of `up` for N = 2, 8, 16; of an
unchanged rerun on 1 + 8; of adding one agent to 1 + 16; the SSH commands per host; and the CPU
spent by the provisioner and by the lab hosts (from their cgroups). The lab hosts share this
machine's cores, so their CPU divided by the cores is a floor under the wall time. Prints a table (Markdown with --markdown) and checks the targets:
1+16 within 1.5x of 1+2, unchanged rerun on 1+8 under 2 s, adding an agent touches only it.

    sudo .venv/bin/python bench/bench_up.py [--sizes 2 8 16] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from provisioner_lab import Lab

CORES = os.cpu_count() or 1


class Measured:
    """One provisioner run: wall time, its own CPU, and the CPU the lab hosts spent meanwhile."""

    def __init__(self, lab: Lab, workdir: Path, inventory: Path, *args: str) -> None:
        env = dict(os.environ, XDG_STATE_HOME=str(workdir / "state"))
        hosts_before = lab.cpu_seconds()
        own_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "provisioner", *args, "-i", str(inventory), "-o", "json"],
            cwd=workdir,
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
        )
        self.wall = time.monotonic() - started
        own_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        hosts_after = lab.cpu_seconds()
        if result.returncode != 0:
            raise SystemExit(f"provisioner {' '.join(args)} failed ({result.returncode}): {result.stderr[-2000:]}")
        self.data = json.loads(result.stdout)
        self.own_cpu = (own_after.ru_utime - own_before.ru_utime) + (own_after.ru_stime - own_before.ru_stime)
        self.hosts_cpu = sum(hosts_after.get(h, 0.0) - hosts_before.get(h, 0.0) for h in hosts_after)

    @property
    def floor(self) -> float:
        """The least wall time the hosts' own work allows when they share this machine's cores."""
        return self.hosts_cpu / CORES


def commands(data: dict, role: str | None = None) -> str:
    counts = [h["commands"] for h in data["hosts"] if role is None or h["role"] == role]
    return f"{min(counts)}–{max(counts)}" if counts and min(counts) != max(counts) else str(counts[0] if counts else 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 8, 16])
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root: the lab boots systemd-nspawn hosts", file=sys.stderr)
        return 2

    rows: list[tuple[str, ...]] = []
    fresh: dict[int, Measured] = {}

    def row(scenario: str, m: Measured, server_ops: str, agent_ops: str, note: str = "") -> None:
        rows.append((scenario, f"{m.wall:.2f}", f"{m.own_cpu:.2f}", f"{m.hosts_cpu:.1f}", f"{m.floor:.1f}", server_ops, agent_ops, note))

    checks: list[tuple[str, bool, str]] = []
    for n in args.sizes:
        lab = Lab(f"bench{n}")
        lab.down()
        with tempfile.TemporaryDirectory(prefix="bench-") as folder:
            workdir = Path(folder)
            try:
                lab.up(servers=1, agents=n, inventory=workdir / "bench.yaml")
                inventory = workdir / "bench.yaml"
                m = Measured(lab, workdir, inventory, "up", "--concurrency", "16")
                fresh[n] = m
                row(f"fresh up, 1+{n}", m, commands(m.data, "server"), commands(m.data, "agent"))
                if n == 8:
                    m = Measured(lab, workdir, inventory, "up")
                    changed = [h["name"] for h in m.data["hosts"] if h["result"] != "unchanged"]
                    row(
                        f"unchanged rerun, 1+{n}", m, commands(m.data, "server"), commands(m.data, "agent"), f"changed: {changed or 'none'}"
                    )
                    checks.append((f"unchanged rerun on 1+{n} under 2 s", m.wall < 2.0, f"{m.wall:.2f} s"))
                if n == max(args.sizes):
                    lab.up(servers=1, agents=n + 1, inventory=inventory)
                    m = Measured(lab, workdir, inventory, "up")
                    changed = [h["name"] for h in m.data["hosts"] if h["result"] != "unchanged"]
                    new = m.data["hosts"][-1]
                    row(f"add one agent to 1+{n}", m, commands(m.data, "server"), f"{new['commands']} (new host)", f"changed: {changed}")
                    checks.append(("adding one agent touches only that host", changed == [new["name"]], str(changed)))
            finally:
                lab.down()
    if len(fresh) >= 2:
        small, large = fresh[min(fresh)], fresh[max(fresh)]
        checks.append((f"1+{max(fresh)} within 1.5x of 1+{min(fresh)}", large.wall <= 1.5 * small.wall, f"{large.wall / small.wall:.2f}x"))
        above_small, above_large = small.wall - small.floor, large.wall - large.floor
        checks.append(
            (
                f"(info) wall time above the hosts' CPU floor, 1+{max(fresh)} vs 1+{min(fresh)}",
                above_large <= 1.5 * above_small,
                f"{above_large:.1f} s vs {above_small:.1f} s",
            )
        )

    header = (
        "scenario",
        "wall (s)",
        "provisioner CPU (s)",
        "lab hosts' CPU (s)",
        f"hosts' CPU / {CORES} cores (s)",
        "commands on server",
        "commands per agent",
        "note",
    )
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(row) + " |")
        print()
        for name, ok, value in checks:
            print(f"- {'met' if ok else 'MISSED'}: {name} ({value})")
    else:
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)))
        print()
        for name, ok, value in checks:
            print(f"{'met   ' if ok else 'MISSED'} {name}: {value}")
    return 0 if all(ok for name, ok, _ in checks if not name.startswith("(info)")) else 1


if __name__ == "__main__":
    sys.exit(main())
