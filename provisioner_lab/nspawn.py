"""TEST DOUBLE: one lab host as a systemd-nspawn container (not product code).

A host is a directory ``<lab>/hosts/<name>/`` holding its overlay (``upper/`` over the shared
base image, ``work/``, ``merged/``), ``console.log``, the PID files of its restart loop and of
systemd-nspawn, and ``cgroups`` (the cgroup directories made for it).

Why it looks like this (this machine: hybrid cgroups v1 + unified, PID 1 is not systemd, no
machined): nspawn runs detached with ``--register=no --keep-unit`` inside a cgroup of its own per
host (else the guests' systemds share one cgroup tree and units fail "at step CGROUP"); a small
shell loop restarts nspawn when it exits 133 (the guest ran ``reboot``) unless ``stop`` exists;
SYSTEMD_NSPAWN_API_VFS_WRITABLE is removed from its environment (with it networkd never
configures host0).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from provisioner_lab.base_image import LAB_USER
from provisioner_lab.network import BRIDGE, NETWORK
from provisioner_lab.passwords import set_shadow_hash
from provisioner_lab.state import HostRecord
from provisioner_lab.system import (
    LabError,
    is_mountpoint,
    pid_is,
    read_pid,
    remove_tree,
    run,
    signal_if,
    unmount_all,
    wait_gone,
    write_file,
)

NSPAWN_COMM = "systemd-nspawn"
#: comm of the restart loop (a bash that renames itself; 15 characters is the kernel's limit).
LOOP_COMM = "provisioner-lab"
#: Top cgroup directory (under each cgroup hierarchy root) for lab hosts.
CGROUP_TOP = "provisioner-lab"

# $1 = host directory, the rest = systemd-nspawn arguments. Output goes to console.log.
_LOOP_SCRIPT = r"""
printf %s provisioner-lab > /proc/$$/comm
H=$1; shift
while IFS= read -r cg; do
  [ -n "$cg" ] || continue
  echo $$ > "$cg/cgroup.procs" || { echo "[provisioner-lab] cannot join cgroup $cg"; exit 1; }
done < "$H/cgroups"
echo $$ > "$H/loop.pid"
while :; do
  systemd-nspawn "$@" &
  echo $! > "$H/nspawn.pid"
  wait $!; rc=$?
  echo "[provisioner-lab] $(date '+%F %T') systemd-nspawn exited with status $rc"
  [ "$rc" = 133 ] && [ ! -e "$H/stop" ] || break
done
rm -f "$H/nspawn.pid" "$H/loop.pid"
"""


@dataclass(frozen=True)
class HostDir:
    """Paths of one host's directory."""

    root: Path

    @property
    def upper(self) -> Path:
        return self.root / "upper"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def merged(self) -> Path:
        return self.root / "merged"

    @property
    def console_log(self) -> Path:
        return self.root / "console.log"

    @property
    def loop_pid(self) -> Path:
        return self.root / "loop.pid"

    @property
    def nspawn_pid(self) -> Path:
        return self.root / "nspawn.pid"

    @property
    def stop_marker(self) -> Path:
        return self.root / "stop"

    @property
    def cgroups(self) -> Path:
        return self.root / "cgroups"

    @property
    def host_key_pub(self) -> Path:
        return self.upper / "etc/ssh/ssh_host_ed25519_key.pub"


# ---- identity in the overlay ---------------------------------------------------------------


def _mkdirs_like(lower: Path, upper: Path, rel: str) -> Path:
    """Create ``upper/rel`` directory by directory, each with the mode and owner it has in ``lower``
    (in an overlay the upper directory's attributes win). Existing directories are left alone."""
    cur_u, cur_l = upper, lower
    for part in Path(rel).parts:
        cur_u, cur_l = cur_u / part, cur_l / part
        if cur_u.is_dir():
            continue
        try:
            st = cur_l.stat()
            mode, uid, gid = st.st_mode & 0o7777, st.st_uid, st.st_gid
        except OSError:
            mode, uid, gid = 0o755, 0, 0
        cur_u.mkdir()
        os.chown(cur_u, uid, gid)
        os.chmod(cur_u, mode)
    return cur_u


def _put(lower: Path, upper: Path, rel: str, text: str, mode: int, uid: int = 0, gid: int = 0) -> None:
    """Write file ``rel`` into the upper dir (parents shaped like the lower's) with mode and owner."""
    _mkdirs_like(lower, upper, str(Path(rel).parent))
    path = upper / rel
    write_file(path, text, mode=mode)
    os.chown(path, uid, gid)


