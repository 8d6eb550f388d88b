"""The command line: exit codes, one-line errors, summaries, JSON, and the run log."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from provisioner import __version__, actions, kubeconfig
from provisioner.cli import main
from tests.unit.conftest import BASIC, make_inventory
from tests.unit.fakes import TOKEN, FakeK3sCluster


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeK3sCluster:
    """A simulated cluster behind the CLI, with the inventory written to a file."""
    (tmp_path / "inv.yaml").write_text(BASIC)
    sim = FakeK3sCluster(make_inventory())
    monkeypatch.setattr(actions, "ssh_connector", sim.connector)
    monkeypatch.setattr(kubeconfig, "check", lambda config, timeout=10: kubeconfig.Check("ok", "simulated"))
    monkeypatch.chdir(tmp_path)
    return sim


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_version() -> None:
    code, out, _ = invoke("--version")
    assert code == 0 and __version__ in out


def test_bad_inventory_exits_2_with_one_line_per_problem_and_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("cluster: {name: a}\nhosts:\n  - {name: c, address: 192.0.2.1, role: boss}\n  - {name: c, address: 192.0.2.2, role: agent}\n")
    code, out, err = invoke("up", "-i", str(bad))
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {bad}:3: hosts[0].role: must be one of 'server' or 'agent', not 'boss'"]
    assert "Traceback" not in err + out


def test_missing_inventory_option_is_a_usage_error() -> None:
    code, _, err = invoke("up")
    assert code == 2 and "--inventory" in err


def test_up_prints_hosts_and_ready_nodes_and_where_the_log_is(cluster: FakeK3sCluster, tmp_path: Path) -> None:
    code, out, err = invoke("up", "-i", "inv.yaml", "--timeout", "5")
    assert code == 0, err
    assert "Hosts" in out and "Nodes" in out
    for name in ("controller", "worker1", "worker2"):
        assert name in out
    assert out.count("Ready") >= 3
    assert "kubeconfig written to homelab.kubeconfig" in out
    log_line = next(line for line in err.splitlines() if line.startswith("log: "))
    log = Path(log_line[5:])
    assert log.is_file() and stat.S_IMODE(log.stat().st_mode) == 0o600
    text = log.read_text()
    assert "k3s-install.sh" in text and "exit code 0" in text
    assert TOKEN not in text and TOKEN not in out + err
    assert stat.S_IMODE((tmp_path / "homelab.kubeconfig").stat().st_mode) == 0o600


def test_up_json_output_is_machine_readable(cluster: FakeK3sCluster) -> None:
    code, out, _ = invoke("up", "-i", "inv.yaml", "--output", "json")
    assert code == 0
    data = json.loads(out)
    assert data["ok"] is True and data["errors"] == []
    assert [(h["name"], h["action"], h["result"]) for h in data["hosts"]] == [
        ("controller", "install", "changed"), ("worker1", "join", "changed"), ("worker2", "join", "changed")]
    assert all(n["ready"] for n in data["nodes"])
    assert data["kubeconfig"]["path"] == "homelab.kubeconfig"


def test_up_that_times_out_exits_nonzero_with_the_not_ready_table(cluster: FakeK3sCluster) -> None:
    cluster.never_ready.add("worker1")
    code, out, err = invoke("up", "-i", "inv.yaml", "--timeout", "1")
    assert code == 1
    assert "Nodes not Ready" in out and "NodeStatusUnknown" in out
    assert "error: 1 of 3 nodes not Ready after 1s: worker1" in err


def test_plan_json_lists_actions_and_masks_the_token(cluster: FakeK3sCluster) -> None:
    assert invoke("up", "-i", "inv.yaml")[0] == 0
    cluster.stop("worker1")
    cluster.hosts["worker2"].role = None  # reinstalled: joins again, with the known token
    cluster.remotes["worker2"].files.clear()
    code, out, _ = invoke("plan", "-i", "inv.yaml", "-o", "json")
    assert code == 0
    data = json.loads(out)
    assert [(h["host"], h["action"]) for h in data["hosts"]] == [("controller", "nothing"), ("worker1", "restart"), ("worker2", "join")]
    assert data["hosts"][1]["steps"] == ["restart k3s-agent"]
    assert data["hosts"][2]["steps"] == ["upload /etc/rancher/k3s/config.yaml", "run the install script as agent"]
    assert 'token: \\"<join token of the first server>\\"' in out
    assert data["join_secret"] is None  # known from the running server: no step reads it again
    assert [s["name"] for s in data["stale_nodes"]] == ["delete the stale Node object worker2"]
    assert TOKEN not in out and TOKEN.split("::server:")[1] not in out


def test_plan_text_says_nothing_to_do_on_a_converged_cluster(cluster: FakeK3sCluster) -> None:
    assert invoke("up", "-i", "inv.yaml")[0] == 0
    code, out, _ = invoke("plan", "-i", "inv.yaml")
    assert code == 0 and "Nothing to do." in out


def test_status_exits_1_when_a_node_is_not_ready(cluster: FakeK3sCluster) -> None:
    assert invoke("up", "-i", "inv.yaml")[0] == 0
    code, out, _ = invoke("status", "-i", "inv.yaml", "-o", "json")
    assert code == 0 and json.loads(out)["all_ready"] is True
    cluster.stop("worker1")
    code, out, _ = invoke("status", "-i", "inv.yaml")
    assert code == 1
    assert "worker1" in out and "NotReady" in out


def test_kubeconfig_command_merges_with_a_context_name(cluster: FakeK3sCluster, tmp_path: Path) -> None:
    assert invoke("up", "-i", "inv.yaml")[0] == 0
    target = tmp_path / "merged"
    code, _, err = invoke("kubeconfig", "-i", "inv.yaml", "--merge", "--out", str(target), "--context", "home")
    assert code == 0, err
    assert kubeconfig.parse(target.read_text())["current-context"] == "home"


def test_debug_shows_the_traceback_and_log_file_option_is_honoured(cluster: FakeK3sCluster, tmp_path: Path) -> None:
    cluster.hosts["worker1"].systemd = False
    log = tmp_path / "run.log"
    code, _, err = invoke("--debug", "--log-file", str(log), "up", "-i", "inv.yaml")
    assert code == 1
    assert "worker1: systemd is not running" in err
    assert "Traceback" in err
    assert log.is_file() and "systemd is not running" in log.read_text()


def test_lab_commands_are_listed_without_importing_the_lab_for_other_commands() -> None:
    import sys

    sys.modules.pop("provisioner.lab", None)
    code, out, _ = invoke("--help")
    assert code == 0 and "lab" in out
    assert "provisioner.lab" not in sys.modules
