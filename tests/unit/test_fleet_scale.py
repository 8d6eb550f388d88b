"""Scale: the real phases and executor over a simulated fleet (``SimulatedK3sFleet``).

The work a run does per host must not grow with the size of the cluster: the same commands per
host, one node list per run, one config render per host, and about the same CPU per host at
1000 hosts as at 250 (counted, not timed, except CPU time, which is generous). A slow, hanging
or dead host holds up nobody but itself: the run ends at its own timeout, not at N of them.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from provisioner import actions, kubeconfig, templates
from provisioner.distros import base
from provisioner.errors import HostsFailed
from provisioner.inventory import Host
from provisioner.phases import Options
from provisioner.testing import FakeRemote, Link, SimulatedRemote
from tests.unit.fakes import SimulatedK3sFleet, fleet_inventory

SIZES = (250, 1000)


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No HTTPS check of the simulated API; kubeconfigs go to a temporary folder."""
    monkeypatch.setattr(kubeconfig, "check", lambda config, timeout=10: kubeconfig.Check("ok", "simulated"))
    monkeypatch.chdir(tmp_path)


def fleet(agents: int, link: Link | None = None, **ssh: object) -> SimulatedK3sFleet:
    return SimulatedK3sFleet(fleet_inventory(agents, ssh={"user": "root", **ssh}), link=link or Link())


def up(cluster: SimulatedK3sFleet, **options: object) -> actions.Outcome:
    options.setdefault("timeout", 5)
    return actions.up(cluster.inventory, Options(**options), connector=cluster.connector)  # type: ignore[arg-type]


def plan(cluster: SimulatedK3sFleet, **options: object) -> actions.Outcome:
    return actions.plan(cluster.inventory, Options(**options), connector=cluster.connector)  # type: ignore[arg-type]


def per_role(cluster: SimulatedK3sFleet, counts: dict[str, int]) -> dict[str, set[int]]:
    """The distinct values of ``counts`` among servers and among agents."""
    roles: dict[str, set[int]] = {"server": set(), "agent": set()}
    for host in cluster.inventory.hosts:
        roles[host.role].add(counts[host.name])
    return roles


class Calls:
    """Counts the calls of a module function while it stays in place."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> None:
        self.count = 0
        real = getattr(module, name)

        def counted(*args: object, **kwargs: object) -> object:
            self.count += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)


# --- work per host does not grow with the cluster ---------------------------------------------


def test_commands_and_uploads_per_host_are_the_same_at_250_and_1000_hosts() -> None:
    seen: dict[int, dict[str, object]] = {}
    for size in SIZES:
        cluster = fleet(size)
        fresh = up(cluster)
        assert fresh.ok, fresh.error
        fresh_commands = per_role(cluster, cluster.commands_per_host())
        fresh_uploads = per_role(cluster, {n: len(r.uploads) for n, r in cluster.remotes.items()})
        rerun = up(cluster)
        assert rerun.ok, rerun.error
        assert all(o.result == "unchanged" for o in rerun.summary.outcomes.values())
        seen[size] = {"fresh": fresh_commands, "uploads": fresh_uploads, "rerun": per_role(cluster, cluster.commands_per_host())}
    assert seen[250] == seen[1000]
    # every agent does the same: the fact script, its config, the install script; on a rerun, only facts
    assert seen[1000]["fresh"]["agent"] == {2} and seen[1000]["uploads"]["agent"] == {1}
    assert seen[1000]["rerun"]["agent"] == {1}


@pytest.mark.parametrize("size", SIZES)
def test_the_node_list_is_asked_for_and_parsed_once_per_run(monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    cluster = fleet(size)
    assert up(cluster).ok
    parses = Calls(monkeypatch, base, "parse_node_list")
    for run in (up, plan):
        before = parses.count
        assert run(cluster).ok  # type: ignore[operator]
        assert parses.count - before == 1
        assert len(cluster.remotes["server0"].ran(r"kubectl get nodes")) == 1
        assert all(not r.ran(r"kubectl") for n, r in cluster.remotes.items() if n != "server0")


@pytest.mark.parametrize("size", SIZES)
def test_each_host_config_is_rendered_once_per_plan(monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    cluster = fleet(size)
    assert up(cluster).ok
    renders = Calls(monkeypatch, templates, "render")
    assert plan(cluster).ok
    assert renders.count == size + 1


def test_node_lookups_while_planning_do_not_scan_the_node_list(monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = fleet(1000)
    assert up(cluster).ok
    built = Counter[str]()
    real = base.ClusterState.node

    def node(self: base.ClusterState, name: str) -> object:
        if self._by_name[0] is not self.nodes:
            built["index"] += 1
        built["lookup"] += 1
        return real(self, name)

    monkeypatch.setattr(base.ClusterState, "node", node)
    assert plan(cluster).ok
    assert built["lookup"] >= 1000 and built["index"] == 1


def test_cpu_per_host_at_1000_hosts_is_within_1_5x_of_that_at_250() -> None:
    """Process CPU over whole runs (fresh, rerun, plan); the best of two tries per size, after a
    warm-up, so that one garbage collection or a busy machine does not decide it."""
    warm = fleet(50)
    assert up(warm).ok and up(warm).ok

    def cpu_per_host(size: int) -> float:
        best = float("inf")
        for _ in range(2):
            cluster = fleet(size)
            started = time.process_time()
            assert up(cluster).ok and up(cluster).ok and plan(cluster).ok
            best = min(best, (time.process_time() - started) / (size + 1))
        return best

    small, large = cpu_per_host(250), cpu_per_host(1000)
    assert large <= 1.5 * small, f"{large * 1000:.2f} ms per host at 1000 vs {small * 1000:.2f} ms at 250"


# --- fan-out: bounded, and nobody waits for a slow or dead host --------------------------------


class Gauge:
    """How many of something run at once, and the most that ever did."""

    def __init__(self) -> None:
        self.now = self.peak = 0
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.now -= 1


class GaugedFleet(SimulatedK3sFleet):
    """Counts connects, fact commands and installs in flight."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.gauges = {"connect": Gauge(), "facts": Gauge(), "install": Gauge()}

    def new_remote(self, host: Host) -> FakeRemote:
        with self.gauges["connect"]:
            remote = super().new_remote(host)
        gauges = self.gauges

        class Gauged(SimulatedRemote):
            def _execute(self, command: str, *, as_root: bool, timeout: float | None) -> tuple[int | None, str, str]:
                kind = "facts" if "os.id=" in command else "install" if "k3s-install.sh" in command else None
                if kind is None:
                    return super()._execute(command, as_root=as_root, timeout=timeout)
                with gauges[kind]:
                    return super()._execute(command, as_root=as_root, timeout=timeout)

        gauged = Gauged(remote.name, remote.address, self.link, strict=True)
        gauged.command_timeout = remote.command_timeout
        return gauged


