"""Lab tests of one run at a time: a second `up` while one runs is refused at once naming the
first (which succeeds), by the local lock with the same inventory file and by the cluster lock on
the first server with another file; a run killed with SIGKILL leaves no stale lock behind.

To make the two runs overlap on any machine speed, the first is paused (SIGSTOP) as soon as its
run log says it holds the cluster lock, and resumed (SIGCONT) once the second has ended — a few
seconds, well within the SSH dead-peer bound."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.lab.conftest import LabEnv

LAB_NAME = "t-locks"
LOCKED_LINE = "cluster lock taken on"
SERVER = f"{LAB_NAME}-server1"
AGENT = f"{LAB_NAME}-agent1"


def start_up(env: LabEnv, log: Path, inventory: Path | None = None) -> subprocess.Popen[str]:
    """`provisioner up` in the background, the way ``LabEnv.provisioner`` runs it."""
    command = [sys.executable, "-m", "provisioner", "--log-file", str(log), "up", "-i", str(inventory or env.inventory), "--timeout", "120"]
    full_env = dict(os.environ, XDG_STATE_HOME=str(env.workdir / "state"), COLUMNS="200")
    return subprocess.Popen(command, cwd=env.workdir, env=full_env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for_log(log: Path, text: str, run: subprocess.Popen[str], timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text(errors="replace"):
            return
        if run.poll() is not None:
            out, err = run.communicate()
            raise AssertionError(f"the run ended before its log said {text!r}:\n{out}{err}")
        time.sleep(0.05)
    raise AssertionError(f"no {text!r} in {log} after {timeout:.0f}s")


def finish(run: subprocess.Popen[str]) -> tuple[int, str]:
    out, err = run.communicate(timeout=400)
    return run.returncode, out + err


@dataclass
class Overlap:
    """Two `up`s at once: the second's exit code, output and seconds; the first's pid, exit code
    and output."""

    code: int
    out: str
    seconds: float
    first_pid: int
    first_code: int
    first_out: str


def overlapping_second(env: LabEnv, log: Path, second_inventory: Path | None = None) -> Overlap:
    """Start a first `up`, pause it once it holds the cluster lock, run a second one, resume the first."""
    first = start_up(env, log)
    try:
        wait_for_log(log, LOCKED_LINE, first)
        first.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            second = env.provisioner("up", "--timeout", "120", inventory=second_inventory, timeout=120)
            seconds = time.monotonic() - started
        finally:
            first.send_signal(signal.SIGCONT)
        code, out = finish(first)
        return Overlap(second.code, second.stdout + second.stderr, seconds, first.pid, code, out)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()


def test_a_second_up_with_the_same_inventory_is_refused_at_once_naming_the_first_which_succeeds(lab_env: LabEnv) -> None:
    env = lab_env
    log = env.workdir / "first.log"
    run = overlapping_second(env, log)
    assert run.code == 1, run.out
    assert run.seconds < 20, f"the second run took {run.seconds:.0f}s to be refused"
    assert f"another run (root@{socket.gethostname()}, pid {run.first_pid}, since " in run.out, run.out
    assert "holds the lock on this machine" in run.out and "--wait-lock" in run.out, run.out
    assert "internal error" not in run.out
    assert run.first_code == 0, run.first_out
    assert env.ssh(SERVER, "cat /var/lib/provisioner/run.holder") == ""  # released at the end


def test_a_second_inventory_file_for_the_same_cluster_is_refused_by_the_cluster_lock(lab_env: LabEnv) -> None:
    env = lab_env
    other = env.edit_inventory(lambda data: None, env.workdir / "same-cluster-other-file.yaml")
    env.ssh(AGENT, "systemctl stop k3s-agent")  # the first run has something to do
    log = env.workdir / "first-of-two-files.log"
    run = overlapping_second(env, log, other)
    assert run.code == 1, run.out
    assert run.seconds < 30, f"the second run took {run.seconds:.0f}s to be refused"
    assert f"another run (root@{socket.gethostname()}, pid {run.first_pid}, since " in run.out, run.out
    assert f"holds the lock on {SERVER} (/var/lib/provisioner/run.lock)" in run.out, run.out
    assert "on this machine" not in run.out
    assert run.first_code == 0, run.first_out
    assert env.ssh(AGENT, "systemctl is-active k3s-agent").strip() == "active"


def test_an_up_killed_mid_run_leaves_no_stale_lock_and_the_next_up_converges(lab_env: LabEnv) -> None:
    env = lab_env
    env.ssh(AGENT, "systemctl stop k3s-agent")
    log = env.workdir / "killed.log"
    first = start_up(env, log)
    try:
        wait_for_log(log, f"{AGENT}: step: ", first)  # changing a host now
        first.kill()  # SIGKILL: no clean-up of any kind runs
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    started = time.monotonic()
    again = env.provisioner("up", "--timeout", "120", timeout=300)
    assert again.code == 0, again.stdout + again.stderr
    assert "another run" not in again.stdout + again.stderr
    assert time.monotonic() - started < 120
    assert env.ssh(AGENT, "systemctl is-active k3s-agent").strip() == "active"
    # and with another inventory file (only the cluster lock is shared): not blocked either
    env.ssh(AGENT, "systemctl stop k3s-agent")
    first = start_up(env, env.workdir / "killed-2.log")
    try:
        wait_for_log(env.workdir / "killed-2.log", LOCKED_LINE, first)
        first.kill()
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    other = env.edit_inventory(lambda data: None, env.workdir / "after-kill-other-file.yaml")
    again = env.provisioner("up", "--timeout", "120", inventory=other, timeout=300)
    assert again.code == 0, again.stdout + again.stderr
    assert env.ssh(AGENT, "systemctl is-active k3s-agent").strip() == "active"
