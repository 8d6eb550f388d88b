"""TEST DOUBLE support code: this machine's side of the on-machine lab (not product code).

Small helpers the lab needs on the machine that runs it: running commands, root and tool
checks, installing missing Debian packages, file locks, process checks by PID, and careful
removal of directories that may still have mounts below them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path


class LabError(Exception):
    """A lab step failed; the message is one line meant for the person running the lab."""


#: Debian packages this machine needs to build and boot lab hosts.
HOST_PACKAGES: tuple[str, ...] = ("debootstrap", "systemd-container", "openssh-client", "iproute2")


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    check: bool = True,
    input: str | None = None,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
    pass_fds: Sequence[int] = (),
    cwd: os.PathLike[str] | str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command, capture its output as text; with check, raise LabError naming it on failure."""
    args = [os.fspath(a) for a in argv]
    try:
        proc = subprocess.run(
            args,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=cwd,
            stdin=None if input is not None else subprocess.DEVNULL,
            pass_fds=tuple(pass_fds),
        )
    except FileNotFoundError as exc:
        raise LabError(f"command not found: {args[0]}") from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        last = detail[-1] if detail else ""
        raise LabError(f"`{' '.join(args[:3])}…` failed with exit {proc.returncode}: {last}")
    return proc


def require_root() -> None:
    """Refuse unless running as root (nspawn, mounts, the bridge and cgroups need it)."""
    if os.geteuid() != 0:
        raise LabError("provisioner lab needs root (systemd-nspawn, overlay mounts, bridge br-lab): run it with sudo")


def missing_packages(packages: Sequence[str] = HOST_PACKAGES) -> list[str]:
    """Debian packages from ``packages`` that dpkg does not report as installed."""
    if shutil.which("dpkg-query") is None:
        return list(packages)
    missing = []
    for pkg in packages:
        proc = run(["dpkg-query", "-W", "-f=${Status}", pkg], check=False)
        if proc.returncode != 0 or "install ok installed" not in proc.stdout:
            missing.append(pkg)
    return missing


def ensure_host_packages(packages: Sequence[str] = HOST_PACKAGES, echo: object = None) -> list[str]:
    """Install the missing ones of ``packages`` with apt-get; already installed (dpkg) = nothing to do.

    Returns what was installed.
    """
    missing = missing_packages(packages)
    if not missing:
        return []
    if shutil.which("apt-get") is None:
        raise LabError(f"missing packages {', '.join(missing)} and no apt-get to install them: install them first")
    if callable(echo):
        echo(f"installing on this machine: {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-q"], env=env, timeout=600)
    run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], env=env, timeout=1200)
    still = missing_packages(missing)
    if still:
        raise LabError(f"could not install {', '.join(still)}")
    return missing


def check_nspawn_usable() -> None:
    """Refuse unless systemd-nspawn runs and the kernel offers overlayfs (loading the module if needed)."""
    if shutil.which("systemd-nspawn") is None:
        raise LabError("systemd-nspawn is not available (package systemd-container): cannot run lab hosts here")
    proc = run(["systemd-nspawn", "--version"], check=False)
    if proc.returncode != 0:
        raise LabError("systemd-nspawn does not run on this machine: cannot run lab hosts here")
    if not _has_overlayfs():
        run(["modprobe", "overlay"], check=False)
        if not _has_overlayfs():
            raise LabError("this kernel has no overlayfs (needed for lab hosts over one base image)")


def _has_overlayfs() -> bool:
    try:
        return any(line.split()[-1] == "overlay" for line in Path("/proc/filesystems").read_text().splitlines())
    except OSError:
        return False


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[int]:
    """Hold an exclusive fcntl lock on ``path`` (created if absent, never deleted) for the block.

    Yields the descriptor: a child given it (``pass_fds``) keeps the lock held while it lives."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)  # closing releases the lock


def write_file(path: Path, text: str | bytes, mode: int = 0o644) -> None:
    """Write ``path`` atomically (temp file + rename) with ``mode``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    data = text.encode() if isinstance(text, str) else text
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    os.replace(tmp, path)


# ---- processes -----------------------------------------------------------------------------


def read_pid(path: Path) -> int | None:
    """The PID stored in ``path``, or None if the file is missing or not a number."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def proc_comm(pid: int) -> str | None:
    """/proc/<pid>/comm of a live process (None if gone or a zombie)."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
        if status.rsplit(")", 1)[1].split()[0] == "Z":
            return None
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, IndexError):
        return None


def pid_is(pid: int | None, comm: str) -> bool:
    """True when ``pid`` is alive and its comm is ``comm`` (guards against reused PIDs)."""
    return pid is not None and proc_comm(pid) == comm


def signal_if(pid: int | None, comm: str, sig: signal.Signals) -> bool:
    """Send ``sig`` to ``pid`` only if it still is a ``comm`` process; True if sent."""
    if not pid_is(pid, comm):
        return False
    assert pid is not None
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def wait_gone(pid: int | None, comm: str, timeout: float) -> bool:
    """Wait up to ``timeout`` s for ``pid`` to stop being a ``comm`` process; True if gone."""
    deadline = time.monotonic() + timeout
    while pid_is(pid, comm):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


# ---- mounts and removal --------------------------------------------------------------------


def _unescape_mount(path: str) -> str:
    return path.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below ``path`` (from /proc/self/mountinfo), deepest first."""
    base = os.path.realpath(path)
    found: list[Path] = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        mnt = _unescape_mount(line.split()[4])
        if mnt == base or mnt.startswith(base.rstrip("/") + "/"):
            found.append(Path(mnt))
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def is_mountpoint(path: Path) -> bool:
    """True when ``path`` itself is a mount point."""
    real = os.path.realpath(path)
    return any(os.fspath(m) == real for m in mounts_under(path))


def unmount_all(path: Path) -> None:
    """Unmount everything at or below ``path``, deepest first (lazily if busy); nothing mounted = done."""
    for mnt in mounts_under(path):
        if run(["umount", mnt], check=False).returncode != 0:
            run(["umount", "-l", mnt], check=False)
    left = mounts_under(path)
    if left:
        raise LabError(f"could not unmount {left[0]}")


def remove_tree(path: Path) -> None:
    """Unmount what is below ``path``, then delete it without crossing into other filesystems."""
    if not path.exists() and not path.is_symlink():
        return
    unmount_all(path)
    run(["rm", "-rf", "--one-file-system", "--", path])