def test_connects_and_facts_are_bounded_by_connect_concurrency_and_joins_by_concurrency() -> None:
    cluster = GaugedFleet(fleet_inventory(200), link=Link(latency=0.01, handshake=0.01))
    assert up(cluster, concurrency=7, connect_concurrency=24).ok
    assert cluster.gauges["connect"].peak == 24
    assert cluster.gauges["facts"].peak == 24
    assert cluster.gauges["install"].peak == 7


def test_hosts_whose_commands_hang_fail_at_their_own_timeout_and_the_others_answer() -> None:
    hanging = frozenset({"agent3", "agent50", "agent99", "agent150", "agent199"})
    cluster = fleet(200, Link(latency=0.01, hanging=hanging), command_timeout=1)
    started = time.monotonic()
    outcome = plan(cluster)
    wall = time.monotonic() - started
    assert isinstance(outcome.error, HostsFailed)
    assert set(outcome.error.failures) == hanging
    assert all("did not finish within 1s" in str(outcome.error.failures[n]) for n in hanging)
    answered = [n for n, r in cluster.remotes.items() if n not in hanging and r.ran("os.id=")]
    assert len(answered) == 201 - len(hanging)
    # one timeout (~1 s), not five in turn (5 s); the margin holds on a loaded machine
    assert wall < 3.5, f"{wall:.2f}s: the hanging hosts waited one after another"


def test_dead_hosts_fail_at_their_connect_timeout_and_the_others_connect() -> None:
    dead = frozenset({"agent0", "agent1", "agent2", "agent100"})
    cluster = fleet(200, Link(latency=0.005, handshake=0.005, dead=dead, connect_timeout=1))
    started = time.monotonic()
    outcome = plan(cluster)
    wall = time.monotonic() - started
    assert isinstance(outcome.error, HostsFailed)
    assert set(outcome.error.failures) == dead
    assert set(cluster.remotes) == {h.name for h in cluster.inventory.hosts} - dead
    assert wall < 3.0, f"{wall:.2f}s: the dead hosts waited one after another"  # one timeout, not four (4 s)


def test_slow_agents_hold_up_only_themselves_while_the_others_join() -> None:
    slow = {f"agent{i}": 0.6 for i in range(0, 100, 20)}  # 5 agents, 3 round trips each: ~1.8 s apiece
    cluster = fleet(100, Link(latency=0.002, slow=slow))
    started = time.monotonic()
    outcome = up(cluster, concurrency=10)
    wall = time.monotonic() - started
    assert outcome.ok, outcome.error
    assert all(cluster.hosts[h.name].installs == 1 for h in cluster.inventory.hosts)
    # side by side they take ~1.8 s; in batches of 10, or one slot each in turn, they would add up
    # to 9 s — the bound leaves room for a loaded machine
    assert wall < 5.0, f"{wall:.2f}s"


@pytest.mark.parametrize(
    ("soft", "hard", "raised"),
    [
        (1024, 524288, 2 * 1001 + 256),  # the common default: raised to cover two sockets per host
        (1024, 1500, 1500),  # as far as the hard limit allows
        (65536, 65536, None),  # already enough: left alone
    ],
)
def test_open_files_limit_is_raised_to_hold_a_socket_per_host(
    monkeypatch: pytest.MonkeyPatch, soft: int, hard: int, raised: int | None
) -> None:
    set_to: list[tuple[int, int]] = []
    monkeypatch.setattr(actions.resource, "getrlimit", lambda which: (soft, hard))
    monkeypatch.setattr(actions.resource, "setrlimit", lambda which, limits: set_to.append(limits))
    assert plan(fleet(1000)).ok
    assert set_to == ([] if raised is None else [(raised, hard)])
