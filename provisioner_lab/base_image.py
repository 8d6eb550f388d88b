"""TEST DOUBLE: the shared Debian base image of the on-machine lab (not product code).

One debootstrapped Debian bookworm tree, built once and cached under the cache root in a
directory whose name is a hash of everything that shapes it (suite, mirror, package list, setup
version), so changing the package list builds a new image beside the old one. All lab hosts use
it read-only as the lower layer of their overlay; per-host identity lives in each host's upper dir.

Ready means: ``<cache>/<image>/ready.json`` exists. A build happens in ``<cache>/.partial-…`` and
is renamed into place only when complete, under an fcntl lock, so an interrupted or concurrent
build never leaves a half image that looks ready.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from provisioner_lab.system import LabError, file_lock, remove_tree, run, write_file

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
VARIANT = "minbase"
PACKAGES: tuple[str, ...] = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "iproute2",
    "iputils-ping",
    "ca-certificates",
    "curl",
    "sudo",
    "python3",
    "python3-cryptography",
    "python3-yaml",
    "procps",
    "kubernetes-client",
    "less",
    # no iptables, conntrack, socat, ethtool, ebtables: kubeadm's preflight needs them and the
    # provisioner must install them (nothing else here depends on them)
    "kmod",
    # debootstrap does not resolve virtual packages: python3-cryptography needs this one named
    "python3-cffi-backend",
)
#: Bump when :func:`_configure` changes what it writes, so a new image gets built.
SETUP_VERSION = 1

#: The non-root account every host has (sudo with a per-lab password).
LAB_USER = "lab"

_MASKED_UNITS = (
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
    "dpkg-db-backup.timer",
    "getty@tty1.service",
)


def image_spec() -> dict[str, object]:
    """Everything that shapes the image; its hash names the cache directory."""
    return {
        "suite": SUITE,
        "mirror": MIRROR,
        "variant": VARIANT,
        "packages": sorted(PACKAGES),
        "setup_version": SETUP_VERSION,
    }


def image_name(spec: dict[str, object] | None = None) -> str:
    """Cache directory name, e.g. ``debian-bookworm-1a2b3c4d5e6f``: changes with the spec."""
    spec = spec if spec is not None else image_spec()
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    return f"debian-{spec['suite']}-{digest}"


def image_dir(cache_root: Path) -> Path:
    """Directory of the current image (holding ``rootfs/`` and ``ready.json``)."""
    return cache_root / image_name()


def is_ready(image: Path) -> bool:
    """True when ``image`` (an image directory) was completely built."""
    return (image / "ready.json").is_file() and (image / "rootfs" / "usr").is_dir()


def ensure_base_image(cache_root: Path, echo: Callable[[str], None] = print) -> Path:
    """Return the rootfs of the current base image, building it first if it is not ready.

    Changes: creates ``<cache>/<image>/`` (about 330 MB, ~70 s, downloads from the Debian mirror);
    removes leftovers of interrupted builds. Already done: ``ready.json`` present.
    """
    final = image_dir(cache_root)
    if is_ready(final):
        return final / "rootfs"
    cache_root.mkdir(parents=True, exist_ok=True)
    with file_lock(cache_root / "build.lock") as lock_fd:
        if is_ready(final):  # built by someone else while we waited for the lock
            return final / "rootfs"
        for stale in cache_root.glob(".partial-*"):
            remove_tree(stale)  # nobody else builds while we hold the lock
        if final.exists():
            remove_tree(final)
        partial = cache_root / f".partial-{final.name}-{os.getpid()}"
        t0 = time.monotonic()
        echo(f"building base image {final.name} (Debian {SUITE}, once; about 70 s)…")
        try:
            # debootstrap inherits the lock: if we die, no other build starts while it still runs
            _debootstrap(partial / "rootfs", cache_root / "last-build.log", lock_fd)
            _configure(partial / "rootfs")
            info = {**image_spec(), "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "build_seconds": round(time.monotonic() - t0, 1)}
            write_file(partial / "ready.json", json.dumps(info, indent=2) + "\n")
            os.rename(partial, final)
        except BaseException:
            try:
                remove_tree(partial)
            except Exception:  # noqa: BLE001, S110 - the original error matters more
                pass
            raise
        echo(f"base image built in {time.monotonic() - t0:.0f} s: {final}")
    return final / "rootfs"


def _debootstrap(rootfs: Path, log: Path, lock_fd: int) -> None:
    """debootstrap the minimal system plus PACKAGES into ``rootfs``; output goes to ``log``."""
    rootfs.mkdir(parents=True)
    argv = [
        "debootstrap",
        f"--variant={VARIANT}",
        f"--include={','.join(PACKAGES)}",
        SUITE,
        os.fspath(rootfs),
        MIRROR,
    ]
    proc = run(argv, check=False, timeout=1800, pass_fds=(lock_fd,))
    inner = rootfs / "debootstrap/debootstrap.log"
    log.write_text(proc.stdout + proc.stderr + (f"\n--- {inner}\n{inner.read_text(errors='replace')}" if inner.is_file() else ""))
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        raise LabError(f"debootstrap failed ({lines[-1] if lines else proc.returncode}); see {log}")


def _configure(root: Path) -> None:
    """Turn a fresh debootstrap tree into the shared lab base (no per-host identity in it)."""
    # SSH: no host keys in the base (each host gets its own, made by the lab); only ed25519 offered.
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    write_file(
        root / "etc/ssh/sshd_config.d/provisioner-lab.conf",
        "# provisioner lab: host keys are written per host by `provisioner lab up`\n"
        "HostKey /etc/ssh/ssh_host_ed25519_key\n"
        "PasswordAuthentication no\n"
        "UseDNS no\n",
    )
    # Network by systemd-networkd (per-host .network file); no periodic jobs; no login on tty1.
    run(["systemctl", f"--root={root}", "enable", "systemd-networkd.service"])
    run(["systemctl", f"--root={root}", "mask", *_MASKED_UNITS])
    # Empty machine-id (per host in its overlay); D-Bus follows it.
    write_file(root / "etc/machine-id", "")
    dbus_id = root / "var/lib/dbus/machine-id"
    if dbus_id.exists() or dbus_id.is_symlink():
        dbus_id.unlink()
    dbus_id.parent.mkdir(parents=True, exist_ok=True)
    dbus_id.symlink_to("/etc/machine-id")
    resolv = root / "etc/resolv.conf"
    if resolv.is_symlink():
        resolv.unlink()
    write_file(resolv, "# provisioner lab: no DNS, no internet\n")
    write_file(root / "etc/hostname", "localhost\n")
    # The non-root user: sudo with a password (set per host in the overlay, locked here).
    run(
        [
            "chroot",
            root,
            "useradd",
            "--create-home",
            "--shell",
            "/bin/bash",
            "--groups",
            "sudo",
            "--comment",
            "provisioner lab user",
            LAB_USER,
        ]
    )
    write_file(root / "etc/sudoers.d/provisioner-lab", "Defaults lecture=never\n", mode=0o440)
    # Smaller image: package caches are not needed by hosts that have no route to a mirror.
    for cache in (root / "var/cache/apt/archives").glob("*.deb"):
        cache.unlink()
    lists = root / "var/lib/apt/lists"
    if lists.is_dir():
        for entry in lists.iterdir():
            if entry.is_file() and entry.name != "lock":
                entry.unlink()
    shutil.rmtree(root / "debootstrap", ignore_errors=True)
