"""TEST LAB TOOLING (not product code): a Debian bookworm box for vagrant-libvirt, built here.

No box can be downloaded on these machines, so the Vagrant lab boots a box made from Debian
packages: debootstrap (kernel, systemd, sshd, sudo, python3 and the host packages the k3s stand-in
needs), the ``vagrant`` user with Vagrant's well-known insecure public key, SSH host keys made on
first boot, GRUB in the MBR. Packaged as a libvirt box: ``box.img`` (qcow2), ``metadata.json`` and a
``Vagrantfile`` selecting libvirt's ``qemu`` driver (software emulation; KVM is unusable here).

Two caches under ``/var/cache/provisioner-vagrant``, each named by the hash of what shapes it:

- ``rootfs-<hash>/``: the debootstrap tree (suite, mirror, packages) — the slow, downloading part;
- ``provisioner-bookworm-<hash>.box``: the box (the rootfs hash plus this file's recipe).

A cache entry is complete when its name exists: every build happens under a ``.partial-`` name and
is renamed into place last, under a lock, so an interrupted build never looks done.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import struct
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from provisioner_lab.vagrantlab._run import VagrantLabError, run
from provisioner_lab.vagrantlab.labref import lab_host_packages

CACHE = Path(os.environ.get("PROVISIONER_VAGRANT_CACHE", "/var/cache/provisioner-vagrant"))
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
#: Added to the lab hosts' packages: what a VM needs that a container does not.
VM_PACKAGES: tuple[str, ...] = (
    "linux-image-cloud-amd64",  # virtio built for VMs, smaller than the generic kernel
    "initramfs-tools",
    "udev",
    "e2fsprogs",
    "openssh-sftp-server",
    "netbase",
)
#: Debian packages this machine needs to build the box.
BUILD_PACKAGES: tuple[str, ...] = ("debootstrap", "grub-pc-bin", "qemu-utils", "e2fsprogs")
#: Bump when the steps after debootstrap change what they write (the file's hash covers it too).
RECIPE_VERSION = 1
DISK_GIB = 20
PARTITION_START = 2048  # sectors of 512 bytes: GRUB's core.img lives in the gap before it
GRUB_DIR = Path("/usr/lib/grub/i386-pc")
VAGRANT_PUBLIC_KEY = Path("/usr/share/rubygems-integration/all/gems/vagrant-2.3.4/keys/vagrant.pub")
#: Fixed so the box is the same for the same recipe; each VM is a copy-on-write clone of it.
ROOT_UUID = "5a7e1d4c-0b0b-4e5d-8a1e-7b6f0c0ffee1"

_MASKED_UNITS = ("apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "fstrim.timer", "man-db.timer", "getty@tty1.service")


@dataclass(frozen=True)
class Box:
    """A built box: its name for ``vagrant box add``/``BOX`` and the file for ``BOX_URL``."""

    name: str
    path: Path

    @property
    def url(self) -> str:
        return self.path.resolve().as_uri()


def packages() -> tuple[str, ...]:
    """Everything debootstrap installs: the nspawn lab hosts' packages plus a VM's."""
    return tuple(sorted(set(lab_host_packages()) | set(VM_PACKAGES)))


def rootfs_spec() -> dict[str, object]:
    return {"suite": SUITE, "mirror": MIRROR, "variant": "minbase", "packages": list(packages())}


def _digest(data: object) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def rootfs_name() -> str:
    return f"rootfs-{SUITE}-{_digest(rootfs_spec())}"


def box_name() -> str:
    """``provisioner-bookworm-<hash>``: changes with the package list or this recipe's source."""
    recipe = {
        "rootfs": rootfs_name(),
        "version": RECIPE_VERSION,
        "disk_gib": DISK_GIB,
        "source": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
    }
    return f"provisioner-{SUITE}-{_digest(recipe)}"


def cached_box(cache: Path = CACHE) -> Box | None:
    """The box for the current recipe if it is already built."""
    path = cache / f"{box_name()}.box"
    return Box(box_name(), path) if path.is_file() else None


