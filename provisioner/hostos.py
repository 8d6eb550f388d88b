"""Host operating systems: what differs between the Debian family and the RHEL family.

One ``HostOS`` is chosen per host from its facts (``for_facts``); distributions ask it for package
commands, repository files and OS-specific preparation instead of testing the OS themselves.
"""

from __future__ import annotations

import shlex
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from provisioner import templates
from provisioner.facts import HostFacts

APT = "DEBIAN_FRONTEND=noninteractive apt-get -q -o Dpkg::Options::=--force-confold"


@dataclass(frozen=True)
class RhelFacts:
    """SELinux and firewalld as the RHEL family's fact lines report them (empty elsewhere)."""

    selinux: str = ""  # getenforce: Enforcing | Permissive | Disabled
    selinux_config: str = ""  # SELINUX= in /etc/selinux/config
    firewalld: str = ""  # systemctl is-active firewalld
    firewalld_ports: frozenset[str] = frozenset()

    @property
    def selinux_enforcing(self) -> bool:
        return self.selinux == "Enforcing" or self.selinux_config == "enforcing"


def parse_rhel_facts(values: dict[str, str]) -> RhelFacts:
    """The RHEL family's fact lines (``selinux=``, ``firewalld=``…) into ``RhelFacts``."""
    return RhelFacts(
        selinux=values.get("selinux", ""),
        selinux_config=values.get("selinux.config", ""),
        firewalld=values.get("firewalld", ""),
        firewalld_ports=frozenset(values.get("firewalld.ports", "").split()),
    )


def parse_package_facts(values: dict[str, str]) -> tuple[dict[str, str], frozenset[str]]:
    """Installed package versions (``pkg.<name>=``) and held packages (``held=``), either family."""
    packages = {k[4:]: v for k, v in values.items() if k.startswith("pkg.") and v}
    return packages, frozenset(values.get("held", "").split())


@dataclass(frozen=True)
class PackageRepo:
    """A package repository to configure: files to write and a command that fetches its key."""

    files: dict[str, str]  # path -> content
    key_command: str  # run when the key file is missing; "" if none
    key_path: str


class HostOS(ABC):
    """Package management and OS preparation for one family of distributions."""

    family: ClassVar[str]
    #: The file kubelet reads KUBELET_EXTRA_ARGS from.
    kubelet_defaults: ClassVar[str]
    #: Where the Kubernetes repository definition lives.
    kubernetes_repo_file: ClassVar[str]
    #: The containerd package name.
    containerd_package: ClassVar[str]

    @staticmethod
    @abstractmethod
    def package_facts_script() -> str:
        """Shell printing ``pkg.<name>=<version>`` for installed packages and ``held=<names>``."""

    @abstractmethod
    def kubernetes_repo(self, url: str) -> PackageRepo:
        """The pkgs.k8s.io repository at ``url`` (one minor version per repository)."""

    @abstractmethod
    def install(self, packages: list[str], *, refresh: bool = True) -> str:
        """Command installing ``packages`` (``name`` or ``name=version``-style from ``pin``)."""

    @abstractmethod
    def pin(self, name: str, version: str | None) -> str:
        """A package spec for ``install``: the newest, or this upstream version (e.g. 1.31.4)."""

    @abstractmethod
    def hold(self, packages: list[str]) -> str:
        """Command keeping ``packages`` at their installed version on system upgrades."""

    #: The package that provides each command kubeadm's preflight looks for (None: not shipped).
    preflight_packages: ClassVar[dict[str, str | None]]

    @abstractmethod
    def unhold(self, packages: list[str]) -> str:
        """Command releasing ``packages`` from ``hold`` (already released: a no-op)."""

    def containerd_setup(self) -> str:
        """Commands (if any) that make the containerd package installable."""
        return ""

    def prepare_steps(self, facts: RhelFacts, role: str) -> list[tuple[str, str, str]]:
        """OS-specific preparation still needed: (title, reason, command) triples."""
        return []


class DebianFamily(HostOS):
    """Debian, Ubuntu and derivatives: apt, signed-by keyrings, apt-mark hold."""

    family = "debian"
    kubelet_defaults = "/etc/default/kubelet"
    kubernetes_repo_file = "/etc/apt/sources.list.d/kubernetes.list"
    containerd_package = "containerd"
    preflight_packages: ClassVar[dict[str, str | None]] = {
        "conntrack": "conntrack",
        "iptables": "iptables",
        "socat": "socat",
        "ethtool": "ethtool",
        "ebtables": "ebtables",
    }

    @staticmethod
    def package_facts_script() -> str:
        return (
            "for p in kubelet kubeadm kubectl containerd containerd.io; do\n"
            "  v=$(dpkg-query -W -f='${Status} ${Version}' \"$p\" 2>/dev/null | awk '$3==\"installed\" {print $4}')\n"
            '  [ -n "$v" ] && echo "pkg.$p=$v"\n'
            "done\n"
            "echo \"held=$(apt-mark showhold 2>/dev/null | tr '\\n' ' ')\"\n"
        )

    def kubernetes_repo(self, url: str) -> PackageRepo:
        key = "/etc/apt/keyrings/kubernetes-apt-keyring.asc"
        return PackageRepo(
            files={self.kubernetes_repo_file: templates.render("hostos/kubernetes.list.j2", url=url, key=key)},
            key_command=(
                f"install -d -m 0755 /etc/apt/keyrings && "
                f"curl -fsSL {shlex.quote(url + 'Release.key')} -o {key}.tmp && mv -f {key}.tmp {key} && chmod 0644 {key}"
            ),
            key_path=key,
        )

    def install(self, packages: list[str], *, refresh: bool = True) -> str:
        update = f"{APT} update && " if refresh else ""
        return f"{update}{APT} install -y --no-install-recommends {' '.join(shlex.quote(p) for p in packages)}"

    def pin(self, name: str, version: str | None) -> str:
        return name if version is None else f"{name}={version}-*"

    def hold(self, packages: list[str]) -> str:
        return f"apt-mark hold {' '.join(packages)} >/dev/null"

    def unhold(self, packages: list[str]) -> str:
        return f"apt-mark unhold {' '.join(packages)} >/dev/null"


