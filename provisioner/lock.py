"""One run at a time per cluster: a lock on this machine and a lock on the first server.

Two runs that change the same hosts at once would fight over files, services and the join (two
`up`s, or an `up` and a `remove`). Every command that changes hosts takes both locks before it
changes anything and holds them until it ends:

- the **local lock** is ``flock`` on a file per inventory under the state directory, so two
  commands on this machine with the same inventory exclude each other even before connecting;
- the **cluster lock** is ``flock`` on ``/var/lib/provisioner/run.lock`` on the first server,
  held by a shell that lives exactly as long as this run's SSH session (it waits on its stdin).
  Runs from other machines or other inventory files for the same cluster are refused too, and a
  run that crashes or is killed releases the lock with its TCP connection: nothing stale remains.

Both record who holds them (user@machine, pid, since when, command), and a second run fails at
once with that, or waits up to ``wait`` seconds (``--wait-lock``).
"""

from __future__ import annotations

import errno
import fcntl
import getpass
import hashlib
import json
import os
import shlex
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from provisioner.errors import ProvisionerError

if TYPE_CHECKING:
    from provisioner.remote import HeldCommand, Remote

REMOTE_DIR = "/var/lib/provisioner"
REMOTE_LOCK = f"{REMOTE_DIR}/run.lock"
REMOTE_HOLDER = f"{REMOTE_DIR}/run.holder"
LOCKED_MARK = "PROVISIONER-LOCKED"
HELD_MARK = "PROVISIONER-HELD"
HELD_EXIT = 75  # EX_TEMPFAIL: someone else holds the lock


class LockHeld(ProvisionerError):
    """Another run holds the lock of this cluster."""

    def __init__(self, where: str, holder: str, waited: float | None) -> None:
        self.where = where
        self.holder = holder
        after = f" after waiting {waited:g}s" if waited else ""
        hint = "" if waited else "; wait for it to end, or run with --wait-lock SECONDS"
        super().__init__(f"another run ({holder}) holds the lock on {where}{after}{hint}")


@dataclass(frozen=True)
class Holder:
    """Who holds a lock: shown to a run that finds it taken."""

    user: str
    machine: str
    pid: int
    since: str
    command: str

    @classmethod
    def me(cls, command: str) -> Holder:
        return cls(
            user=_user(),
            machine=socket.gethostname(),
            pid=os.getpid(),
            since=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            command=command,
        )

    def line(self) -> str:
        """Printable, one line, no control characters (the holder file may be edited by anyone)."""
        text = f"{self.user}@{self.machine}, pid {self.pid}, since {self.since}, `{self.command}`"
        return "".join(c if c.isprintable() else "?" for c in text)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        """The holder recorded in a lock file, or None if it is unreadable."""
        try:
            data = json.loads(text)
            return cls(str(data["user"]), str(data["machine"]), int(data["pid"]), str(data["since"]), str(data["command"]))
        except (ValueError, KeyError, TypeError):
            return None


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def local_lock_path(state_dir: Path, inventory_path: Path, cluster: str) -> Path:
    """One lock file per inventory file (by its real path) and cluster name."""
    digest = hashlib.sha256(str(inventory_path.resolve()).encode()).hexdigest()[:16]
    return state_dir / "locks" / f"{cluster}-{digest}.lock"


class LocalLock:
    """``flock`` on a file on this machine; the holder's details are written into the file."""

    def __init__(self, path: Path, holder: Holder) -> None:
        self.path = path
        self.holder = holder
        self._fd: int | None = None

    def acquire(self, *, wait: float = 0.0) -> None:
        """Take the lock, waiting up to ``wait`` seconds; ``LockHeld`` names the holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as error:
                if error.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise ProvisionerError(f"cannot lock {self.path}: {error.strerror}") from None
                if time.monotonic() >= deadline:
                    recorded = Holder.parse(os.pread(fd, 4096, 0).decode(errors="replace"))
                    os.close(fd)
                    raise LockHeld(
                        f"this machine ({self.path})",
                        recorded.line() if recorded else "unknown holder",
                        wait or None,
                    ) from None
                time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        os.ftruncate(fd, 0)
        os.pwrite(fd, (self.holder.to_json() + "\n").encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (the file stays; an empty or stale record in it means nothing)."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        except OSError:
            pass
        os.close(self._fd)  # closing the descriptor releases the flock
        self._fd = None


def remote_lock_script(holder: Holder, *, wait: float, directory: str = REMOTE_DIR) -> str:
    """The shell that takes the cluster lock and keeps it while its stdin stays open.

    Prints ``PROVISIONER-LOCKED`` once it holds the lock, or ``PROVISIONER-HELD <holder>`` and
    exits 75 when another run holds it (after waiting up to ``wait`` seconds).
    """
    take = f"flock -w {int(wait)} 9" if wait > 0 else "flock -n 9"
    folder = shlex.quote(directory)
    lock, record = f"{folder}/run.lock", f"{folder}/run.holder"
    return (
        f"mkdir -p {folder} && chmod 0700 {folder} && exec 9>>{lock} || exit 1\n"
        f"if ! {take}; then printf '%s ' {HELD_MARK}; head -c 4096 {record} 2>/dev/null | head -n 1; "
        f"echo; exit {HELD_EXIT}; fi\n"
        f"printf '%s\\n' {shlex.quote(holder.to_json())} > {record}\n"
        f"echo {LOCKED_MARK}\n"
        "cat >/dev/null\n"
        f": > {record}\n"
    )


class ClusterLock:
    """The lock on the first server, held by a command whose life is this run's SSH session."""

    def __init__(self, remote: Remote, holder: Holder) -> None:
        self.remote = remote
        self.holder = holder
        self._held: HeldCommand | None = None

    def acquire(self, *, wait: float = 0.0) -> None:
        """Take the lock, waiting up to ``wait`` seconds; ``LockHeld`` names the holder."""
        script = remote_lock_script(self.holder, wait=wait)
        held = self.remote.hold(script, ready=LOCKED_MARK, timeout=wait + 30)
        if held.ready:
            self._held = held
            return
        output = held.output
        held.release()
        if HELD_MARK in output:
            recorded = Holder.parse(output.split(HELD_MARK, 1)[1].strip())
            raise LockHeld(
                f"{self.remote.name} ({REMOTE_LOCK})",
                recorded.line() if recorded else "unknown holder",
                wait or None,
            )
        tail = " ".join(output.split())[-300:]
        raise ProvisionerError(f"{self.remote.name}: cannot take the cluster lock {REMOTE_LOCK}: {tail or 'no answer'}")

    def release(self) -> None:
        if self._held is not None:
            self._held.release()
            self._held = None