def build(cache: Path = CACHE, echo: Callable[[str], None] = lambda _m: None) -> Box:
    """Return the box for the current recipe, building what is missing (root; ~2-5 min from scratch).

    Changes: ``cache/rootfs-…/`` and ``cache/provisioner-bookworm-….box``; removes leftovers of
    interrupted builds. Already done: the ``.box`` file of this recipe's name exists.
    """
    if (box := cached_box(cache)) is not None:
        return box
    if os.geteuid() != 0:
        raise VagrantLabError("building the Vagrant box needs root (debootstrap, chroot)")
    cache.mkdir(parents=True, exist_ok=True)
    with _lock(cache / "build.lock"):
        if (box := cached_box(cache)) is not None:
            return box
        for stale in cache.glob(".partial-*"):
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink()
        rootfs = cache / rootfs_name()
        if not rootfs.is_dir():
            echo(f"debootstrap {SUITE} into {rootfs}")
            _debootstrap(rootfs)
        for old in cache.glob(f"provisioner-{SUITE}-*.box"):
            old.unlink()  # one box at a time: the cache keeps the current recipe only
        target = cache / f"{box_name()}.box"
        echo(f"building {target}")
        _build_box(rootfs, target)
    return Box(box_name(), target)


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _debootstrap(final: Path) -> None:
    """debootstrap the package list into ``final`` (through a partial directory)."""
    partial = final.with_name(f".partial-{final.name}")
    argv = ["debootstrap", "--variant=minbase", f"--include={','.join(packages())}", SUITE, partial, MIRROR]
    proc = run(argv, timeout=1800, check=False)
    if proc.returncode != 0:
        inner = partial / "debootstrap/debootstrap.log"
        tail = inner.read_text(errors="replace").strip().splitlines()[-3:] if inner.is_file() else []
        lines = (proc.stderr or proc.stdout).strip().splitlines()[-1:] + tail
        raise VagrantLabError(f"debootstrap failed: {' | '.join(lines)}")
    shutil.rmtree(partial / "debootstrap", ignore_errors=True)
    partial.rename(final)


def _build_box(rootfs: Path, target: Path) -> None:
    """Copy the rootfs, make it a bootable VM disk, package it as a libvirt box at ``target``."""
    work = Path(tempfile.mkdtemp(prefix=".partial-work-", dir=target.parent))
    try:
        tree = work / "root"
        run(["cp", "-a", "--", rootfs, tree])
        _configure(tree)
        raw = work / "disk.raw"
        _make_disk(tree, raw)
        package = work / "box"
        package.mkdir()
        run(["qemu-img", "convert", "-O", "qcow2", raw, package / "box.img"], timeout=1800)
        (package / "metadata.json").write_text(json.dumps({"provider": "libvirt", "format": "qcow2", "virtual_size": DISK_GIB}) + "\n")
        (package / "Vagrantfile").write_text(BOX_VAGRANTFILE)
        partial = target.with_name(f".partial-{target.name}")
        run(["tar", "-C", package, "-cf", partial, "metadata.json", "Vagrantfile", "box.img"], timeout=1800)
        partial.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


