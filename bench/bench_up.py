#!/usr/bin/env python3
"""Benchmark `provisioner up` on the on-machine lab (root; the k3s here is the stand-in).

For each size 1 server + N agents (default N = 2, 16, 32, 64), on a fresh lab: a fresh `up`, an
unchanged rerun, then `up` after adding one agent. For each run: the wall time; the CPU the lab
hosts spent meanwhile (from their cgroups) and the floor it puts under the wall time on this
machine's cores (the hosts share them); the provisioner's CPU and peak RSS (its own rusage);
SSH round trips per host (commands + uploads, from `--output json`); and the most threads and
open TCP connections the provisioner had at once (sampled from /proc every 20 ms).

With `--bastion` the same runs go through a jump host: the lab gets one more host, and every
other host is reached through it (`ssh.proxy_jump`; see `Lab.bastion_inventory`). Results are
merged into `--results` (JSON, default bench/results-up.json) so sizes can be measured one at a
time (`--lock` takes a lock file around each lab, for a machine shared with lab tests) and
rendered together: a table (Markdown with `--markdown`), the targets met or missed, and with
`--plot FILE` (matplotlib: `pip install -e '.[bench]'`) wall time against hosts beside the floor.

    sudo .venv/bin/python bench/bench_up.py --sizes 2 16 32 64 [--bastion] [--markdown] [--plot docs/bench-up.png]
    .venv/bin/python bench/bench_up.py --render-only --markdown --plot docs/bench-up.png
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

CORES = os.cpu_count() or 1
HERE = Path(__file__).resolve().parent
SCENARIOS = ("fresh", "rerun", "add one")

#: Targets of issue #16 (this machine: the lab hosts share its cores).
RERUN_WALL_LIMIT = 3.0
FRESH_FLOOR_FACTOR, FRESH_FLOOR_SLACK = 1.2, 2.0
RERUN_CPU_PER_HOST_LIMIT = 0.030
BASTION_FACTOR = 1.5


@dataclass
class Run:
    """One measured `provisioner up`."""

    mode: str  # "direct" or "bastion"
    agents: int
    scenario: str
    hosts: int  # hosts in the inventory
    wall: float
    own_cpu: float
    peak_rss_mib: float
    hosts_cpu: float
    server_round_trips: int
    agent_round_trips: str  # "min–max" over agents (the new one for "add one")
    round_trips_per_host: float
    threads: int
    connections: int
    changed: list[str]
    load: str
    phases: dict[str, float] = field(default_factory=dict)  # phase title -> seconds, from the run's log

    @property
    def floor(self) -> float:
        """The least wall time the hosts' own work allows when they share this machine's cores."""
        return self.hosts_cpu / CORES


class Sampler:
    """Most threads and open TCP connections of process ``pid`` (and its children) over its life."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.threads = 0
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            try:
                status = Path(f"/proc/{self.pid}/status").read_text()
                threads = int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))
                inodes = {os.readlink(fd)[8:-1] for fd in Path(f"/proc/{self.pid}/fd").iterdir() if _is_socket(fd)}
                tcp = _tcp_inodes(self.pid)
            except (OSError, StopIteration, ValueError):
                continue
            self.threads = max(self.threads, threads)
            self.connections = max(self.connections, len(inodes & tcp))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _is_socket(fd: Path) -> bool:
    try:
        return os.readlink(fd).startswith("socket:[")
    except OSError:
        return False


def _tcp_inodes(pid: int) -> set[str]:
    """Inodes of established TCP sockets in ``pid``'s network namespace."""
    out = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) > 9 and fields[3] == "01":  # ESTABLISHED
                    out.add(fields[9])
    return out


