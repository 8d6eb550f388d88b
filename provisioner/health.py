"""Host health facts for ``check``: clock, disk and memory headroom, read once per host with one
command (``health_script``) and parsed by a pure function (``parse_health``).

The clock is read first thing, so it falls between the moments this machine sent the command and
got the answer: the host's offset from this machine is known to within half that round trip, and
two hosts' offsets can be compared although they were read at different moments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import combinations

from provisioner.checks import CheckResult, failed, ok

#: The file systems whose free space is checked (/var/lib holds the images and the datastore).
PATHS = ("/", "/var/lib")


def health_script(admin_kubeconfig: str) -> str:
    """Shell lines printing ``key=value`` health facts (run as root); the clock first."""
    return rf"""export LC_ALL=C
echo "clock=$(date +%s.%N)"
for p in {" ".join(PATHS)}; do
  df -P -k "$p" 2>/dev/null | awk -v p="$p" 'NR==2 {{print "disk." p "=" $2 " " $4 " " $6}}'
done
awk '/^MemTotal:/ {{print "mem.total_kib=" $2}} /^MemAvailable:/ {{print "mem.available_kib=" $2}}' /proc/meminfo
[ -f {admin_kubeconfig} ] && echo admin_kubeconfig=yes
true
"""


@dataclass(frozen=True)
class Disk:
    """Free space of the file system holding ``path`` (df's size and space available to users)."""

    path: str
    mount: str
    size_kib: int
    available_kib: int

    @property
    def free_percent(self) -> float:
        return 100.0 * self.available_kib / self.size_kib if self.size_kib else 0.0


@dataclass(frozen=True)
class HostHealth:
    """One host's clock (as an offset from this machine's), disks and memory."""

    name: str
    clock_offset: float | None  # host clock minus this machine's, seconds; None = not read
    clock_uncertainty: float  # half the round trip: the offset is known to ± this
    disks: tuple[Disk, ...]
    memory_total_kib: int
    memory_available_kib: int
    admin_kubeconfig: bool

    @property
    def memory_percent(self) -> float:
        return 100.0 * self.memory_available_kib / self.memory_total_kib if self.memory_total_kib else 0.0


def parse_health(name: str, values: Mapping[str, str], *, sent: float, received: float) -> HostHealth:
    """``HostHealth`` from the script's ``key=value`` output and this machine's clock (epoch
    seconds) when the command was sent and its answer received."""

    def number(key: str) -> int:
        try:
            return int(values.get(key, "0") or 0)
        except ValueError:
            return 0

    try:
        clock: float | None = float(values["clock"])
    except (KeyError, ValueError):
        clock = None
    disks = []
    for path in PATHS:
        fields = values.get(f"disk.{path}", "").split()
        if len(fields) == 3 and fields[0].isdigit() and fields[1].isdigit():
            disks.append(Disk(path, fields[2], int(fields[0]), int(fields[1])))
    return HostHealth(
        name=name,
        clock_offset=None if clock is None else clock - (sent + received) / 2,
        clock_uncertainty=max(0.0, received - sent) / 2,
        disks=tuple(disks),
        memory_total_kib=number("mem.total_kib"),
        memory_available_kib=number("mem.available_kib"),
        admin_kubeconfig=values.get("admin_kubeconfig") == "yes",
    )


def clock_check(health: Mapping[str, HostHealth], bound: float) -> CheckResult:
    """The hosts' clocks are within ``bound`` seconds of each other. A pair fails only when the
    measured difference exceeds the bound by more than the measurement's uncertainty."""
    name = "clocks"
    read = [h for h in health.values() if h.clock_offset is not None]
    unread = [h.name for h in health.values() if h.clock_offset is None]
    if unread:
        return failed(name, "could not read the clock of " + ", ".join(unread))
    if len(read) < 2:
        return ok(name, f"one host; its clock is {_offset(read[0])} this machine's" if read else "no host answered")
    pairs = []
    for a, b in combinations(read, 2):
        assert a.clock_offset is not None and b.clock_offset is not None
        pairs.append((abs(a.clock_offset - b.clock_offset), a.clock_uncertainty + b.clock_uncertainty, a, b))
    worst = max(pairs, key=lambda p: p[0] - p[1])
    spread, uncertainty, a, b = worst
    ahead, behind = (a, b) if (a.clock_offset or 0) >= (b.clock_offset or 0) else (b, a)
    text = f"{ahead.name} is {spread:.2f} s (± {uncertainty:.2f} s) ahead of {behind.name}"
    if spread - uncertainty > bound:
        return failed(
            name,
            f"{text}; the bound is {bound:g} s (certificates and leases start failing there): "
            "synchronise the clocks (chrony, systemd-timesyncd)",
        )
    return ok(name, f"within {bound:g} s of each other (largest difference: {text})")


def _offset(h: HostHealth) -> str:
    offset = h.clock_offset or 0.0
    return f"{abs(offset):.2f} s {'ahead of' if offset >= 0 else 'behind'}"


def _gib(kib: int) -> str:
    return f"{kib / 1024 / 1024:.1f}"


def headroom_check(health: HostHealth, min_free_percent: float) -> CheckResult:
    """Free space on / and /var/lib and available memory, each at least ``min_free_percent``."""
    name = f"headroom {health.name}"
    parts: list[str] = []
    low: list[str] = []
    seen: dict[str, str] = {}
    for disk in health.disks:
        if disk.mount in seen:
            parts.append(f"{disk.path} on {seen[disk.mount]}'s file system")
            continue
        seen[disk.mount] = disk.path
        text = f"{disk.path} {disk.free_percent:.0f}% free ({_gib(disk.available_kib)} of {_gib(disk.size_kib)} GiB)"
        parts.append(text)
        if disk.free_percent < min_free_percent:
            low.append(text)
    if not health.disks:
        low.append("disk space of / could not be read")
    memory = f"memory {health.memory_percent:.0f}% available ({_gib(health.memory_available_kib)} of {_gib(health.memory_total_kib)} GiB)"
    parts.append(memory)
    if health.memory_percent < min_free_percent:
        low.append(memory)
    if low:
        return failed(name, f"below {min_free_percent:g}%: " + "; ".join(low))
    return ok(name, "; ".join(parts))
