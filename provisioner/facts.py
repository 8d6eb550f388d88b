"""Facts: what a host is, gathered once per run with one command, parsed by pure functions.

The fact script prints ``key=value`` lines. Host facts (OS, architecture, memory, systemd,
hostname, machine-id) come from here; each distribution appends its own keys (installed version,
role, service state, config hash) through ``Distribution.fact_script``.

Free space: one ``df`` over the directories a plan may write to (``SPACE_DIRECTORIES``; a
missing one is measured at its nearest existing parent), parsed into ``DiskSpace`` per directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

#: Where plans write (configs, binaries, air-gap images, packages, staging of uploads), and the
#: roots that catch every other path. Each is measured by the fact script's one ``df``.
SPACE_DIRECTORIES = (
    "/",
    "/etc",
    "/etc/rancher/k3s",
    "/etc/kubernetes",
    "/etc/containerd",
    "/usr",
    "/usr/local/bin",
    "/var",
    "/var/lib",
    "/var/lib/rancher/k3s",
    "/var/lib/provisioner",
    "/tmp",
)

DISK_FACT_SCRIPT = r"""
set --
for dir in {dirs}; do
  at=$dir; while [ ! -d "$at" ]; do at=${{at%/*}}; [ -n "$at" ] || at=/; done
  set -- "$@" "$at"
done
df -Pk "$@" 2>/dev/null | awk -v dirs="{dirs}" 'BEGIN {{ n = split(dirs, d, " ") }}
  NR > 1 && NR - 1 <= n {{ m = $0; for (i = 1; i <= 5; i++) sub(/^[^ ]+ +/, "", m); print "disk." d[NR - 1] "=" $4 " " m }}'
""".format(dirs=" ".join(SPACE_DIRECTORIES))

HOST_FACT_SCRIPT = (
    r"""
export LC_ALL=C
( . /etc/os-release 2>/dev/null
  echo "os.id=${ID:-unknown}"
  echo "os.id_like=${ID_LIKE:-}"
  echo "os.version_id=${VERSION_ID:-}"
  echo "os.pretty_name=${PRETTY_NAME:-}" )
echo "arch=$(uname -m)"
echo "kernel=$(uname -r)"
echo "mem_kib=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
echo "cpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 0)"
if [ -d /run/systemd/system ]; then echo systemd=yes; else echo systemd=no; fi
echo "hostname=$(cat /proc/sys/kernel/hostname)"
echo "machine_id=$(cat /etc/machine-id 2>/dev/null)"
echo "user=$(id -un)"
for tool in curl wget; do command -v $tool >/dev/null 2>&1 && echo "tool.$tool=yes"; done
{ [ -f /etc/systemd/system/k3s.service ] || [ -f /etc/systemd/system/k3s-agent.service ]; } && echo kubernetes.k3s=yes
[ -f /etc/kubernetes/kubelet.conf ] && echo kubernetes.kubeadm=yes
"""
    + DISK_FACT_SCRIPT
)

RHEL_FAMILY = {"rhel", "centos", "rocky", "almalinux", "fedora", "ol", "amzn"}
DEBIAN_FAMILY = {"debian", "ubuntu", "raspbian", "linuxmint", "pop"}


def parse_key_values(text: str) -> dict[str, str]:
    """``key=value`` lines into a dict; later keys win, other lines are ignored."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key and " " not in key:
            values[key.strip()] = value.strip()
    return values


@dataclass(frozen=True)
class OSInfo:
    """The host's distribution, from /etc/os-release."""

    id: str
    id_like: tuple[str, ...]
    version_id: str
    pretty_name: str

    @property
    def family(self) -> str:
        """``debian``, ``rhel`` or ``other``."""
        ids = {self.id, *self.id_like}
        if ids & DEBIAN_FAMILY:
            return "debian"
        if ids & RHEL_FAMILY:
            return "rhel"
        return "other"


@dataclass(frozen=True)
class DiskSpace:
    """Free space for root in the filesystem that holds ``directory`` (mounted at ``mount``)."""

    directory: str
    mount: str
    free_bytes: int


def parse_disk_space(values: dict[str, str]) -> tuple[DiskSpace, ...]:
    """``disk.<directory>=<free KiB> <mount point>`` lines into ``DiskSpace`` (bad lines skipped)."""
    found = []
    for key, value in values.items():
        if not key.startswith("disk./"):
            continue
        free, _, mount = value.partition(" ")
        if free.isdigit() and mount.startswith("/"):
            found.append(DiskSpace(key[len("disk.") :], mount, int(free) * 1024))
    return tuple(sorted(found, key=lambda d: d.directory))


def disk_for(disks: tuple[DiskSpace, ...], path: str) -> DiskSpace | None:
    """The measured directory nearest above ``path`` (the longest one that contains it)."""
    best: DiskSpace | None = None
    for disk in disks:
        inside = disk.directory == "/" or path == disk.directory or path.startswith(disk.directory.rstrip("/") + "/")
        if inside and (best is None or len(disk.directory) > len(best.directory)):
            best = disk
    return best


class DistributionFacts(Protocol):
    """What every distribution's facts (``K3sFacts``, ``KubeadmFacts``) tell about a host."""

    @property
    def installed(self) -> bool: ...

    @property
    def role(self) -> str | None: ...


@dataclass(frozen=True)
class HostFacts:
    """Everything the planner needs to know about one host."""

    name: str
    os: OSInfo
    arch: str
    kernel: str
    memory_mib: int
    cpus: int
    systemd: bool
    hostname: str
    machine_id: str
    user: str
    tools: frozenset[str] = frozenset()
    kubernetes: frozenset[str] = frozenset()  # Kubernetes installs found: "k3s", "kubeadm"
    dist: DistributionFacts | None = None  # the distribution's own facts (K3sFacts, KubeadmFacts)
    disks: tuple[DiskSpace, ...] = ()  # free space where plans write (empty: not measured)


def parse_host_facts(name: str, values: dict[str, str]) -> HostFacts:
    """Build ``HostFacts`` from the fact script's output (distribution facts parsed separately)."""

    def number(key: str) -> int:
        try:
            return int(values.get(key, "0") or 0)
        except ValueError:
            return 0

    return HostFacts(
        name=name,
        os=OSInfo(
            id=values.get("os.id", "unknown"),
            id_like=tuple(values.get("os.id_like", "").split()),
            version_id=values.get("os.version_id", ""),
            pretty_name=values.get("os.pretty_name", ""),
        ),
        arch=values.get("arch", ""),
        kernel=values.get("kernel", ""),
        memory_mib=number("mem_kib") // 1024,
        cpus=number("cpus"),
        systemd=values.get("systemd") == "yes",
        hostname=values.get("hostname", ""),
        machine_id=values.get("machine_id", ""),
        user=values.get("user", ""),
        tools=frozenset(k.split(".", 1)[1] for k, v in values.items() if k.startswith("tool.") and v == "yes"),
        kubernetes=frozenset(k.split(".", 1)[1] for k, v in values.items() if k.startswith("kubernetes.") and v == "yes"),
        disks=parse_disk_space(values),
    )