def measure(lab: object, workdir: Path, inventory: Path, mode: str, agents: int, scenario: str, concurrency: int) -> Run:
    """Run `provisioner up` as a user does (a new process, `--output json`) and measure it."""
    env = dict(os.environ, XDG_STATE_HOME=str(workdir / "state"))
    hosts_before = lab.cpu_seconds()  # type: ignore[attr-defined]
    out = workdir / "up.json"
    err = workdir / "up.err"
    argv = [sys.executable, "-m", "provisioner", "up", "-i", str(inventory), "-o", "json", "--concurrency", str(concurrency)]
    started = time.monotonic()
    with open(out, "w") as stdout, open(err, "w") as stderr:
        proc = subprocess.Popen(argv, cwd=workdir, stdout=stdout, stderr=stderr, env=env)
        sampler = Sampler(proc.pid)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    sampler.stop()
    hosts_after = lab.cpu_seconds()  # type: ignore[attr-defined]
    if proc.returncode != 0:
        raise SystemExit(f"provisioner up ({mode}, 1+{agents}, {scenario}) failed ({proc.returncode}): {err.read_text()[-2000:]}")
    data = json.loads(out.read_text())
    hosts = data["hosts"]
    server = next(h for h in hosts if h["role"] == "server")
    agent_hosts = [h for h in hosts if h["role"] == "agent"]
    if scenario == "add one":
        agent_hosts = agent_hosts[-1:]
    trips = [h["commands"] + h["uploads"] for h in agent_hosts]
    return Run(
        mode=mode,
        agents=agents,
        scenario=scenario,
        hosts=len(hosts),
        wall=round(wall, 3),
        own_cpu=round(usage.ru_utime + usage.ru_stime, 3),
        peak_rss_mib=round(usage.ru_maxrss / 1024, 1),
        hosts_cpu=round(sum(hosts_after.get(h, 0.0) - hosts_before.get(h, 0.0) for h in hosts_after), 3),
        server_round_trips=server["commands"] + server["uploads"],
        agent_round_trips=f"{min(trips)}–{max(trips)}" if min(trips) != max(trips) else str(trips[0]),
        round_trips_per_host=round(sum(h["commands"] + h["uploads"] for h in hosts) / len(hosts), 2),
        threads=sampler.threads,
        connections=sampler.connections,
        changed=[h["name"] for h in hosts if h["result"] != "unchanged"],
        load=Path("/proc/loadavg").read_text().split(" ")[0],
        phases=phase_seconds(Path(data["log"])) if data.get("log") else {},
    )


def phase_seconds(log: Path) -> dict[str, float]:
    """Seconds per phase from a run's log ("phase done: <title> (<n>s)"), and "start-up": from
    the process start to its first log line is not in the log; the caller has the wall time."""
    out: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for line in log.read_text().splitlines():
            _, found, rest = line.partition("phase done: ")
            if found and rest.endswith("s)") and " (" in rest:
                title, _, seconds = rest.rpartition(" (")
                out[title] = float(seconds[:-2])
    return out


@contextlib.contextmanager
def held(lock: Path | None) -> Iterator[None]:
    """Hold ``lock`` (flock) for the block; nothing when None."""
    if lock is None:
        yield
        return
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def bench_size(agents: int, mode: str, concurrency: int, lock: Path | None) -> list[Run]:
    """Fresh lab of 1 + ``agents`` (one more host as the jump host with ``mode="bastion"``):
    fresh up, unchanged rerun, add one agent. The lab is removed afterwards."""
    from provisioner_lab import Lab

    name = f"bench{agents}{'j' if mode == 'bastion' else ''}"
    lab = Lab(name)
    extra = 1 if mode == "bastion" else 0
    runs = []
    with held(lock), tempfile.TemporaryDirectory(prefix="bench-") as folder:
        workdir = Path(folder)
        lab_inventory = workdir / "lab.yaml"
        lab.down()
        try:

            def inventory() -> Path:
                if mode == "direct":
                    return lab_inventory
                return lab.bastion_inventory(f"{name}-agent{agents + 1}", workdir / "bastion.yaml")

            def without_bastion(n: int) -> None:
                """Grow the lab to 1 + n agents (+ the jump host, kept at agent number agents+1)."""
                lab.up(servers=1, agents=n + extra, inventory=lab_inventory)

            without_bastion(agents)
            runs.append(measure(lab, workdir, inventory(), mode, agents, "fresh", concurrency))
            runs.append(measure(lab, workdir, inventory(), mode, agents, "rerun", concurrency))
            without_bastion(agents + 1)
            runs.append(measure(lab, workdir, inventory(), mode, agents, "add one", concurrency))
        finally:
            lab.down()
    for run in runs:
        print(f"  {mode} 1+{agents} {run.scenario}: {run.wall:.2f} s (hosts' floor {run.floor:.2f} s)", file=sys.stderr)
    return runs


def load_results(path: Path) -> dict[str, Run]:
    try:
        return {key: Run(**value) for key, value in json.loads(path.read_text()).items()}
    except FileNotFoundError:
        return {}


def key_of(run: Run) -> str:
    return f"{run.mode}/{run.agents}/{run.scenario}"


