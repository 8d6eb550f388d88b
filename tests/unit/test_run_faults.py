"""Expected failures mid-run end as the tool's own lines with the summary: a first server whose
SSH connection is lost after the agents joined (during the kubeconfig fetch or the Ready wait)
ends `up` with exit 1, the hosts table (agents joined, the server failed) and no Python reprs;
an unforeseen error on one host is one line naming what was being done, traceback in the log."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from provisioner import actions, kubeconfig
from provisioner.cli import main
from provisioner.errors import ConnectionLost, HostsFailed
from provisioner.inventory import Host, Inventory
from provisioner.phases import Options
from provisioner.testing import FakeRemote
from tests.unit.conftest import BASIC, make_inventory
from tests.unit.fakes import FakeK3sCluster

LOST = "no answer from 192.0.2.10 within 20s"


def lose(remote: FakeRemote, *args: object) -> tuple[int, str, str]:
    raise ConnectionLost(remote.name, LOST)


def server_lost_during(moment: str, sim: FakeK3sCluster):  # type: ignore[no-untyped-def]
    """A connector whose first server loses its connection at ``moment``."""
    connector = sim.connector

    def connect(inventory: Inventory, host: Host) -> FakeRemote:
        remote = connector(inventory, host)
        if host.name == "controller":
            if moment == "kubeconfig fetch":
                remote._download = lambda path: lose(remote)  # type: ignore[method-assign]
            else:
                remote.on(r"kubectl get nodes -o json", handler=lose)
        return remote

    return connect


def rows_of(stdout: str) -> dict[str, str]:
    return {line.split("│")[1].strip(): line for line in stdout.splitlines() if line.count("│") > 3}


@pytest.mark.parametrize("moment", ["kubeconfig fetch", "Ready wait"])
def test_a_first_server_lost_after_the_joins_ends_with_exit_1_and_the_summary(
    moment: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "inv.yaml").write_text(BASIC)
    sim = FakeK3sCluster(make_inventory())
    monkeypatch.setattr(actions, "ssh_connector", server_lost_during(moment, sim))
    monkeypatch.setattr(kubeconfig, "check", lambda config, timeout=10: kubeconfig.Check("ok", "simulated"))
    monkeypatch.chdir(tmp_path)
    result = CliRunner(env={"COLUMNS": "200"}).invoke(main, ["up", "-i", "inv.yaml", "--timeout", "3"])
    out = result.stdout + result.stderr
    assert result.exit_code == 1, out
    rows = rows_of(result.stdout)
    assert set(rows) == {"controller", "worker1", "worker2"}, result.stdout  # the table is printed
    for agent in ("worker1", "worker2"):
        assert "join" in rows[agent] and "changed" in rows[agent]
    assert f"failed: SSH connection lost: {LOST}" in rows["controller"]
    assert f"error: controller: SSH connection lost: {LOST}" in result.stderr
    assert "internal error" not in out and "Error(" not in out and "Traceback" not in out


def test_an_unforeseen_error_on_one_host_is_one_line_without_a_repr_and_a_traceback_in_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    sim = FakeK3sCluster(make_inventory())

    def connect(inventory: Inventory, host: Host) -> FakeRemote:
        if host.name == "worker2":
            raise KeyError("worker2-socket")
        return sim.connector(inventory, host)

    with caplog.at_level(logging.ERROR, logger="provisioner.phases"):
        outcome = actions.up(sim.inventory, Options(timeout=3), connector=connect)
    assert isinstance(outcome.error, HostsFailed)
    line = outcome.summary.outcomes["worker2"].error
    assert line == "unexpected error during connecting (KeyError: 'worker2-socket'); the traceback is in the run log"
    assert outcome.error.lines() == [f"worker2: {line}"]
    assert "KeyError('worker2-socket')" not in line
    assert any("Traceback" in r.getMessage() and "worker2-socket" in r.getMessage() for r in caplog.records)
