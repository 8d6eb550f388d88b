"""The command line: exit codes, one-line errors, summaries, JSON, and the run log."""

from __future__ import annotations

import json
import os
import pty
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
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
    bad.write_text(
        "cluster: {name: a}\nhosts:\n  - {name: c, address: 192.0.2.1, role: boss}\n  - {name: c, address: 192.0.2.2, role: agent}\n"
    )
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
        ("controller", "install", "changed"),
        ("worker1", "join", "changed"),
        ("worker2", "join", "changed"),
    ]
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
    assert 'token: \\"<agent token of the first server>\\"' in out  # an agent gets the agent token
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

    sys.modules.pop("provisioner_lab", None)
    code, out, _ = invoke("--help")
    assert code == 0 and "lab" in out
    assert "provisioner_lab" not in sys.modules


# --- kubeconfig merges through the CLI ------------------------------------------------------------

OTHER_HOMELAB = """apiVersion: v1
kind: Config
current-context: ops
clusters:
- name: homelab
  cluster: {server: "https://elsewhere:6443", certificate-authority-data: Q0EK}
users:
- name: homelab
  user: {token: theirs}
contexts:
- name: homelab
  context: {cluster: homelab, user: homelab}
- name: ops
  context: {cluster: homelab, user: homelab}
"""


def test_a_merge_into_another_clusters_entries_exits_2_naming_them_and_replace_overwrites(cluster: FakeK3sCluster, tmp_path: Path) -> None:
    target = tmp_path / "config"
    target.write_text(OTHER_HOMELAB)
    code, out, err = invoke("up", "-i", "inv.yaml", "--merge", "--out", str(target))
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert (
        errors[0]
        == f'error: {target}: cluster "homelab" already points to https://elsewhere:6443 (another server); used by contexts homelab, ops'
    )
    assert errors[1].startswith(f'error: {target}: user "homelab" already holds other credentials')
    assert "--replace" in errors[-1] and "Hosts" in out  # the summary is printed
    assert target.read_text() == OTHER_HOMELAB and sorted(p.name for p in tmp_path.glob("config*")) == ["config"]
    code, _, err = invoke("kubeconfig", "-i", "inv.yaml", "--merge", "--out", str(target), "--replace")
    assert code == 0, err
    merged = kubeconfig.parse(target.read_text())
    assert merged["clusters"][0]["cluster"]["server"] == "https://192.0.2.10:6443"
    assert merged["current-context"] == "ops"


def test_merge_with_several_kubeconfig_files_writes_the_first_existing_and_keeps_the_current_context(
    cluster: FakeK3sCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_text("apiVersion: v1\nkind: Config\nclusters: []\n")
    second.write_text("apiVersion: v1\nkind: Config\ncurrent-context: work\ncontexts:\n- name: work\n  context: {cluster: w, user: w}\n")
    before = second.read_text()
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}:{first}:{second}")
    code, out, err = invoke("up", "-i", "inv.yaml", "--merge")
    assert code == 0, err
    assert f"kubeconfig written to {first}" in out
    written = kubeconfig.parse(first.read_text())
    assert [c["name"] for c in written["contexts"]] == ["homelab"] and "current-context" not in written
    assert second.read_text() == before and not (tmp_path / "missing").exists()
    code, _, err = invoke("kubeconfig", "-i", "inv.yaml", "--merge", "--set-current")
    assert code == 0, err
    assert kubeconfig.parse(first.read_text())["current-context"] == "homelab"  # first file to set it wins
    assert second.read_text() == before