def checks(results: dict[str, Run]) -> list[tuple[str, bool, str]]:
    """The targets of issue #16 that these results decide: (name, met, measured)."""
    out: list[tuple[str, bool, str]] = []
    direct = {(r.agents, r.scenario): r for r in results.values() if r.mode == "direct"}
    bastion = {(r.agents, r.scenario): r for r in results.values() if r.mode == "bastion"}
    if not direct:
        return out
    top = max(n for n, _ in direct)
    rerun, fresh = direct.get((top, "rerun")), direct.get((top, "fresh"))
    if rerun:
        out.append((f"unchanged rerun of 1+{top} ≤ {RERUN_WALL_LIMIT:.0f} s", rerun.wall <= RERUN_WALL_LIMIT, f"{rerun.wall:.2f} s"))
        per_host = rerun.own_cpu / rerun.hosts
        out.append(
            (
                f"provisioner CPU on a rerun ≤ {RERUN_CPU_PER_HOST_LIMIT * 1000:.0f} ms per host (1+{top})",
                per_host <= RERUN_CPU_PER_HOST_LIMIT,
                f"{per_host * 1000:.1f} ms",
            )
        )
    if fresh:
        bound = FRESH_FLOOR_FACTOR * fresh.floor + FRESH_FLOOR_SLACK
        out.append(
            (
                f"fresh up of 1+{top} ≤ {FRESH_FLOOR_FACTOR}× hosts' CPU floor + {FRESH_FLOOR_SLACK:.0f} s",
                fresh.wall <= bound,
                f"{fresh.wall:.2f} s against {bound:.2f} s (floor {fresh.floor:.2f} s)",
            )
        )
    for (n, scenario), run in sorted(direct.items()):
        if scenario == "add one":
            new = f"{n + 1}"
            only_new = len(run.changed) == 1 and run.changed[0].endswith(f"agent{new}")
            out.append((f"adding one agent to 1+{n} touches only it", only_new, str(run.changed)))
    low = min(n for n, _ in direct)
    for scenario in ("fresh", "rerun"):
        pairs = [(direct.get((n, scenario)), bastion.get((n, scenario))) for n in (low, top)]
        if top == low or not all(d and b for d, b in pairs):
            continue
        (d_low, b_low), (d_top, b_top) = pairs
        assert d_low and b_low and d_top and b_top
        d_slope = (d_top.wall - d_low.wall) / (top - low)
        b_slope = (b_top.wall - b_low.wall) / (top - low)
        out.append(
            (
                f"{scenario}: per-host wall time through the bastion within {BASTION_FACTOR}× of direct (1+{low} → 1+{top})",
                b_slope <= BASTION_FACTOR * max(d_slope, 1e-3),
                f"{b_slope * 1000:.0f} ms/host against {d_slope * 1000:.0f} ms/host ({b_slope / max(d_slope, 1e-3):.2f}×)",
            )
        )
        cpu_d, cpu_b = d_top.own_cpu / d_top.hosts, b_top.own_cpu / b_top.hosts
        out.append(
            (
                f"(info) {scenario}: provisioner CPU per host through the bastion vs direct (1+{top})",
                cpu_b <= BASTION_FACTOR * cpu_d,
                f"{cpu_b * 1000:.1f} ms against {cpu_d * 1000:.1f} ms ({cpu_b / cpu_d:.2f}×)",
            )
        )
    return out


HEADER = (
    "mode",
    "hosts",
    "scenario",
    "wall (s)",
    "lab hosts' CPU (s)",
    f"hosts' CPU / {CORES} cores (s)",
    "provisioner CPU (s)",
    "CPU per host (ms)",
    "peak RSS (MiB)",
    "round trips: server",
    "round trips: agent",
    "round trips per host",
    "threads",
    "TCP connections",
    "changed",
    "load",
)


def rows(results: dict[str, Run]) -> list[tuple[str, ...]]:
    order = {s: i for i, s in enumerate(SCENARIOS)}
    out = []
    for run in sorted(results.values(), key=lambda r: (r.mode != "direct", r.agents, order[r.scenario])):
        changed = "none" if not run.changed else (run.changed[0] if len(run.changed) == 1 else f"{len(run.changed)} hosts")
        out.append(
            (
                run.mode,
                f"1+{run.agents}",
                run.scenario,
                f"{run.wall:.2f}",
                f"{run.hosts_cpu:.1f}",
                f"{run.floor:.2f}",
                f"{run.own_cpu:.2f}",
                f"{run.own_cpu / run.hosts * 1000:.0f}",
                f"{run.peak_rss_mib:.0f}",
                str(run.server_round_trips),
                run.agent_round_trips + (" (new)" if run.scenario == "add one" else ""),
                f"{run.round_trips_per_host:.2f}",
                str(run.threads),
                str(run.connections),
                changed,
                run.load,
            )
        )
    return out