class RhelFamily(HostOS):
    """RHEL, Rocky, Alma, CentOS Stream, Fedora: dnf, versionlock, SELinux, firewalld."""

    family = "rhel"
    kubelet_defaults = "/etc/sysconfig/kubelet"
    kubernetes_repo_file = "/etc/yum.repos.d/kubernetes.repo"
    containerd_package = "containerd.io"
    #: containerd is not in the RHEL family's own repositories; Docker's repository ships it.
    docker_repo = "https://download.docker.com/linux/centos/docker-ce.repo"
    #: iptables is "iptables" on EL8 and "iptables-nft" on EL9 and Fedora: dnf installs whichever
    #: provides the file. EL9 ships no ebtables package (kubeadm only warns about it).
    preflight_packages: ClassVar[dict[str, str | None]] = {
        "conntrack": "conntrack-tools",
        "iptables": "/usr/sbin/iptables",
        "socat": "socat",
        "ethtool": "ethtool",
        "ebtables": None,
    }

    # Ports from the Kubernetes documentation; 8472/udp is Flannel's VXLAN.
    PORTS: ClassVar[dict[str, list[str]]] = {
        "server": ["6443/tcp", "2379-2380/tcp", "10250/tcp", "10257/tcp", "10259/tcp", "8472/udp"],
        "agent": ["10250/tcp", "10256/tcp", "30000-32767/tcp", "8472/udp"],
    }

    @staticmethod
    def package_facts_script() -> str:
        return (
            "for p in kubelet kubeadm kubectl containerd containerd.io; do\n"
            '  v=$(rpm -q --qf \'%{VERSION}-%{RELEASE}\' "$p" 2>/dev/null) && echo "pkg.$p=$v"\n'
            "done\n"
            "echo \"held=$(dnf -q versionlock list 2>/dev/null | sed -E 's/^([a-z.-]+)-[0-9].*/\\1/' | tr '\\n' ' ')\"\n"
            'command -v getenforce >/dev/null && echo "selinux=$(getenforce)"\n'
            "echo \"selinux.config=$(sed -n 's/^SELINUX=//p' /etc/selinux/config 2>/dev/null)\"\n"
            'echo "firewalld=$(systemctl is-active firewalld 2>/dev/null)"\n'
            'systemctl -q is-active firewalld 2>/dev/null && echo "firewalld.ports=$(firewall-cmd --list-ports 2>/dev/null)"\n'
        )

    def kubernetes_repo(self, url: str) -> PackageRepo:
        return PackageRepo(
            files={self.kubernetes_repo_file: templates.render("hostos/kubernetes.repo.j2", url=url)},
            key_command="",
            key_path="",
        )

    def install(self, packages: list[str], *, refresh: bool = True) -> str:
        return f"dnf install -y --disableexcludes=kubernetes {' '.join(shlex.quote(p) for p in packages)}"

    def pin(self, name: str, version: str | None) -> str:
        return name if version is None else f"{name}-{version}"

    def hold(self, packages: list[str]) -> str:
        return (
            "{ dnf -q versionlock list >/dev/null 2>&1 || dnf install -y 'dnf-command(versionlock)'; } && "
            f"dnf versionlock add {' '.join(packages)}"
        )

    def unhold(self, packages: list[str]) -> str:
        return f"{{ dnf -q versionlock delete {' '.join(packages)} >/dev/null 2>&1 || true; }}"

    def containerd_setup(self) -> str:
        return f"test -f /etc/yum.repos.d/docker-ce.repo || curl -fsSL {self.docker_repo} -o /etc/yum.repos.d/docker-ce.repo"

    def prepare_steps(self, facts: RhelFacts, role: str) -> list[tuple[str, str, str]]:
        steps = []
        if facts.selinux_enforcing:
            steps.append(
                (
                    "SELinux permissive",
                    f"SELinux is {facts.selinux or facts.selinux_config}",
                    "{ command -v setenforce >/dev/null && setenforce 0 || true; } && "
                    "sed -i.provisioner-backup 's/^SELINUX=enforcing$/SELINUX=permissive/' /etc/selinux/config",
                )
            )
        if facts.firewalld == "active":
            missing = [p for p in self.PORTS[role] if p not in facts.firewalld_ports]
            if missing:
                adds = " ".join(f"--add-port={p}" for p in missing)
                steps.append(
                    (
                        "firewalld ports",
                        f"firewalld is active and {', '.join(missing)} are not open",
                        f"firewall-cmd --permanent {adds} && firewall-cmd --reload",
                    )
                )
        return steps


FAMILIES: dict[str, type[HostOS]] = {"debian": DebianFamily, "rhel": RhelFamily}


def for_facts(facts: HostFacts) -> HostOS | None:
    """The HostOS for a host, or None for an OS family the provisioner does not drive."""
    cls = FAMILIES.get(facts.os.family)
    return cls() if cls else None


def package_facts_script() -> str:
    """Package facts for whichever family the host turns out to be (probed by its tools)."""
    return (
        "if command -v dpkg-query >/dev/null 2>&1; then\n"
        + DebianFamily.package_facts_script()
        + "elif command -v rpm >/dev/null 2>&1; then\n"
        + RhelFamily.package_facts_script()
        + "fi\n"
    )