def _user_ids(base: Path, user: str) -> tuple[int, int, str]:
    """(uid, gid, home) of ``user`` in the base image's /etc/passwd."""
    for line in (base / "etc/passwd").read_text().splitlines():
        f = line.split(":")
        if f[0] == user:
            return int(f[2]), int(f[3]), f[5]
    raise LabError(f"user {user!r} missing from base image {base}")


def network_file(address: str) -> str:
    """systemd-networkd config for the guest side of the veth: static /24, no link-local, no RA,
    no gateway (traffic stays on the lab network)."""
    return (
        "# provisioner lab: static address, no gateway (no route out of the lab)\n"
        "[Match]\nName=host0\n\n"
        f"[Network]\nAddress={address}/{NETWORK.prefixlen}\n"
        "LinkLocalAddressing=no\nIPv6AcceptRA=no\n"
    )


def hosts_file(name: str, address: str) -> str:
    """/etc/hosts with localhost and the host's own name on its lab address."""
    return f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{address}\t{name}\n"


def prepare_identity(base: Path, hd: HostDir, host: HostRecord, authorized_key: str, lab_password_hash: str) -> str:
    """Write the host's identity into its upper dir; return its ed25519 public key line.

    Changes: hostname, machine-id, SSH host key (made here with ssh-keygen), /etc/hosts, the
    networkd file, authorized_keys of root and of the lab user, the lab user's password hash in
    /etc/shadow. Already done: the host key exists in the upper dir (then nothing is rewritten,
    so a restarted host keeps its identity).
    """
    if hd.host_key_pub.is_file():
        return hd.host_key_pub.read_text().strip()
    for d in (hd.upper, hd.work, hd.merged):
        d.mkdir(parents=True, exist_ok=True)
    up = hd.upper
    _put(base, up, "etc/hostname", f"{host.name}\n", 0o644)
    _put(base, up, "etc/machine-id", os.urandom(16).hex() + "\n", 0o444)
    _put(base, up, "etc/hosts", hosts_file(host.name, host.address), 0o644)
    _put(base, up, "etc/systemd/network/10-host0.network", network_file(host.address), 0o644)
    # root's and the lab user's key
    _put(base, up, "root/.ssh/authorized_keys", authorized_key.strip() + "\n", 0o600)
    uid, gid, home = _user_ids(base, LAB_USER)
    rel_home = home.lstrip("/")
    _mkdirs_like(base, up, rel_home)
    ssh_dir = up / rel_home / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    os.chown(ssh_dir, uid, gid)
    _put(base, up, f"{rel_home}/.ssh/authorized_keys", authorized_key.strip() + "\n", 0o600, uid, gid)
    # the lab user's sudo password
    st = (base / "etc/shadow").stat()
    shadow = set_shadow_hash((base / "etc/shadow").read_text(), LAB_USER, lab_password_hash)
    _put(base, up, "etc/shadow", shadow, st.st_mode & 0o7777, st.st_uid, st.st_gid)
    # SSH host key, generated last: its presence marks the identity as complete
    _mkdirs_like(base, up, "etc/ssh")
    tmp_key = up / "etc/ssh/.ssh_host_ed25519_key.new"
    for f in (tmp_key, Path(f"{tmp_key}.pub")):
        f.unlink(missing_ok=True)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{host.name}", "-f", tmp_key])
    os.replace(tmp_key, up / "etc/ssh/ssh_host_ed25519_key")
    os.replace(f"{tmp_key}.pub", hd.host_key_pub)
    return hd.host_key_pub.read_text().strip()


def write_apt_sources(base: Path, hd: HostDir, sources_list: str, keyring_path: str, key: str) -> bool:
    """kubeadm labs: point the host's apt at the lab's local Debian subset only (its
    /etc/apt/sources.list, and the lab key at ``keyring_path``), in the upper dir, before boot.

    Changes: those two files. Already done: both have that content (returns False)."""
    want = {"etc/apt/sources.list": sources_list, keyring_path.lstrip("/"): key}
    changed = False
    for rel, text in want.items():
        try:
            if (hd.upper / rel).read_text() == text:
                continue
        except OSError:
            pass
        _put(base, hd.upper, rel, text, 0o644)
        changed = True
    return changed


# ---- overlay mount -------------------------------------------------------------------------