def _read_only_run(folder: Path) -> list[str]:
    """A command prefix that runs its command with ``folder`` read-only (for root: a read-only bind
    mount in a private mount namespace; otherwise the folder's mode)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return []
    prefix = ["unshare", "-m", "sh", "-c", 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"', str(folder)]
    probe = subprocess.run([*prefix, "sh", "-c", 'touch "$0/probe"', str(folder)], capture_output=True)
    if probe.returncode == 0 or shutil.which("unshare") is None:
        pytest.skip("cannot make a read-only folder here")
    return prefix


DRIVER = """
import sys
from provisioner import actions, kubeconfig
from tests.unit.conftest import make_inventory
from tests.unit.fakes import FakeK3sCluster
sim = FakeK3sCluster(make_inventory())
actions.ssh_connector = sim.connector
kubeconfig.check = lambda config, timeout=10: kubeconfig.Check("ok", "simulated")
sys.argv[0] = "provisioner"
from provisioner.entry import run
run()
"""


def _environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"), PYTHONPATH=str(root), COLUMNS="200", **extra)
    env.pop("KUBECONFIG", None)
    return env


@pytest.mark.parametrize("merge", [True, False], ids=["merge", "write"])
def test_a_read_only_kubeconfig_target_ends_with_one_line_and_exit_1_leaving_nothing_behind(tmp_path: Path, merge: bool) -> None:
    (tmp_path / "inv.yaml").write_text(BASIC)
    folder = tmp_path / "kube"
    folder.mkdir()
    (folder / "config").write_text(OTHER_HOMELAB)
    prefix = _read_only_run(folder)
    args = ["up", "-i", "inv.yaml", "--out", str(folder / "config")] + (["--merge", "--replace"] if merge else [])
    result = subprocess.run(
        [*prefix, sys.executable, "-c", DRIVER, *args],
        cwd=tmp_path,
        env=_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    folder.chmod(0o755)
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    reason = "is on a read-only file system" if prefix else "is read-only for this user"
    assert errors == [f"error: {folder / 'config'}: cannot write: {'the directory ' if not prefix else ''}{folder} {reason}"]
    assert "Traceback" not in result.stderr and "Hosts" in result.stdout  # the summary is printed
    assert sorted(p.name for p in folder.iterdir()) == ["config"] and (folder / "config").read_text() == OTHER_HOMELAB


# --- JSON output -------------------------------------------------------------------------------------


def test_json_output_is_plain_json_on_stdout_even_when_colour_is_forced(cluster: FakeK3sCluster) -> None:
    result = CliRunner(env={"FORCE_COLOR": "1", "TERM": "xterm-256color"}).invoke(main, ["up", "-i", "inv.yaml", "-o", "json"])
    assert result.exit_code == 0
    assert "\x1b" not in result.stdout
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["exit_code"] == 0 and data["error"] is None


@pytest.mark.parametrize(
    "args, code, first_line",
    [
        (["up", "-i", "bad.yaml", "-o", "json"], 2, "bad.yaml: cluster: missing required field"),
        (["up", "--output=json"], 2, "Missing option '-i' / '--inventory'."),
        (["status", "-o", "json", "-i", "missing.yaml"], 2, "missing.yaml: cannot read inventory"),
    ],
    ids=["bad inventory", "usage error", "missing file"],
)
def test_errors_in_json_mode_are_json_on_stdout_with_the_same_exit_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], code: int, first_line: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text("hosts: 3\n")
    result = CliRunner(env={"FORCE_COLOR": "1"}).invoke(main, args)
    assert result.exit_code == code
    data = json.loads(result.stdout)
    assert data["ok"] is False and data["exit_code"] == code
    assert data["error"]["lines"][0].startswith(first_line), data


def test_json_mode_in_a_terminal_with_forced_colour_prints_parseable_json(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("cluster: {name: a}\nhosts:\n  - {name: c, address: 192.0.2.1, role: boss}\n")
    leader, follower = pty.openpty()
    env = _environment(tmp_path, FORCE_COLOR="1", TERM="xterm-256color")
    env.pop("NO_COLOR", None)
    with subprocess.Popen(
        [sys.executable, "-m", "provisioner", "up", "-i", "bad.yaml", "-o", "json"],
        cwd=tmp_path,
        env=env,
        stdin=follower,
        stdout=follower,
        stderr=subprocess.PIPE,
    ) as process:
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        code = process.wait(timeout=60)
    os.close(leader)
    out = b"".join(chunks).decode()
    assert code == 2 and "\x1b" not in out
    data = json.loads(out)
    assert data["exit_code"] == 2 and data["error"]["type"] == "InventoryError"
    assert data["error"]["lines"] == ["bad.yaml:3: hosts[0].role: must be one of 'server' or 'agent', not 'boss'"]


def test_vagrant_inventory_takes_output_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from provisioner import vagrant

    monkeypatch.setattr(vagrant, "write_inventory", lambda folder, out, **kw: (out, out.with_suffix(".known_hosts"), []))
    result = CliRunner(env={"FORCE_COLOR": "1"}).invoke(main, ["vagrant-inventory", "--out", str(tmp_path / "v.yaml"), "-o", "json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["inventory"] == str(tmp_path / "v.yaml")
    monkeypatch.setattr(vagrant, "write_inventory", lambda folder, out, **kw: (_ for _ in ()).throw(vagrant.VagrantError("no VMs")))
    result = CliRunner().invoke(main, ["vagrant-inventory", "--out", str(tmp_path / "v.yaml"), "-o", "json"])
    assert result.exit_code == 1 and json.loads(result.stdout)["error"] == {"type": "VagrantError", "lines": ["no VMs"]}


# --- interrupts ----------------------------------------------------------------------------------------


@pytest.fixture
def silent_port() -> Iterator[socket.socket]:
    """A loopback port that accepts connections and never says anything (no SSH banner)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(60)
    yield server
    server.close()


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_connecting_ends_with_one_line_its_exit_code_and_a_last_log_line(
    tmp_path: Path, silent_port: socket.socket, signum: int, code: int
) -> None:
    port = silent_port.getsockname()[1]
    (tmp_path / "inv.yaml").write_text(
        f"cluster: {{name: t}}\nssh: {{user: root, port: {port}, known_hosts: {tmp_path / 'kh'}}}\n"
        "hosts:\n  - {name: c, address: 127.0.0.1, role: server}\n"
    )
    log = tmp_path / "run.log"
    with subprocess.Popen(
        [sys.executable, "-m", "provisioner", "--log-file", str(log), "up", "-i", "inv.yaml"],
        cwd=tmp_path,
        env=_environment(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        connection, _ = silent_port.accept()  # the CLI is connecting now
        started = time.monotonic()
        process.send_signal(signum)
        out, err = process.communicate(timeout=30)
        connection.close()
    assert process.returncode == code
    assert time.monotonic() - started < 10
    name = signal.Signals(signum).name
    lines = err.splitlines()
    assert lines[-1] == f"error: interrupted by {name}; exit code {code} (log: {log})"
    assert [line for line in lines if "error" in line or "interrupt" in line] == lines[-1:]  # one line; before it only progress
    assert "Traceback" not in out + err
    assert log.read_text().splitlines()[-1].endswith(f"interrupted by {name}; exit code {code}")


INTERRUPT_DURING_IMPORTS = """
import os, signal, sys

class SignalOnImport:
    def find_spec(self, name, path=None, target=None):
        if name == "rich":  # imported by the CLI, after the handlers are in place
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, SignalOnImport())
sys.argv = ["provisioner", "--help"]
from provisioner.entry import run
run()
"""


def test_an_interrupt_during_start_up_ends_with_one_line_and_exit_130(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", INTERRUPT_DURING_IMPORTS], env=_environment(tmp_path), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 130
    assert result.stderr.splitlines() == ["error: interrupted by SIGINT; exit code 130"]
    assert "Usage" not in result.stdout
