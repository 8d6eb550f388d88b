"""TEST DOUBLE setup: the kernel limits a lab's hosts need, checked before booting (not product code).

Every lab host runs its own systemd, journald, logind, …, as root of this machine (the hosts do
not map users), and each of them takes inotify instances and watches from uid 0's share:
``fs.inotify.max_user_instances`` (often 128) and ``fs.inotify.max_user_watches``. When the
instances run out, a host's systemd fails early in boot and the only trace is on its console
("Failed to allocate manager object" / "Too many open files"); `lab up` then says nothing but
"no ssh answer". So `lab up` reads the limits and what root already uses, and refuses (naming
the sysctl to raise) or, with ``--raise-limits``, raises them before it boots anything.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from provisioner_lab.system import LabError

#: What one booting lab host takes (a Debian bookworm host measured ~8 instances, ~150 watches;
#: watches with room for sshd and the stand-ins).
INSTANCES_PER_HOST = 8
WATCHES_PER_HOST = 512
#: Left free for everything else root runs on this machine.
HEADROOM_INSTANCES = 16
HEADROOM_WATCHES = 4096

SYSCTL_INSTANCES = "fs.inotify.max_user_instances"
SYSCTL_WATCHES = "fs.inotify.max_user_watches"


@dataclass(frozen=True)
class Inotify:
    """Limits (per user) and what uid 0 uses now."""

    max_instances: int
    max_watches: int
    instances_in_use: int
    watches_in_use: int


@dataclass(frozen=True)
class Shortfall:
    """One sysctl that is too low for the hosts about to boot."""

    sysctl: str
    current: int
    needed: int
    in_use: int
    per_host: int
    hosts: int

    def message(self) -> str:
        return (
            f"{self.sysctl} is {self.current}, but booting {self.hosts} host(s) needs {self.needed} "
            f"({self.in_use} in use by root now + {self.per_host} per host + headroom)"
        )


def shortfalls(inotify: Inotify, hosts: int) -> list[Shortfall]:
    """The limits too low to boot ``hosts`` more hosts (empty: enough). Pure."""
    if hosts <= 0:
        return []
    out = []
    need = inotify.instances_in_use + INSTANCES_PER_HOST * hosts + HEADROOM_INSTANCES
    if inotify.max_instances < need:
        out.append(Shortfall(SYSCTL_INSTANCES, inotify.max_instances, need, inotify.instances_in_use, INSTANCES_PER_HOST, hosts))
    need = inotify.watches_in_use + WATCHES_PER_HOST * hosts + HEADROOM_WATCHES
    if inotify.max_watches < need:
        out.append(Shortfall(SYSCTL_WATCHES, inotify.max_watches, need, inotify.watches_in_use, WATCHES_PER_HOST, hosts))
    return out


def sysctl_path(name: str, proc: Path = Path("/proc")) -> Path:
    return proc / "sys" / name.replace(".", "/")


def read_inotify(proc: Path = Path("/proc"), uid: int = 0) -> Inotify:
    """The limits from /proc/sys and uid ``uid``'s inotify instances and watches now (every
    ``anon_inode:inotify`` descriptor of its processes; watches from their fdinfo)."""
    instances = watches = 0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) != "anon_inode:inotify":
                    continue
                info = (entry / "fdinfo" / fd.name).read_text()
            except OSError:
                continue
            instances += 1
            watches += sum(1 for line in info.splitlines() if line.startswith("inotify wd:"))
    return Inotify(
        max_instances=int(sysctl_path(SYSCTL_INSTANCES, proc).read_text()),
        max_watches=int(sysctl_path(SYSCTL_WATCHES, proc).read_text()),
        instances_in_use=instances,
        watches_in_use=watches,
    )


def ensure_inotify(
    hosts: int, *, raise_limits: bool, echo: Callable[[str], None], read: Callable[[], Inotify] = read_inotify, proc: Path = Path("/proc")
) -> None:
    """Make sure ``hosts`` more lab hosts can boot. Changes: with ``raise_limits``, writes each
    short sysctl (to what is needed) under ``proc``/sys; without it, refuses with the sysctl to
    raise. Already done: the limits suffice (nothing written)."""
    short = shortfalls(read(), hosts)
    if not short:
        return
    if not raise_limits:
        fixes = " && ".join(f"sysctl -w {s.sysctl}={s.needed}" for s in short)
        raise LabError(
            "not enough inotify resources for the lab hosts' systemd: "
            + "; ".join(s.message() for s in short)
            + f". Raise them (`{fixes}`) or rerun `provisioner lab up` with --raise-limits"
        )
    for s in short:
        sysctl_path(s.sysctl, proc).write_text(f"{s.needed}\n")
        echo(f"raised {s.sysctl} from {s.current} to {s.needed} (--raise-limits)")