def mount_overlay(base: Path, hd: HostDir) -> None:
    """Mount the host's overlay on ``merged``. Already done: ``merged`` is a mount point."""
    if is_mountpoint(hd.merged):
        return
    opts = f"lowerdir={base},upperdir={hd.upper},workdir={hd.work}"
    run(["mount", "-t", "overlay", "overlay", "-o", opts, hd.merged])


# ---- cgroups -------------------------------------------------------------------------------


def cgroup_roots() -> list[Path]:
    """Hierarchies a host needs its own cgroup in: the unified root on pure cgroup v2; on
    hybrid systems the named ``systemd`` v1 hierarchy and ``unified``."""
    fs = Path("/sys/fs/cgroup")
    if (fs / "cgroup.controllers").exists():
        return [fs]
    return [p for p in (fs / "systemd", fs / "unified") if p.is_dir()]


def make_cgroups(hd: HostDir, lab: str, host: str) -> list[Path]:
    """Create ``<hierarchy>/provisioner-lab/<lab>/<host>`` in each hierarchy; list them in ``cgroups``."""
    made = []
    for root in cgroup_roots():
        cg = root / CGROUP_TOP / lab / host
        cg.mkdir(parents=True, exist_ok=True)
        made.append(cg)
    write_file(hd.cgroups, "".join(f"{c}\n" for c in made))
    return made


def _listed_cgroups(hd: HostDir) -> list[Path]:
    try:
        return [Path(x) for x in hd.cgroups.read_text().split()]
    except OSError:
        return []


def cpu_seconds(hd: HostDir) -> float | None:
    """CPU time used so far by everything in the host (its cgroup v2 ``cpu.stat``), or None."""
    for cg in _listed_cgroups(hd):
        try:
            for line in Path(cg, "cpu.stat").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "usage_usec":
                    return int(value) / 1e6
        except (OSError, ValueError):
            continue
    return None


def cgroup_pids(hd: HostDir) -> set[int]:
    """PIDs still inside the host's cgroups (the guest's processes, whatever their parent)."""
    pids: set[int] = set()
    for cg in _listed_cgroups(hd):
        for dirpath, _dirs, _files in os.walk(cg):
            try:
                pids |= {int(x) for x in Path(dirpath, "cgroup.procs").read_text().split()}
            except (OSError, ValueError):
                continue
    return pids


def kill_leftovers(hd: HostDir, name: str, timeout: float = 10.0) -> None:
    """SIGKILL what is left in the host's own cgroups (a guest whose systemd-nspawn was killed
    lives on), then wait until they are empty and the host's veth is gone. Already done: empty."""
    if not cgroup_pids(hd):
        return
    for cg in _listed_cgroups(hd):
        kill = cg / "cgroup.kill"  # cgroup v2: kills the whole subtree at once
        if kill.exists():
            try:
                kill.write_text("1")
            except OSError:
                pass
    deadline = time.monotonic() + timeout
    while pids := cgroup_pids(hd):
        for pid in pids:  # cgroup v1 (no cgroup.kill): one by one, by membership
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if time.monotonic() > deadline:
            raise LabError(f"host {name}: processes {sorted(pids)[:5]} do not die")
        time.sleep(0.1)
    veth = Path(f"/sys/class/net/vb-{name}")  # long names are hashed by nspawn: just wait a bit
    while (len(f"vb-{name}") <= 15 and veth.exists()) and time.monotonic() < deadline:
        time.sleep(0.1)
    if len(f"vb-{name}") > 15:
        time.sleep(0.5)


def remove_cgroups(hd: HostDir, timeout: float = 5.0) -> None:
    """Remove the host's cgroups (and the lab / top directories once empty). Already done: gone."""
    deadline = time.monotonic() + timeout
    for cg in _listed_cgroups(hd):
        while cg.is_dir():
            for dirpath, _dirs, _files in os.walk(cg, topdown=False):
                try:
                    os.rmdir(dirpath)
                except OSError:
                    pass
            if not cg.is_dir() or time.monotonic() > deadline:
                break
            time.sleep(0.1)  # processes of the dead guest may take a moment to leave
        for parent in (cg.parent, cg.parent.parent):
            if parent.name and parent.parent != parent and CGROUP_TOP in parent.parts:
                try:
                    parent.rmdir()
                except OSError:
                    break


# ---- processes -----------------------------------------------------------------------------