def plot(results: dict[str, Run], path: Path) -> None:
    """Wall time against hosts (fresh and rerun, direct and through the bastion) beside the
    hosts' CPU floor of the direct runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    styles = {"fresh": "tab:blue", "rerun": "tab:green"}
    for scenario, colour in styles.items():
        for mode, line in (("direct", "-"), ("bastion", "--")):
            runs = sorted((r for r in results.values() if r.mode == mode and r.scenario == scenario), key=lambda r: r.hosts)
            if runs:
                ax.plot([r.hosts for r in runs], [r.wall for r in runs], line, marker="o", color=colour, label=f"{scenario} up ({mode})")
        runs = sorted((r for r in results.values() if r.mode == "direct" and r.scenario == scenario), key=lambda r: r.hosts)
        if runs:
            ax.plot([r.hosts for r in runs], [r.floor for r in runs], ":", marker="x", color=colour, label=f"hosts' CPU floor, {scenario}")
    ax.axhline(RERUN_WALL_LIMIT, color="grey", linewidth=0.8)
    ax.text(2, RERUN_WALL_LIMIT + 0.3, f"rerun target {RERUN_WALL_LIMIT:.0f} s", color="grey", fontsize=8)
    ax.set_xlabel("hosts (1 server + N agents)")
    ax.set_ylabel("wall time (s)")
    ax.set_title(f"provisioner up on the lab (k3s stand-in, {CORES} cores shared by every lab host)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def render(results: dict[str, Run], markdown: bool) -> list[tuple[str, bool, str]]:
    table = rows(results)
    found = checks(results)
    if markdown:
        print("| " + " | ".join(HEADER) + " |")
        print("|" + "---|" * len(HEADER))
        for row in table:
            print("| " + " | ".join(row) + " |")
        print()
        for name, ok, value in found:
            print(f"- {'met' if ok else 'MISSED'}: {name} ({value})")
        print()
        for run in sorted(results.values(), key=lambda r: (r.mode != "direct", r.agents)):
            if run.scenario in ("fresh", "rerun") and run.phases:
                spent = sum(run.phases.values())
                parts = ", ".join(f"{title} {seconds:.2f}" for title, seconds in run.phases.items() if seconds >= 0.05)
                print(
                    f"- {run.mode} 1+{run.agents} {run.scenario}, phases (s): {parts}; outside them (start-up, exit) {run.wall - spent:.2f}"
                )
    else:
        widths = [max(len(str(r[i])) for r in [HEADER, *table]) for i in range(len(HEADER))]
        for row in [HEADER, *table]:
            print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)))
        print()
        for name, ok, value in found:
            print(f"{'met   ' if ok else 'MISSED'} {name}: {value}")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 16, 32, 64], help="agents per lab (1 server each)")
    parser.add_argument("--bastion", action="store_true", help="also run every size through a jump host")
    parser.add_argument("--bastion-only", action="store_true", help="run only through the jump host")
    parser.add_argument("--concurrency", type=int, default=32, help="`up --concurrency` (default 32)")
    parser.add_argument("--results", type=Path, default=HERE / "results-up.json", help="JSON the runs are merged into")
    parser.add_argument("--fresh-results", action="store_true", help="start --results empty")
    parser.add_argument("--lock", type=Path, help="flock this file around each lab (e.g. /run/provisioner-labtests.lock)")
    parser.add_argument("--render-only", action="store_true", help="run nothing; print the table (and plot) of --results")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--plot", type=Path, help="write the plot here (PNG/SVG; needs matplotlib)")
    args = parser.parse_args()

    results = {} if args.fresh_results else load_results(args.results)
    if not args.render_only:
        if os.geteuid() != 0:
            print("run as root: the lab boots systemd-nspawn hosts", file=sys.stderr)
            return 2
        modes = ["bastion"] if args.bastion_only else ["direct", "bastion"] if args.bastion else ["direct"]
        for agents in args.sizes:
            for mode in modes:
                for run in bench_size(agents, mode, args.concurrency, args.lock):
                    results[key_of(run)] = run
                args.results.write_text(json.dumps({k: asdict(v) for k, v in sorted(results.items())}, indent=1) + "\n")
    if not results:
        print(f"no results in {args.results}", file=sys.stderr)
        return 2
    found = render(results, args.markdown)
    if args.plot:
        plot(results, args.plot)
        print(f"\nplot: {args.plot}")
    return 0 if all(ok for name, ok, _ in found if not name.startswith("(info)")) else 1


if __name__ == "__main__":
    sys.exit(main())
