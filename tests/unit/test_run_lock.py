"""One run at a time, wired into the actions: `up` takes the local lock before connecting and the
cluster lock on the server that holds the cluster before anything is validated or changed,
releases both whatever happens, and is refused at once (or waits) when another run holds one.
`plan` and `status` take no lock."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner import actions, kubeconfig, runlog
from provisioner.errors import HostsFailed, LocalFileError
from provisioner.inventory import Host, Inventory
from provisioner.lock import HELD_EXIT, HELD_MARK, LOCKED_MARK, Holder, LocalLock, LockHeld, local_lock_path
from provisioner.phases import Options
from provisioner.testing import FakeRemote
from tests.unit.conftest import make_inventory
from tests.unit.fakes import FakeK3sCluster

OTHER = Holder("bob", "desk", 777, "2026-12-02T09:00:00+0000", "provisioner up")
INVENTORY_FILE = Path("homelab.yaml")


@pytest.fixture(autouse=True)
def _no_network_check(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(kubeconfig, "check", lambda config, timeout=10: kubeconfig.Check("ok", "simulated"))
    monkeypatch.chdir(tmp_path)


def up(cluster: FakeK3sCluster, **options: object) -> actions.Outcome:
    options.setdefault("timeout", 3)
    options.setdefault("inventory_path", INVENTORY_FILE)
    return actions.up(cluster.inventory, Options(**options), connector=cluster.connector)  # type: ignore[arg-type]


def local_lock(inventory: Inventory) -> LocalLock:
    return LocalLock(local_lock_path(runlog.state_dir(), INVENTORY_FILE, inventory.cluster.name), OTHER)


def lock_commands(remote: FakeRemote) -> list[str]:
    return [c for c in remote.held if LOCKED_MARK in c]


def held_by_other(remote: FakeRemote, command: str) -> tuple[int, str, str]:
    return HELD_EXIT, f"{HELD_MARK} {OTHER.to_json()}\n", ""


def test_up_takes_the_cluster_lock_on_the_first_server_before_validating_and_releases_both_locks() -> None:
    cluster = FakeK3sCluster(make_inventory())
    order: list[str] = []
    connector = cluster.connector

    def connect(inventory: Inventory, host: Host) -> FakeRemote:
        # the local lock is already held by this run when it connects
        with pytest.raises(LockHeld):
            local_lock(inventory).acquire()
        order.append(f"connect {host.name}")
        return connector(inventory, host)

    outcome = actions.up(cluster.inventory, Options(timeout=3, inventory_path=INVENTORY_FILE), connector=connect)
    assert outcome.ok, outcome.error
    server = cluster.remotes["controller"]
    assert len(lock_commands(server)) == 1 and server.released == server.held
    held = lock_commands(server)[0]
    assert "flock -n 9" in held and "/var/lib/provisioner/run.lock" in held and '"command": "provisioner up"' in held
    # taken after the facts, before the install: the first command after the lock is no change
    sequence = [c for _, c in server.commands]
    at = sequence.index(held)
    assert "os.id=" in sequence[at - 1] and not any("k3s-install.sh" in c for c in sequence[:at])
    for agent in ("worker1", "worker2"):
        assert lock_commands(cluster.remotes[agent]) == []
    second = local_lock(cluster.inventory)
    second.acquire()  # released at the end
    second.release()


def test_a_second_run_with_the_same_inventory_is_refused_before_connecting_naming_the_first() -> None:
    cluster = FakeK3sCluster(make_inventory())
    first = local_lock(cluster.inventory)
    first.acquire()
    try:
        outcome = up(cluster)
    finally:
        first.release()
    assert isinstance(outcome.error, LockHeld)
    message = str(outcome.error)
    assert message.startswith("another run (bob@desk, pid 777, since 2026-12-02T09:00:00+0000")
    assert "holds the lock on this machine" in message and "--wait-lock" in message
    assert outcome.error.exit_code == 1
    assert cluster.remotes == {}  # nothing was contacted


def test_a_cluster_lock_held_by_another_run_refuses_up_before_anything_changes() -> None:
    cluster = FakeK3sCluster(make_inventory())
    connector = cluster.connector

    def connect(inventory: Inventory, host: Host) -> FakeRemote:
        remote = connector(inventory, host)
        remote.on(LOCKED_MARK, handler=held_by_other)
        return remote

    outcome = actions.up(cluster.inventory, Options(timeout=3, inventory_path=INVENTORY_FILE), connector=connect)
    assert isinstance(outcome.error, LockHeld)
    assert str(outcome.error).startswith(
        "another run (bob@desk, pid 777, since 2026-12-02T09:00:00+0000, `provisioner up`)"
        " holds the lock on controller (/var/lib/provisioner/run.lock)"
    )
    for remote in cluster.remotes.values():  # the facts, the lock attempt, nothing else
        assert all("os.id=" in c or LOCKED_MARK in c for _, c in remote.commands), remote.commands
        assert remote.uploads == []
    again = local_lock(cluster.inventory)
    again.acquire()  # the local lock was released
    again.release()


def test_with_wait_lock_up_waits_for_the_cluster_lock_then_gathers_the_facts_again() -> None:
    cluster = FakeK3sCluster(make_inventory())
    connector = cluster.connector
    attempts: list[str] = []

    def lock(remote: FakeRemote, command: str) -> tuple[int, str, str]:
        attempts.append(command)
        if len(attempts) == 1:
            return held_by_other(remote, command)
        return 0, f"{LOCKED_MARK}\n", ""

    def connect(inventory: Inventory, host: Host) -> FakeRemote:
        remote = connector(inventory, host)
        remote.on(LOCKED_MARK, handler=lock)
        return remote

    outcome = actions.up(cluster.inventory, Options(timeout=3, inventory_path=INVENTORY_FILE, wait_lock=30), connector=connect)
    assert outcome.ok, outcome.error
    assert "flock -n 9" in attempts[0] and "flock -w 30 9" in attempts[1]
    for remote in cluster.remotes.values():  # facts once before the lock, once after the wait
        assert len(remote.ran(r"os\.id=")) == 2


def test_the_locks_are_released_when_a_host_fails() -> None:
    cluster = FakeK3sCluster(make_inventory())
    connector = cluster.connector

    def connect(inventory: Inventory, host: Host) -> FakeRemote:
        remote = connector(inventory, host)
        if host.name == "worker1":
            remote.on(r"k3s-install\.sh", exit_code=1, stderr="[ERROR] download failed")
        return remote

    outcome = actions.up(cluster.inventory, Options(timeout=3, inventory_path=INVENTORY_FILE), connector=connect)
    assert isinstance(outcome.error, HostsFailed)
    server = cluster.remotes["controller"]
    assert lock_commands(server) and server.released == server.held
    again = local_lock(cluster.inventory)
    again.acquire()
    again.release()


def test_plan_and_status_take_no_lock() -> None:
    cluster = FakeK3sCluster(make_inventory())
    assert up(cluster).ok
    cluster.remotes.clear()
    first = local_lock(cluster.inventory)
    first.acquire()  # another run holds the local lock: plan and status still work
    try:
        assert actions.plan(cluster.inventory, Options(inventory_path=INVENTORY_FILE), connector=cluster.connector).ok
        assert actions.status(cluster.inventory, Options(inventory_path=INVENTORY_FILE), connector=cluster.connector).ok
    finally:
        first.release()
    assert all(lock_commands(r) == [] for r in cluster.remotes.values())


def test_the_cluster_lock_goes_on_the_server_that_already_runs_the_cluster() -> None:
    text = """
    cluster: {name: homelab, version: v1.31.4+k3s1, embedded_etcd: true}
    ssh: {user: root}
    hosts:
      - {name: s1, address: 192.0.2.10, role: server}
      - {name: w1, address: 192.0.2.11, role: agent}
    """
    cluster = FakeK3sCluster(make_inventory(text))
    assert up(cluster).ok
    grown = text.replace("hosts:\n", "hosts:\n      - {name: s0, address: 192.0.2.9, role: server}\n")
    cluster.inventory = make_inventory(grown)
    cluster.__post_init__()  # a simulated host for s0 (the others keep their state below)
    cluster.hosts["s1"].role, cluster.hosts["s1"].active, cluster.hosts["s1"].version = "server", True, "v1.31.4+k3s1"
    cluster.hosts["w1"].role, cluster.hosts["w1"].active, cluster.hosts["w1"].version = "agent", True, "v1.31.4+k3s1"
    cluster.hosts["s1"].config_node_name, cluster.hosts["w1"].config_node_name = "s1", "w1"
    # s0 is first in the inventory now but new: the cluster is held by s1, so s1 is locked
    outcome = up(cluster, allow_even_servers=True)
    assert outcome.ok, outcome.error
    assert len(lock_commands(cluster.remotes["s1"])) == 1 and lock_commands(cluster.remotes["s0"]) == []


def test_a_state_directory_that_cannot_be_written_is_one_line_naming_the_lock_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("XDG_STATE_HOME", str(blocker))
    cluster = FakeK3sCluster(make_inventory())
    outcome = up(cluster)
    assert isinstance(outcome.error, LocalFileError)
    assert str(outcome.error).startswith(f"{blocker}/provisioner/locks/homelab-") and "cannot take the lock" in str(outcome.error)
    assert cluster.remotes == {}


def test_the_cli_passes_wait_lock_and_the_inventory_file_and_a_held_lock_is_one_red_line_and_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from provisioner.cli import main
    from tests.unit.conftest import BASIC

    (tmp_path / "homelab.yaml").write_text(BASIC)
    cluster = FakeK3sCluster(make_inventory())
    seen: list[Options] = []
    real_up = actions.up

    def spy(inventory: Inventory, options: Options, **kwargs: object) -> actions.Outcome:
        seen.append(options)
        return real_up(inventory, options, **kwargs)

    monkeypatch.setattr(actions, "up", spy)
    monkeypatch.setattr(actions, "ssh_connector", cluster.connector)
    holder = LocalLock(local_lock_path(runlog.state_dir(), Path("homelab.yaml"), "homelab"), OTHER)
    holder.acquire()
    try:
        result = CliRunner().invoke(main, ["up", "-i", "homelab.yaml", "--wait-lock", "0.5"])
    finally:
        holder.release()
    assert seen[0].wait_lock == 0.5 and seen[0].inventory_path == Path("homelab.yaml")
    assert result.exit_code == 1, result.output
    assert (
        "error: another run (bob@desk, pid 777, since 2026-12-02T09:00:00+0000, `provisioner up`) holds the lock on this machine"
        in result.stderr
        and "after waiting 0.5s" in result.stderr
    )
    assert "internal error" not in result.stderr