def nspawn_args(hd: HostDir, name: str, extra: list[str] | None = None) -> list[str]:
    """systemd-nspawn arguments booting the host detached from any service manager."""
    return [
        "--quiet",
        "--boot",
        "--register=no",
        "--keep-unit",
        f"--machine={name}",
        f"--hostname={name}",
        f"--directory={hd.merged}",
        f"--network-bridge={BRIDGE}",
        "--resolv-conf=off",
        "--timezone=off",
        "--link-journal=no",
        "--console=read-only",
        *(extra or []),
    ]


def nspawn_pid(hd: HostDir) -> int | None:
    """PID of the host's running systemd-nspawn, or None."""
    pid = read_pid(hd.nspawn_pid)
    return pid if pid_is(pid, NSPAWN_COMM) else None


def loop_pid(hd: HostDir) -> int | None:
    """PID of the host's restart loop, or None."""
    pid = read_pid(hd.loop_pid)
    return pid if pid_is(pid, LOOP_COMM) else None


def is_running(hd: HostDir) -> bool:
    """True while the host's systemd-nspawn process is alive."""
    return nspawn_pid(hd) is not None


def start(hd: HostDir, lab: str, name: str, extra: list[str] | None = None, timeout: float = 10.0) -> int:
    """Start the restart loop (detached, own session and cgroup) booting the host; return the
    systemd-nspawn PID. Already done: systemd-nspawn of this host is running (its PID is returned)."""
    pid = nspawn_pid(hd)
    if pid is not None:
        return pid
    if loop_pid(hd) is not None:  # loop between two nspawn runs (guest reboot): let it be
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (pid := nspawn_pid(hd)) is not None:
                return pid
            time.sleep(0.05)
        raise LabError(f"host {name}: restart loop runs but systemd-nspawn does not; see {hd.console_log}")
    kill_leftovers(hd, name)
    for f in (hd.stop_marker, hd.loop_pid, hd.nspawn_pid):
        f.unlink(missing_ok=True)
    make_cgroups(hd, lab, name)
    env = {k: v for k, v in os.environ.items() if k != "SYSTEMD_NSPAWN_API_VFS_WRITABLE"}
    with open(hd.console_log, "ab") as log:
        log.write(f"[provisioner-lab] {time.strftime('%F %T')} starting {name}\n".encode())
        log.flush()
        subprocess.run(
            ["setsid", "-f", "bash", "-c", _LOOP_SCRIPT, LOOP_COMM, os.fspath(hd.root), *nspawn_args(hd, name, extra)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            check=True,
            close_fds=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = nspawn_pid(hd)
        if pid is not None:
            return pid
        time.sleep(0.05)
    raise LabError(f"host {name}: systemd-nspawn did not start; see {hd.console_log}")


def stop(hd: HostDir, term_timeout: float = 15.0, loop_timeout: float = 5.0) -> None:
    """Stop the host: ``stop`` marker (no restart), SIGTERM to systemd-nspawn (clean guest
    poweroff), SIGKILL after ``term_timeout``; then the loop. Only PIDs whose comm matches are
    signalled. Already done: neither process alive."""
    if hd.root.is_dir():
        hd.stop_marker.touch()
    termed: dict[int, float] = {}
    deadline = time.monotonic() + term_timeout + loop_timeout
    while True:
        npid = read_pid(hd.nspawn_pid)
        lpid = read_pid(hd.loop_pid)
        n_alive, l_alive = pid_is(npid, NSPAWN_COMM), pid_is(lpid, LOOP_COMM)
        if not n_alive and not l_alive:
            return
        now = time.monotonic()
        if n_alive and npid is not None:
            if npid not in termed:
                signal_if(npid, NSPAWN_COMM, signal.SIGTERM)
                termed[npid] = now
            elif now - termed[npid] > term_timeout:
                signal_if(npid, NSPAWN_COMM, signal.SIGKILL)
        elif l_alive and now > deadline:
            signal_if(lpid, LOOP_COMM, signal.SIGTERM)
            if not wait_gone(lpid, LOOP_COMM, 2):
                signal_if(lpid, LOOP_COMM, signal.SIGKILL)
        if now > deadline + 5:
            raise LabError(f"could not stop host in {hd.root}")
        time.sleep(0.1)


def destroy(hd: HostDir) -> None:
    """Stop the host, unmount its overlay, remove its cgroups and its directory. Already done: gone."""
    stop(hd)
    kill_leftovers(hd, hd.root.name)
    if hd.root.is_dir():
        unmount_all(hd.root)
    remove_cgroups(hd)
    remove_tree(hd.root)
