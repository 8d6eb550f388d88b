"""Free space: the fact script's one `df` parsed by a pure parser, what a plan needs per
filesystem, and `up` refusing before anything changes when a host is short (host, path, space)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from provisioner import actions, kubeconfig
from provisioner.distros import ClusterState
from provisioner.errors import HostValidationError
from provisioner.facts import (
    DISK_FACT_SCRIPT,
    SPACE_DIRECTORIES,
    DiskSpace,
    disk_for,
    parse_disk_space,
    parse_host_facts,
    parse_key_values,
)
from provisioner.inventory import Host
from provisioner.phases import Options
from provisioner.space import MARGIN, STAGING_DIR, shortages, writes
from provisioner.steps import Action, Command, HostPlan, Step, Upload
from tests.unit.conftest import make_inventory
from tests.unit.fakes import DEBIAN_FRESH, FakeK3sCluster, facts_from, kubeadm

MIB = 1 << 20
HOST = Host(name="h1", address="192.0.2.1", role="agent")


@pytest.fixture(autouse=True)
def _no_network_check(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(kubeconfig, "check", lambda config, timeout=10: kubeconfig.Check("ok", "simulated"))
    monkeypatch.chdir(tmp_path)


def test_the_disk_fact_script_measures_every_directory_with_one_df_even_missing_ones() -> None:
    assert DISK_FACT_SCRIPT.count("df ") == 1
    out = subprocess.run(["sh", "-c", DISK_FACT_SCRIPT], capture_output=True, text=True, check=True).stdout
    disks = {d.directory: d for d in parse_disk_space(parse_key_values(out))}
    assert set(disks) == set(SPACE_DIRECTORIES)  # /var/lib/provisioner need not exist here
    assert all(d.mount.startswith("/") and d.free_bytes >= 0 for d in disks.values())


def test_the_parser_reads_free_kib_and_mount_points_with_spaces_and_skips_bad_lines() -> None:
    values = parse_key_values(
        "disk./=1000 /\n"
        "disk./etc/rancher/k3s=64 /etc/rancher/k3s\n"
        "disk./var/lib=5 /mnt/my disk\n"
        "disk./tmp=garbage /tmp\n"
        "disk.relative=1 /\n"
        "os.id=debian\n"
    )
    assert parse_disk_space(values) == (
        DiskSpace("/", "/", 1000 * 1024),
        DiskSpace("/etc/rancher/k3s", "/etc/rancher/k3s", 64 * 1024),
        DiskSpace("/var/lib", "/mnt/my disk", 5 * 1024),
    )
    assert parse_host_facts("h1", values).disks == parse_disk_space(values)


def test_a_path_counts_against_the_nearest_measured_directory_above_it() -> None:
    disks = (DiskSpace("/", "/", 1), DiskSpace("/etc", "/", 1), DiskSpace("/etc/rancher/k3s", "/k", 1), DiskSpace("/var/lib", "/", 1))
    assert disk_for(disks, "/etc/rancher/k3s/config.yaml") == disks[2]
    assert disk_for(disks, "/etc/rancher/k3s") == disks[2]
    assert disk_for(disks, "/etc/rancher/k3s-other/x") == disks[1]
    assert disk_for(disks, "/opt/x") == disks[0]
    assert disk_for((), "/opt/x") is None


def facts_with(disks: dict[str, tuple[str, int]]):  # type: ignore[no-untyped-def]
    values = {f"disk.{d}": f"{free // 1024} {mount}" for d, (mount, free) in disks.items()}
    return parse_host_facts("h1", values)


def plan_of(*ops: Upload | Command) -> HostPlan:
    return HostPlan(HOST, Action.JOIN, HOST, steps=(Step("s", "r", ops),))


def test_uploads_and_declared_estimates_add_up_per_filesystem_with_a_margin() -> None:
    plan = plan_of(
        Upload("/etc/rancher/k3s/config.yaml", "x" * 1000),
        Upload("/usr/local/bin/k3s", b"y" * (10 * MIB)),
        Command("install packages", 60, space=(("/var/lib", 300 * MIB),)),
    )
    one_fs = {"/": ("/", 400 * MIB), "/etc/rancher/k3s": ("/", 400 * MIB), "/usr/local/bin": ("/", 400 * MIB), "/var/lib": ("/", 400 * MIB)}
    assert shortages(facts_with(one_fs), plan) == []
    tight = {k: ("/", 300 * MIB) for k in one_fs}
    [short] = shortages(facts_with(tight), plan)
    assert short.mount == "/" and short.needed == 1000 + 10 * MIB + 300 * MIB + MARGIN and short.free == 300 * MIB
    assert short.directories == ("/etc/rancher/k3s", "/usr/local/bin", "/var/lib")
    line = short.line()
    assert line.startswith("h1: not enough free space for /etc/rancher/k3s, /usr/local/bin, /var/lib (filesystem /)")
    assert "needs 342.0 MiB" in line and "300.0 MiB free" in line


def test_only_the_full_filesystem_is_named() -> None:
    plan = plan_of(Upload("/etc/rancher/k3s/config.yaml", "x" * 1000), Upload("/usr/local/bin/k3s", b"y" * MIB))
    disks = {"/": ("/", 10_000 * MIB), "/usr/local/bin": ("/", 10_000 * MIB), "/etc/rancher/k3s": ("/etc/rancher/k3s", 0)}
    [short] = shortages(facts_with(disks), plan)
    assert short.directories == ("/etc/rancher/k3s",) and short.mount == "/etc/rancher/k3s" and short.free == 0


def test_a_plan_that_writes_nothing_or_an_unmeasured_host_is_never_short() -> None:
    assert shortages(facts_with({"/": ("/", 0)}), plan_of(Command("systemctl restart k3s", 60))) == []
    assert shortages(facts_with({}), plan_of(Upload("/etc/x", "x" * MIB))) == []


def test_uploads_of_a_non_root_user_are_staged_in_tmp_too() -> None:
    plan = plan_of(Upload("/etc/a", "x" * 100), Upload("/usr/local/bin/k3s", b"y" * (5 * MIB)))
    assert (STAGING_DIR, 5 * MIB) not in writes(plan)
    assert writes(plan, staged=True)[-1] == (STAGING_DIR, 5 * MIB)


def test_up_refuses_before_any_change_when_an_agent_has_no_room_naming_host_path_and_space() -> None:
    cluster = FakeK3sCluster(make_inventory())
    cluster.hosts["worker2"].disks = {
        "/": ("/", 10_000_000),
        "/etc/rancher/k3s": ("/etc/rancher/k3s", 0),
        "/usr/local/bin": ("/", 10_000_000),
    }
    outcome = actions.up(cluster.inventory, Options(timeout=3), connector=cluster.connector)
    assert isinstance(outcome.error, HostValidationError)
    [line] = outcome.error.lines()
    assert line.startswith("worker2: not enough free space for /etc/rancher/k3s (filesystem /etc/rancher/k3s): needs 32.")
    assert "0 B free" in line
    for remote in cluster.remotes.values():  # facts and the lock only: nothing changed anywhere
        assert remote.uploads == []
        assert all("os.id=" in c or "PROVISIONER-LOCKED" in c for _, c in remote.commands), remote.commands
    plan = actions.plan(cluster.inventory, Options(timeout=3), connector=cluster.connector)
    assert isinstance(plan.error, HostValidationError) and plan.summary.plan is not None  # plan says so too


def test_the_online_k3s_download_is_counted_in_usr_local_bin() -> None:
    cluster = FakeK3sCluster(make_inventory())
    cluster.hosts["controller"].disks = {"/": ("/", 10_000_000), "/usr/local/bin": ("/usr/local", 50_000)}
    outcome = actions.up(cluster.inventory, Options(timeout=3), connector=cluster.connector)
    assert isinstance(outcome.error, HostValidationError)
    assert outcome.error.lines()[0].startswith("controller: not enough free space for /usr/local/bin (filesystem /usr/local)")


def test_kubeadm_package_installs_are_counted_as_300_mb_in_var_lib() -> None:
    dist = kubeadm()
    facts = {"cp1": facts_from(dist, "cp1", DEBIAN_FRESH), "w1": facts_from(dist, "w1", DEBIAN_FRESH)}
    plan = dist.plan(facts, ClusterState(dist.inventory.servers[0], None, None))["w1"]
    estimates = [n for p, n in writes(plan) if p == "/var/lib"]
    assert len(estimates) == 2 and sum(estimates) == 300 * 1000 * 1000  # containerd + kubelet, kubeadm, kubectl
    small = facts_with({"/": ("/", 10_000 * MIB), "/var/lib": ("/var/lib", 200 * MIB)})
    [short] = shortages(small, plan)
    assert short.directories == ("/var/lib",) and short.needed == 300 * 1000 * 1000 + MARGIN