BOX_VAGRANTFILE = """\
# Built by provisioner's scripts/vagrant-box for vagrant-libvirt on machines without usable KVM:
# libvirt's qemu driver (software emulation). A Vagrantfile that sets driver itself wins.
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |lv|
    lv.driver = "qemu"
    lv.disk_bus = "virtio"
    lv.nic_model_type = "virtio"
  end
end
"""


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _configure(root: Path) -> None:
    """Turn the debootstrap tree into a VM's root: fstab, network, ssh, the vagrant user, GRUB's
    files and grub.cfg."""
    _write(root / "etc/fstab", f"UUID={ROOT_UUID} / ext4 errors=remount-ro 0 1\n")
    _write(root / "etc/hostname", "bookworm\n")
    _write(root / "etc/hosts", "127.0.0.1 localhost\n127.0.1.1 bookworm\n::1 localhost ip6-localhost ip6-loopback\n")
    # Network: DHCP on every Ethernet NIC unless a lower-numbered file (Vagrant writes
    # 50-vagrant-<nic>.network for its private networks) says otherwise.
    _write(
        root / "etc/systemd/network/99-dhcp.network",
        "[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n",
    )
    resolv = root / "etc/resolv.conf"
    if resolv.is_symlink():
        resolv.unlink()
    _write(resolv, "# no DNS: the VMs of the provisioner Vagrant lab have no internet\n")
    run(["systemctl", f"--root={root}", "enable", "systemd-networkd.service", "ssh.service"])
    run(["systemctl", f"--root={root}", "mask", *_MASKED_UNITS])
    # SSH: no host keys in the box; each VM makes its own on first boot, before sshd's own check.
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    _write(
        root / "etc/systemd/system/ssh.service.d/host-keys.conf",
        "[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n",
    )
    _write(root / "etc/ssh/sshd_config.d/vagrant.conf", "UseDNS no\nPasswordAuthentication no\n")
    # Identity: each VM makes its own machine-id on first boot.
    _write(root / "etc/machine-id", "")
    dbus_id = root / "var/lib/dbus/machine-id"
    if dbus_id.exists() or dbus_id.is_symlink():
        dbus_id.unlink()
    # The vagrant user: Vagrant's insecure key (Vagrant replaces it on first `up`), sudo without password.
    run(["chroot", root, "useradd", "--create-home", "--shell", "/bin/bash", "--groups", "sudo", "--comment", "vagrant", "vagrant"])
    ssh_dir = root / "home/vagrant/.ssh"
    _write(ssh_dir / "authorized_keys", VAGRANT_PUBLIC_KEY.read_text(), mode=0o600)
    ssh_dir.chmod(0o700)
    run(["chroot", root, "chown", "-R", "vagrant:vagrant", "/home/vagrant/.ssh"])
    _write(root / "etc/sudoers.d/vagrant", "vagrant ALL=(ALL) NOPASSWD: ALL\nDefaults:vagrant !requiretty\n", mode=0o440)
    # Boot: the kernel and initrd debootstrap installed; GRUB's modules for grub.cfg to load.
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    initrds = sorted((root / "boot").glob("initrd.img-*"))
    if not kernels or not initrds:
        raise VagrantLabError(f"no kernel or initrd in {root / 'boot'}; was linux-image installed?")
    shutil.copytree(GRUB_DIR, root / "boot/grub/i386-pc", dirs_exist_ok=True)
    kernel, initrd = f"/boot/{kernels[-1].name}", f"/boot/{initrds[-1].name}"
    _write(
        root / "boot/grub/grub.cfg",
        (
            "set timeout=0\n"
            "insmod part_msdos\ninsmod ext2\n"
            f"search --no-floppy --fs-uuid --set=root {ROOT_UUID}\n"
            f"linux {kernel} root=UUID={ROOT_UUID} ro console=tty0 console=ttyS0,115200 quiet\n"
            f"initrd {initrd}\n"
            "boot\n"
        ),
    )
    # Smaller box: no package caches (the VMs have no mirror to use them with).
    for deb in (root / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    lists = root / "var/lib/apt/lists"
    for entry in lists.iterdir() if lists.is_dir() else ():
        if entry.is_file() and entry.name != "lock":
            entry.unlink()


def _make_disk(tree: Path, raw: Path) -> None:
    """A raw disk: MBR with one bootable Linux partition holding ``tree`` as ext4, GRUB in the gap.

    No loop device or mount: ``mkfs.ext4 -d`` fills the filesystem from the directory, written at
    the partition's offset; GRUB's boot.img goes into the MBR and core.img right after it, where
    boot.img and core.img look for each other by default (sector 1, then the sectors after it).
    """
    size = DISK_GIB * 1024**3
    with raw.open("wb") as f:
        f.truncate(size)
    sectors = size // 512 - PARTITION_START
    run(
        [
            "mkfs.ext4",
            "-q",
            "-F",
            "-L",
            "root",
            "-U",
            ROOT_UUID,
            "-d",
            tree,
            "-E",
            f"offset={PARTITION_START * 512}",
            raw,
            f"{sectors // 8}",
        ],
        timeout=1800,
    )
    core = raw.with_name("core.img")
    run(
        [
            "grub-mkimage",
            "-O",
            "i386-pc",
            "-o",
            core,
            "-p",
            "(hd0,msdos1)/boot/grub",
            "biosdisk",
            "part_msdos",
            "ext2",
            "normal",
            "linux",
            "search",
            "search_fs_uuid",
            "configfile",
            "echo",
            "test",
        ]
    )
    core_bytes = core.read_bytes()
    if len(core_bytes) > (PARTITION_START - 1) * 512:
        raise VagrantLabError(f"GRUB core.img is {len(core_bytes)} bytes; it does not fit before the partition")
    boot = (GRUB_DIR / "boot.img").read_bytes()
    entry = struct.pack("<B3sB3sII", 0x80, b"\xfe\xff\xff", 0x83, b"\xfe\xff\xff", PARTITION_START, sectors)
    disk_id = uuid.UUID(ROOT_UUID).bytes[:4]
    mbr = boot[:440] + disk_id + b"\0\0" + entry + b"\0" * 48 + b"\x55\xaa"
    with raw.open("r+b") as f:
        f.write(mbr)
        f.write(core_bytes)
