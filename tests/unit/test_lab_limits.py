"""`lab up` checks the inotify limits before booting (test double setup), with injected values,
a fake /proc tree, and the bounded boot / console tail of the lab."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from provisioner_lab import limits
from provisioner_lab.lab import Lab, console_tail
from provisioner_lab.state import HostRecord
from provisioner_lab.system import LabError


def _inotify(max_instances: int = 128, max_watches: int = 65536, instances: int = 40, watches: int = 500) -> limits.Inotify:
    return limits.Inotify(max_instances, max_watches, instances, watches)


def test_enough_instances_and_watches_is_no_shortfall() -> None:
    assert limits.shortfalls(_inotify(max_instances=8192, max_watches=1 << 20), 13) == []
    assert limits.shortfalls(_inotify(max_instances=1, max_watches=1), 0) == []  # nothing to boot


def test_the_machine_default_of_128_instances_is_short_for_thirteen_hosts() -> None:
    (short,) = limits.shortfalls(_inotify(max_instances=128, instances=40), 13)
    assert short.sysctl == "fs.inotify.max_user_instances" and short.current == 128
    assert short.needed == 40 + 13 * limits.INSTANCES_PER_HOST + limits.HEADROOM_INSTANCES
    assert "fs.inotify.max_user_instances is 128" in short.message()


def test_few_watches_is_a_shortfall_of_max_user_watches() -> None:
    (short,) = limits.shortfalls(_inotify(max_instances=8192, max_watches=8192, watches=3000), 4)
    assert short.sysctl == "fs.inotify.max_user_watches"
    assert short.needed == 3000 + 4 * limits.WATCHES_PER_HOST + limits.HEADROOM_WATCHES


def test_ensure_refuses_naming_the_sysctl_and_the_flag() -> None:
    with pytest.raises(LabError) as err:
        limits.ensure_inotify(13, raise_limits=False, echo=lambda m: None, read=lambda: _inotify())
    text = str(err.value)
    needed = 40 + 13 * limits.INSTANCES_PER_HOST + limits.HEADROOM_INSTANCES
    assert f"sysctl -w fs.inotify.max_user_instances={needed}" in text and "--raise-limits" in text


def _fake_proc(root: Path, max_instances: int, max_watches: int) -> Path:
    sysdir = root / "sys/fs/inotify"
    sysdir.mkdir(parents=True)
    (sysdir / "max_user_instances").write_text(f"{max_instances}\n")
    (sysdir / "max_user_watches").write_text(f"{max_watches}\n")
    return root


def test_ensure_with_raise_limits_writes_the_sysctl(tmp_path: Path) -> None:
    proc = _fake_proc(tmp_path, 128, 1 << 20)
    said: list[str] = []
    limits.ensure_inotify(13, raise_limits=True, echo=said.append, read=lambda: _inotify(), proc=proc)
    needed = 40 + 13 * limits.INSTANCES_PER_HOST + limits.HEADROOM_INSTANCES
    assert (proc / "sys/fs/inotify/max_user_instances").read_text() == f"{needed}\n"
    assert (proc / "sys/fs/inotify/max_user_watches").read_text() == f"{1 << 20}\n"  # was enough: untouched
    assert said == [f"raised fs.inotify.max_user_instances from 128 to {needed} (--raise-limits)"]


def test_read_inotify_counts_this_users_inotify_descriptors_and_watches(tmp_path: Path) -> None:
    """A fake /proc: limits under sys/, one process of ours with an inotify fd (2 watches) and a
    plain fd; the real reader counts 1 instance and 2 watches."""
    proc = _fake_proc(tmp_path / "proc", 256, 9999)
    pid = proc / "4242"
    (pid / "fd").mkdir(parents=True)
    (pid / "fdinfo").mkdir()
    os.symlink("anon_inode:inotify", pid / "fd/3")
    os.symlink("/dev/null", pid / "fd/4")
    (pid / "fdinfo/3").write_text("pos:\t0\nflags:\t02000000\ninotify wd:1 ino:2\ninotify wd:2 ino:3\n")
    got = limits.read_inotify(proc, uid=os.geteuid())
    assert got == limits.Inotify(max_instances=256, max_watches=9999, instances_in_use=1, watches_in_use=2)


def test_read_inotify_reads_this_machines_real_limits() -> None:
    got = limits.read_inotify()
    assert got.max_instances == int(Path("/proc/sys/fs/inotify/max_user_instances").read_text())
    assert got.max_watches == int(Path("/proc/sys/fs/inotify/max_user_watches").read_text())


def test_boot_all_keeps_at_most_the_concurrency_booting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    lab = Lab("bounded", root=tmp_path)
    hosts = [HostRecord(f"bounded-agent{i}", "agent", f"10.231.0.{20 + i}") for i in range(7)]
    booting: set[str] = set()
    peak = 0
    lock = threading.Lock()

    def launch(h: HostRecord) -> None:
        nonlocal peak
        with lock:
            booting.add(h.name)
            peak = max(peak, len(booting))

    def wait_ready(h: HostRecord, t0: float, timeout: float) -> tuple[str, float, tuple[str, ...], str]:
        time.sleep(0.05)
        with lock:
            booting.discard(h.name)
        return "running", 0.05, (), ""

    monkeypatch.setattr(lab, "_wait_ready", wait_ready)
    results = lab._boot_all(hosts, launch, timeout=5, concurrency=3)
    assert peak == 3
    assert list(results) == [h.name for h in hosts] and all(r[0] == "running" for r in results.values())


def test_console_tail_gives_the_last_printable_lines(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    lines = [f"line {i}" for i in range(40)] + ["\x1b[0;1;31mFailed to allocate manager object: Too many open files\x1b[0m"]
    log.write_text("\n".join(lines) + "\n")
    tail = console_tail(log, lines=3)
    assert tail == ["line 38", "line 39", "Failed to allocate manager object: Too many open files"]
    assert console_tail(tmp_path / "missing.log") == []
