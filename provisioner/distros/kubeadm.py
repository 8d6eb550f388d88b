"""kubeadm + Flannel: upstream Kubernetes the way the kubeadm guides build it, step by step.

Every host gets the same preparation — kernel modules, sysctls, swap off, (RHEL family: SELinux
permissive, firewalld ports), containerd with the systemd cgroup driver, the pkgs.k8s.io
repository, kubelet/kubeadm/kubectl held at the chosen version, kubelet flags — each step run only
when the facts say it is missing or different. Then the first control plane runs ``kubeadm init``,
Flannel is applied, and workers ``kubeadm join`` with a bootstrap token made for this run, handed
over in a 0600 JoinConfiguration file. OS differences come from ``provisioner.hostos``.

A stacked control plane of several servers (an etcd member on each) needs ``cluster.api_endpoint``
as ``controlPlaneEndpoint``. The first server runs ``kubeadm init --upload-certs``: kubeadm stores
the shared CAs and keys in the kube-system Secret ``kubeadm-certs``, encrypted (AES-GCM) with a
certificate key that ``kubeadm certs certificate-key`` made on that server, and deletes the Secret
after two hours (kubernetes/kubernetes cmd/kubeadm/app/phases/copycerts: the Secret is owned by a
bootstrap token with the 2 h ``DefaultCertTokenDuration``). The other control planes join one at a
time, before the workers, with the certificate key and a fresh bootstrap token in their 0600
JoinConfiguration (removed after the join). Joining a running cluster re-uploads the certificates
first (``kubeadm init phase upload-certs``), since the Secret of the init may have expired.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING

from provisioner import hostos, templates
from provisioner.distros.base import ClusterState, Distribution, sha256_text
from provisioner.errors import HostError, ProvisionerError
from provisioner.inventory import Host, KubeadmCluster, is_ip
from provisioner.nodes import NodeListing, parse_node_list
from provisioner.steps import (
    Action,
    ClusterPlan,
    Command,
    HostPlan,
    Operation,
    Placeholder,
    ReadValue,
    Step,
    Upload,
)

if TYPE_CHECKING:
    from provisioner.facts import HostFacts
    from provisioner.remote import Remote

ADMIN_CONF = "/etc/kubernetes/admin.conf"
KUBELET_CONF = "/etc/kubernetes/kubelet.conf"
WORKDIR = "/etc/kubernetes/provisioner"
INIT_CONFIG = f"{WORKDIR}/kubeadm-init.yaml"
JOIN_CONFIG = f"{WORKDIR}/kubeadm-join.yaml"
FLANNEL_MANIFEST = f"{WORKDIR}/kube-flannel.yaml"
CONTAINERD_CONFIG = "/etc/containerd/config.toml"
MODULES_FILE = "/etc/modules-load.d/k8s.conf"
SYSCTL_FILE = "/etc/sysctl.d/99-kubernetes.conf"
SYSCTLS = ("net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables", "net.ipv4.ip_forward")
KUBE_PACKAGES = ["kubelet", "kubeadm", "kubectl"]
#: Commands kubeadm's preflight looks for in PATH that a minimal host may lack (kubernetes/kubernetes
#: cmd/kubeadm/app/preflight/checks_linux.go, addExecChecks): conntrack is an [ERROR] before
#: Kubernetes 1.32, iptables always (with ip, mount, nsenter, which every system has); ebtables,
#: ethtool and socat are warnings, but kube-proxy and port-forward use them.
PREFLIGHT_COMMANDS = ("conntrack", "iptables", "socat", "ethtool", "ebtables")
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
FLANNEL_IMAGE = "docker.io/flannel/flannel:{version}"
# The CNI plugin image released together with Flannel v0.26.1.
FLANNEL_CNI_PLUGIN_IMAGE = "docker.io/flannel/flannel-cni-plugin:v1.5.1-flannel2"
ARCHES = {"x86_64", "aarch64", "ppc64le", "s390x"}
MIN_CPUS = 2
MIN_MEMORY_MIB = 1700  # kubeadm's preflight minimum for control planes
PACKAGE_TIMEOUT = 900  # package installs and downloads
#: Disk space package installs take, estimated (downloads, unpacked files, dpkg/rpm state):
#: 300 MB in all for containerd and kubelet + kubeadm + kubectl, counted against /var/lib.
PACKAGES_DIR = "/var/lib"
CONTAINERD_SPACE = 150 * 1000 * 1000
KUBE_PACKAGES_SPACE = 150 * 1000 * 1000
BOOTSTRAP_TOKEN = Placeholder("kubeadm-bootstrap-token", "<bootstrap token from the first control plane>")
CA_HASH = Placeholder("kubeadm-ca-hash", "<CA hash of the first control plane>", secret=False)
KUBEADM_VERSION = Placeholder("kubeadm-version", "<version of the installed kubeadm>", secret=False)
#: The AES key (64 hex digits) of the kubeadm-certs Secret: made on the first control plane by
#: `kubeadm certs certificate-key`, read back over SSH, written only into 0600 config files.
CERT_KEY = Placeholder("kubeadm-certificate-key", "<certificate key of the kubeadm-certs Secret>")
UPLOAD_CERTS_CONFIG = f"{WORKDIR}/kubeadm-upload-certs.yaml"
WATCHED_FILES = (
    MODULES_FILE,
    SYSCTL_FILE,
    CONTAINERD_CONFIG,
    "/etc/default/kubelet",
    "/etc/sysconfig/kubelet",
    "/etc/apt/sources.list.d/kubernetes.list",
    "/etc/yum.repos.d/kubernetes.repo",
)


@dataclass(frozen=True)
class KubeadmFacts:
    """What a host looks like to kubeadm."""

    packages: dict[str, str] = field(default_factory=dict)  # name -> installed version
    held: frozenset[str] = frozenset()
    containerd_version: str | None = None
    services: dict[str, str] = field(default_factory=dict)  # containerd/kubelet -> is-active
    files: dict[str, str] = field(default_factory=dict)  # path -> sha256
    repo_key: bool = False
    admin_conf: bool = False
    kubelet_conf: bool = False
    modules: frozenset[str] = frozenset()  # loaded: overlay, br_netfilter
    sysctls: dict[str, str] = field(default_factory=dict)
    swap_devices: int = 0
    fstab_swap: int = 0
    #: Which of PREFLIGHT_COMMANDS the host has in root's PATH.
    commands: frozenset[str] = frozenset()
    #: What only the RHEL family reports (SELinux, firewalld); empty on Debian hosts.
    os_facts: hostos.RhelFacts = field(default_factory=lambda: hostos.RhelFacts())

    @property
    def installed(self) -> bool:
        """Part of a cluster: a worker has kubelet.conf; a control plane also admin.conf."""
        return self.kubelet_conf or self.admin_conf

    @property
    def role(self) -> str | None:
        if self.admin_conf:
            return "server"
        return "agent" if self.kubelet_conf else None

    @property
    def containerd_generation(self) -> int | None:
        """containerd's major version (1 or 2), which decides the config layout."""
        match = re.match(r"v?(\d+)\.", self.containerd_version or "")
        return int(match.group(1)) if match else None


def version_matches(installed: str, wanted: str) -> bool:
    """An installed package version (1.31.4-1.1) against "1.31" (any patch) or "1.31.4"."""
    upstream = installed.split("-", 1)[0].split("+", 1)[0]
    if wanted.count(".") == 1:
        return upstream.startswith(wanted + ".")
    return upstream == wanted


class KubeadmPreflightError(HostError):
    """kubeadm's own preflight refused the host; its [ERROR …] lines are kept verbatim."""

    def __init__(self, host: str, command: str, errors: list[str]) -> None:
        self.errors = errors
        super().__init__(host, f"kubeadm {command} preflight found {len(errors)} error(s); nothing was changed by kubeadm")

    def lines(self) -> list[str]:
        return [str(self)] + [f"  {line}" for line in self.errors]


class Kubeadm(Distribution):
    """Upstream Kubernetes with kubeadm, containerd and Flannel."""

    name = "kubeadm"
    admin_kubeconfig = ADMIN_CONF

    @property
    def cluster(self) -> KubeadmCluster:
        """The inventory's cluster settings, typed as this distribution's model."""
        return self.inventory.cluster_as(KubeadmCluster)

    # --- facts ------------------------------------------------------------------------------
    def fact_script(self) -> str:
        files = " ".join(WATCHED_FILES)
        return (
            "grep -qw overlay /proc/filesystems && echo module.overlay=yes\n"
            "[ -d /proc/sys/net/bridge ] && echo module.br_netfilter=yes\n"
            + "".join(f'echo "sysctl.{k}=$(sysctl -n {k} 2>/dev/null)"\n' for k in SYSCTLS)
            + "echo \"swap.devices=$(awk 'NR>1' /proc/swaps | wc -l)\"\n"
            'echo "swap.fstab=$(awk \'!/^[[:space:]]*#/ && $3=="swap"\' /etc/fstab 2>/dev/null | wc -l)"\n'
            f'for f in {files}; do [ -f "$f" ] && echo "file:$f=$(sha256sum "$f" | cut -d\' \' -f1)"; done\n'
            "[ -s /etc/apt/keyrings/kubernetes-apt-keyring.asc ] && echo key.kubernetes=yes\n"
            "command -v containerd >/dev/null 2>&1 && echo \"containerd.version=$(containerd --version 2>/dev/null | awk '{print $3}')\"\n"
            'for s in containerd kubelet; do echo "service.$s=$(systemctl is-active $s 2>/dev/null)"; done\n'
            f"echo \"commands=$(for c in {' '.join(PREFLIGHT_COMMANDS)}; do command -v $c >/dev/null 2>&1 && printf '%s ' $c; done)\"\n"
            f"[ -f {ADMIN_CONF} ] && echo kubeadm.admin_conf=yes\n"
            f"[ -f {KUBELET_CONF} ] && echo kubeadm.kubelet_conf=yes\n" + hostos.package_facts_script() + "true\n"
        )

    def parse_facts(self, values: dict[str, str]) -> KubeadmFacts:
        def count(key: str) -> int:
            try:
                return int(values.get(key, "0").strip() or 0)
            except ValueError:
                return 0

        packages, held = hostos.parse_package_facts(values)
        return KubeadmFacts(
            packages=packages,
            held=held,
            containerd_version=values.get("containerd.version") or None,
            services={k[8:]: v for k, v in values.items() if k.startswith("service.")},
            files={k[5:]: v for k, v in values.items() if k.startswith("file:")},
            repo_key=values.get("key.kubernetes") == "yes",
            admin_conf=values.get("kubeadm.admin_conf") == "yes",
            kubelet_conf=values.get("kubeadm.kubelet_conf") == "yes",
            modules=frozenset(k[7:] for k, v in values.items() if k.startswith("module.") and v == "yes"),
            sysctls={k[7:]: v for k, v in values.items() if k.startswith("sysctl.")},
            commands=frozenset(values.get("commands", "").split()),
            swap_devices=count("swap.devices"),
            fstab_swap=count("swap.fstab"),
            os_facts=hostos.parse_rhel_facts(values),
        )

    def check_hosts(self, facts: dict[str, HostFacts]) -> list[str]:
        problems = []
        for host in self.inventory.hosts:
            f = facts[host.name]
            k = kubeadm_facts(f)
            if hostos.for_facts(f) is None:
                problems.append(f"{host.name}: {f.os.pretty_name or f.os.id} is not supported (Debian/Ubuntu or the RHEL family)")
            if not f.systemd:
                problems.append(f"{host.name}: systemd is not running; kubelet and containerd are systemd services")
            if f.arch not in ARCHES:
                problems.append(f"{host.name}: architecture {f.arch!r} has no Kubernetes packages ({', '.join(sorted(ARCHES))})")
            if host.role == "server" and (f.cpus < MIN_CPUS or f.memory_mib < MIN_MEMORY_MIB):
                problems.append(
                    f"{host.name}: a kubeadm control plane needs at least {MIN_CPUS} CPUs and {MIN_MEMORY_MIB} MB of "
                    f"memory; it has {f.cpus} CPU(s) and {f.memory_mib} MB"
                )
            if f.os.family == "debian" and not k.repo_key and "curl" not in f.tools:
                problems.append(f"{host.name}: curl is needed to fetch the Kubernetes repository key; install it")
            if "k3s" in f.kubernetes:
                problems.append(f"{host.name}: runs k3s; remove it (k3s-uninstall.sh or k3s-agent-uninstall.sh) before installing kubeadm")
            if k.role is not None and k.role != host.role:
                what = "a control plane" if k.role == "server" else "a worker"
                problems.append(
                    f"{host.name}: is already {what} but the inventory says {host.role}; changing roles needs "
                    "`kubeadm reset -f` on it first"
                )
        return problems + self.upgrade_problems(facts)

    def host_warnings(self, facts: dict[str, HostFacts]) -> list[str]:
        return []

    def upgrade_problems(self, facts: dict[str, HostFacts]) -> list[str]:
        """kubeadm upgrades one minor at a time and never down: a host two minors behind the
        inventory, or ahead of it, is refused with the path to take."""
        wanted = parse_version(self.cluster.version or "")
        if wanted is None:
            return []
        problems = []
        for host in self.inventory.hosts:
            k = kubeadm_facts(facts[host.name])
            installed = parse_version(k.packages.get("kubelet", "")) if k.installed else None
            if installed is None:
                continue
            if wanted[:2] < installed[:2] or (len(wanted) == 3 and wanted < installed):
                problems.append(
                    f"{host.name}: runs Kubernetes {_dotted(installed)}; the inventory wants {_dotted(wanted)}, a downgrade, "
                    "which kubeadm does not do (set the version back, or rebuild with `provisioner reset`)"
                )
            elif wanted[1] > installed[1] + 1 or wanted[0] != installed[0]:
                path = " → ".join(f"{installed[0]}.{m}" for m in range(installed[1], wanted[1] + 1))
                problems.append(
                    f"{host.name}: runs Kubernetes {_dotted(installed)}; kubeadm upgrades one minor at a time: "
                    f"{path} (set version to {installed[0]}.{installed[1] + 1} first, run up, then the next)"
                )
        return problems

    # --- cluster state ---------------------------------------------------------------------------
    def kubectl(self, args: str) -> str:
        return f"kubectl --kubeconfig {ADMIN_CONF} {args}"

    system_daemonsets = (("kube-flannel", "kube-flannel-ds"),)

    def list_nodes(self, remote: Remote, *, timeout: float = 30) -> NodeListing:
        """The nodes as this control plane's own API server lists them (127.0.0.1, its serving
        certificate checked for the name "kubernetes", which kubeadm always puts in it), not
        through admin.conf's controlPlaneEndpoint: with several control planes a stopped one
        says so (connection refused) instead of answering for the endpoint, and the others
        answer while the endpoint's machine is down."""
        local = f"--server https://127.0.0.1:{self.api_port} --tls-server-name kubernetes"
        result = remote.sudo(self.kubectl(f"{local} get nodes -o json"), check=False, timeout=timeout)
        if not result.ok:
            return NodeListing(None, (result.stderr.strip().splitlines() or ["no output"])[-1])
        return NodeListing(parse_node_list(result.stdout))

    def version_problem(self, kubelet_version: str) -> str | None:
        """The inventory's "1.31" matches any patch release, "1.31.4" only that one."""
        wanted = (self.cluster.version or "").lstrip("v")
        if not wanted or version_matches(kubelet_version.lstrip("v"), wanted):
            return None
        return f"runs {kubelet_version or 'an unknown version'}, the inventory wants {wanted}"

    def read_state(self, remote: Remote, init_server: Host) -> ClusterState:
        state = ClusterState(init_server=init_server, nodes=self.list_nodes(remote).nodes)
        result = remote.sudo(self.kubectl("get daemonset kube-flannel-ds -n kube-flannel -o json"), check=False, timeout=30)
        if result.ok:
            annotations = json.loads(result.stdout).get("metadata", {}).get("annotations") or {}
            state.addons["flannel"] = annotations.get("provisioner.io/manifest-sha256", "")
        else:
            state.addons["flannel"] = None
        return state

    # --- rendered files ----------------------------------------------------------------------------
    @property
    def minor(self) -> str:
        version = (self.cluster.version or "").lstrip("v")
        return ".".join(version.split(".")[:2])

    def package_repo(self, os: hostos.HostOS) -> str:
        """The repository URL: the inventory's mirror, or pkgs.k8s.io for the minor and OS family."""
        if self.cluster.package_repo:
            url = self.cluster.package_repo
            return url if url.endswith("/") else url + "/"
        kind = "deb" if os.family == "debian" else "rpm"
        return f"https://pkgs.k8s.io/core:/stable:/v{self.minor}/{kind}/"

    def api_version(self) -> str:
        """kubeadm's config API: v1beta4 from Kubernetes 1.31 on, v1beta3 before."""
        major, minor = (int(x) for x in self.minor.split("."))
        return "v1beta4" if (major, minor) >= (1, 31) else "v1beta3"

    def kubelet_args(self, host: Host) -> dict[str, str]:
        return {"node-ip": host.node_ip} if host.node_ip else {}

    def kubelet_defaults(self, host: Host) -> str:
        extra = " ".join(f"--{k}={v}" for k, v in self.kubelet_args(host).items())
        return templates.render("kubeadm/kubelet-defaults.j2", node_name=host.name, extra_args=extra)

    def containerd_config(self, generation: int) -> str:
        name = "kubeadm/containerd-2.x.toml.j2" if generation >= 2 else "kubeadm/containerd-1.x.toml.j2"
        return templates.render(name, pause_image=PAUSE_IMAGE)

    @property
    def stacked(self) -> bool:
        """More than one control plane: certificates are shared through the kubeadm-certs Secret."""
        return len(self.inventory.servers) > 1

    @staticmethod
    def advertise_address(host: Host) -> str | None:
        """The address the host's API server advertises: node_ip, or an IP address to reach it
        (kubeadm picks the default route's address when none is given)."""
        return host.node_ip or (host.address if is_ip(host.address) else None)

    def init_config(self, host: Host, kubernetes_version: str, certificate_key: str | None = None) -> str:
        """The InitConfiguration (with ``certificate_key``, the text to put in it, when the
        control plane is stacked), ClusterConfiguration and KubeletConfiguration."""
        cluster = self.cluster
        advertise = self.advertise_address(host)
        sans: list[str] = []
        for san in (cluster.api_endpoint, host.address, host.node_ip):
            if san and san not in sans:
                sans.append(san)
        return templates.render(
            "kubeadm/init.yaml.j2",
            cluster_name=cluster.name,
            node_name=host.name,
            api_version=self.api_version(),
            api_port=self.api_port,
            advertise_address=advertise,
            kubelet_args=self.kubelet_args(host),
            kubernetes_version=kubernetes_version,
            control_plane_endpoint=self.api_host_port(host),
            pod_network_cidr=cluster.pod_network_cidr,
            service_cidr=cluster.service_cidr,
            cert_sans=sans,
            certificate_key=certificate_key,
        )

    def join_config(
        self, host: Host, init_server: Host, token: str, ca_cert_hashes: tuple[str, ...], certificate_key: str | None = None
    ) -> str:
        """The JoinConfiguration; with ``certificate_key`` the host joins as a control plane
        (``controlPlane``: its advertise address and the key of the kubeadm-certs Secret)."""
        return templates.render(
            "kubeadm/join.yaml.j2",
            cluster_name=self.cluster.name,
            node_name=host.name,
            api_version=self.api_version(),
            api_port=self.api_port,
            control_plane_endpoint=self.api_host_port(init_server),
            token=token,
            ca_cert_hashes=list(ca_cert_hashes),
            kubelet_args=self.kubelet_args(host),
            control_plane=certificate_key is not None,
            advertise_address=self.advertise_address(host),
            certificate_key=certificate_key,
        )

    def upload_certs_config(self, certificate_key: str) -> str:
        """The InitConfiguration `kubeadm init phase upload-certs` reads the key from (a key
        given as a flag would be visible in the process list)."""
        return templates.render(
            "kubeadm/upload-certs.yaml.j2",
            cluster_name=self.cluster.name,
            api_version=self.api_version(),
            certificate_key=certificate_key,
        )

    def flannel_manifest(self) -> tuple[str, str]:
        """The Flannel manifest and its fingerprint (the hash of the rendering without it)."""
        cluster = self.cluster
        ifaces: list[str] = []
        for host in self.inventory.hosts:
            if host.flannel_iface and host.flannel_iface not in ifaces:
                ifaces.append(host.flannel_iface)
        params = dict(
            cluster_name=cluster.name,
            flannel_version=cluster.flannel_version,
            flannel_image=FLANNEL_IMAGE.format(version=cluster.flannel_version),
            cni_plugin_image=FLANNEL_CNI_PLUGIN_IMAGE,
            pod_network_cidr=cluster.pod_network_cidr,
            ifaces=ifaces,
        )
        fingerprint = sha256_text(templates.render("kubeadm/kube-flannel.yaml.j2", manifest_sha256="", **params))
        return templates.render("kubeadm/kube-flannel.yaml.j2", manifest_sha256=fingerprint, **params), fingerprint

    # --- planning ------------------------------------------------------------------------------------
    def plan(self, facts: dict[str, HostFacts], state: ClusterState) -> dict[str, HostPlan]:
        plans = {}
        for host in self.inventory.hosts:
            f = facts[host.name]
            k = kubeadm_facts(f)
            is_init = host.name == state.init_server.name
            steps = self.host_steps(host, f)
            if not k.installed:
                action = Action.INSTALL if is_init else Action.JOIN
                if is_init:
                    steps += [self.images_step(host), self.init_step(host)]
                elif host.role == "server":
                    steps += [self.join_images_step(host), self.join_step(host, state.init_server)]
                else:
                    steps.append(self.join_step(host, state.init_server))
            elif self.needs_upgrade(k):
                action = Action.UPGRADE
                steps += self.upgrade_steps(host, f, first=is_init)
            elif steps:
                action = Action.RECONFIGURE
            else:
                action, restart_reason = self._repair(host, k, state)
                if restart_reason:
                    steps.append(Step("restart kubelet", restart_reason, (Command("systemctl restart kubelet", 120),)))
            reasons = tuple(f"{s.name}: {s.reason}" for s in steps)
            if is_init and action.changes:
                steps.append(self.wait_api_step(host))
            plans[host.name] = HostPlan(host, action, state.init_server, reasons, tuple(steps))
        return plans

    def _repair(self, host: Host, k: KubeadmFacts, state: ClusterState) -> tuple[Action, str]:
        node = state.node(host.name)
        if k.services.get("kubelet") != "active":
            return Action.RESTART, f"kubelet is {k.services.get('kubelet') or 'not running'}"
        if state.nodes is not None and node is None:
            return Action.RESTART, f"kubelet is active but node {host.name} is not registered"
        if node is not None and not node.is_ready and state.addons.get("flannel") is not None:
            why = node.ready_condition.reason if node.ready_condition else "no Ready condition"
            return Action.RESTART, f"node {host.name} is NotReady ({why})"
        return Action.NOTHING, ""

    def host_steps(self, host: Host, f: HostFacts) -> list[Step]:
        """The preparation a host still needs, from its facts, in the order it is applied."""
        k = kubeadm_facts(f)
        os_ = hostos.for_facts(f)
        assert os_ is not None, "unsupported OS families are refused while validating hosts"
        steps: list[Step] = []

        modules = templates.render("kubeadm/modules-k8s.conf.j2")
        missing_modules = sorted({"overlay", "br_netfilter"} - k.modules)
        if missing_modules or k.files.get(MODULES_FILE) != sha256_text(modules):
            ops: list[Operation] = [Upload(MODULES_FILE, modules)]
            if missing_modules:
                ops.append(Command(" && ".join(f"modprobe {m}" for m in missing_modules), 60))
            steps.append(
                Step(
                    "kernel modules",
                    f"{', '.join(missing_modules)} not loaded" if missing_modules else f"{MODULES_FILE} is missing or differs",
                    tuple(ops),
                )
            )

        sysctls = templates.render("kubeadm/sysctl-k8s.conf.j2")
        wrong = [key for key in SYSCTLS if k.sysctls.get(key) != "1"]
        if wrong or k.files.get(SYSCTL_FILE) != sha256_text(sysctls):
            steps.append(
                Step(
                    "sysctls",
                    f"{', '.join(wrong)} not 1" if wrong else f"{SYSCTL_FILE} is missing or differs",
                    (Upload(SYSCTL_FILE, sysctls), Command(f"sysctl -q -p {SYSCTL_FILE}", 60)),
                )
            )

        if k.swap_devices or k.fstab_swap:
            steps.append(
                Step(
                    "swap off",
                    f"{k.swap_devices} swap device(s) active, {k.fstab_swap} swap line(s) in /etc/fstab",
                    (Command(SWAP_OFF, 120),),
                )
            )

        for title, reason, command in os_.prepare_steps(k.os_facts, host.role):
            steps.append(Step(title, reason, (Command(command, PACKAGE_TIMEOUT),)))

        if os_.containerd_package not in k.packages:
            setup = os_.containerd_setup()
            install = os_.install([os_.containerd_package])
            steps.append(
                Step(
                    "install containerd",
                    "containerd is not installed",
                    (Command(f"{setup} && {install}" if setup else install, PACKAGE_TIMEOUT, space=((PACKAGES_DIR, CONTAINERD_SPACE),)),),
                )
            )
        steps += self._containerd_config_steps(k)

        repo = os_.kubernetes_repo(self.package_repo(os_))
        repo_files_differ = any(k.files.get(path) != sha256_text(text) for path, text in repo.files.items())
        if repo_files_differ or (repo.key_path and not k.repo_key):
            repo_ops: list[Operation] = [Upload(p, t) for p, t in repo.files.items()]
            if repo.key_command:
                repo_ops.append(Command(repo.key_command, 120))
            steps.append(
                Step(
                    "Kubernetes package repository",
                    f"{os_.kubernetes_repo_file} is missing or does not point at {self.package_repo(os_)}"
                    if repo_files_differ
                    else "the repository key is missing",
                    tuple(repo_ops),
                )
            )

        steps += self._preflight_tools_step(k, os_)

        wanted = self.cluster.version
        missing = [p for p in KUBE_PACKAGES if p not in k.packages]
        mismatched = (
            []
            if k.installed or not wanted
            else [p for p in KUBE_PACKAGES if p in k.packages and not version_matches(k.packages[p], wanted)]
        )
        unheld = [p for p in KUBE_PACKAGES if p not in k.held]
        if missing or mismatched or unheld:
            exact = wanted if wanted and wanted.count(".") == 2 else None
            specs = [os_.pin(p, exact) for p in KUBE_PACKAGES]
            parts = []
            if missing:
                parts.append(f"{', '.join(missing)} not installed")
            if mismatched:
                parts.append(f"{', '.join(mismatched)} not at {wanted}")
            if unheld and not missing and not mismatched:
                parts.append(f"{', '.join(unheld)} not held")
            command = f"{os_.install(specs)} && {os_.hold(KUBE_PACKAGES)} && systemctl enable kubelet"
            steps.append(
                Step(
                    "kubelet, kubeadm, kubectl",
                    "; ".join(parts),
                    (Command(command, PACKAGE_TIMEOUT, space=((PACKAGES_DIR, KUBE_PACKAGES_SPACE),)),),
                )
            )

        defaults = self.kubelet_defaults(host)
        if k.files.get(os_.kubelet_defaults) != sha256_text(defaults):
            flag_ops: list[Operation] = [Upload(os_.kubelet_defaults, defaults)]
            if k.installed:
                flag_ops.append(Command("systemctl restart kubelet", 120))
            steps.append(Step("kubelet flags", f"{os_.kubelet_defaults} is missing or differs", tuple(flag_ops)))
        return steps

    def _preflight_tools_step(self, k: KubeadmFacts, os_: hostos.HostOS) -> list[Step]:
        """Install the packages of the commands kubeadm's preflight wants that the host lacks
        (the kubelet package only recommends iptables, newer ones no longer pull conntrack).
        Already done: every one of them is in root's PATH (or the family ships no package)."""
        missing = [c for c in PREFLIGHT_COMMANDS if c not in k.commands and os_.preflight_packages.get(c)]
        if not missing:
            return []
        packages = [os_.preflight_packages[c] for c in missing]
        return [
            Step(
                "networking tools for kubeadm",
                f"{', '.join(missing)} not found (kubeadm's preflight looks for them)",
                (Command(os_.install([p for p in packages if p]), PACKAGE_TIMEOUT),),
            )
        ]

    def _containerd_config_steps(self, k: KubeadmFacts) -> list[Step]:
        """containerd's config with the systemd cgroup driver; its layout depends on containerd's
        major version (config version 2 for 1.x, 3 for 2.x).

        Decided here, at plan time: when containerd is installed, its version is a fact and the
        one matching config is uploaded. When it is about to be installed (by the step before),
        its version is not known yet, so the plan ships both candidates next to the config and
        a command picks one by ``containerd --version`` on the host — the choice is data in the
        plan, not a decision made while applying."""
        restart = Command("systemctl enable containerd >/dev/null 2>&1; systemctl restart containerd", 120)
        generation = k.containerd_generation
        if generation is None:
            v1, v2 = f"{CONTAINERD_CONFIG}.provisioner-1.x", f"{CONTAINERD_CONFIG}.provisioner-2.x"
            pick = (
                f"case \"$(containerd --version | awk '{{print $3}}')\" in v1.*|1.*) src={v1};; *) src={v2};; esac && "
                f'cp "$src" {CONTAINERD_CONFIG} && chmod 0644 {CONTAINERD_CONFIG} && rm -f {v1} {v2}'
            )
            return [
                Step(
                    "configure containerd",
                    "containerd is being installed; the config for its version (1.x or 2.x) is chosen on the host",
                    (Upload(v1, self.containerd_config(1)), Upload(v2, self.containerd_config(2)), Command(pick, 60), restart),
                )
            ]
        config = self.containerd_config(generation)
        config_differs = k.files.get(CONTAINERD_CONFIG) != sha256_text(config)
        if not config_differs and k.services.get("containerd") == "active":
            return []
        reason = (
            f"{CONTAINERD_CONFIG} is missing or differs (systemd cgroup driver)"
            if config_differs
            else f"containerd is {k.services.get('containerd') or 'not running'}"
        )
        ops: list[Operation] = [Upload(CONTAINERD_CONFIG, config)] if config_differs else []
        return [Step("configure containerd", reason, (*ops, restart))]

    def _init_config_ops(self, host: Host, *, show: bool, certificate_key: bool = False) -> list[Operation]:
        """The 0600 InitConfiguration upload; with a minor version in the inventory the config
        names the kubeadm version the repository installed, read on the host first. With
        ``certificate_key`` the config carries the key of the kubeadm-certs Secret, made on the
        host first (``kubeadm certs certificate-key``)."""
        version = self.cluster.version or ""
        ops: list[Operation] = []
        fills: tuple[Placeholder, ...] = ()
        if version.count(".") == 2:
            kubernetes_version = f"v{version}"
        else:
            kubernetes_version = KUBEADM_VERSION.text
            fills += (KUBEADM_VERSION,)
            ops.append(
                ReadValue(
                    "kubeadm version -o short",
                    (KUBEADM_VERSION,),
                    _kubeadm_version,
                    "`kubeadm version -o short` did not print a version",
                    timeout=60,
                )
            )
        if certificate_key:
            fills += (CERT_KEY,)
            ops.append(self._certificate_key_read())
        key = CERT_KEY.text if certificate_key else None
        ops.append(Upload(INIT_CONFIG, self.init_config(host, kubernetes_version, key), 0o600, fills, show=show))
        return ops

    @staticmethod
    def _certificate_key_read() -> ReadValue:
        """A new certificate key, made by kubeadm on the first control plane (a 32-byte AES key
        printed as hex); kept as a secret, never echoed."""
        return ReadValue(
            "kubeadm certs certificate-key",
            (CERT_KEY,),
            _certificate_key,
            "`kubeadm certs certificate-key` did not print a certificate key (64 hex digits)",
            timeout=60,
        )

    def images_step(self, host: Host) -> Step:
        """Pull the control-plane images before ``kubeadm init``, with the package timeout: on a
        slow link init would otherwise wait for them inside its own control-plane timeout, with
        nothing to show. Already done: containerd has them, and kubeadm pulls nothing."""
        return Step(
            "pull the control-plane images",
            f"kubeadm init needs them; pulled first (up to {PACKAGE_TIMEOUT}s)",
            (
                *self._init_config_ops(host, show=False),
                Command(
                    f"kubeadm config images pull --config {INIT_CONFIG}",
                    PACKAGE_TIMEOUT,
                    hint=f"the images come from registry.k8s.io; see `journalctl -u containerd` on {host.name}",
                ),
            ),
        )

    def join_images_step(self, host: Host) -> Step:
        """The same pull on a control plane about to join, for the kubeadm version installed
        there (the cluster's: the packages are held at it)."""
        return Step(
            "pull the control-plane images",
            f"kubeadm join --control-plane needs them; pulled first (up to {PACKAGE_TIMEOUT}s)",
            (
                Command(
                    'kubeadm config images pull --kubernetes-version "$(kubeadm version -o short)"',
                    PACKAGE_TIMEOUT,
                    hint=f"the images come from registry.k8s.io; see `journalctl -u containerd` on {host.name}",
                ),
            ),
        )

    def init_step(self, host: Host) -> Step:
        """kubeadm init from a 0600 config file; preflight errors verbatim; a failure after
        preflight is reset so that a rerun starts clean. A stacked control plane also uploads
        the shared certificates (``--upload-certs``, the key is not printed)."""
        ops = self._init_config_ops(host, show=True, certificate_key=self.stacked)
        upload = " --upload-certs --skip-certificate-key-print" if self.stacked else ""
        ops.append(self._kubeadm_command(host, f"init --config {INIT_CONFIG}{upload}", "init"))
        return Step("kubeadm init", "not part of the cluster yet", tuple(ops))

    def join_step(self, host: Host, init_server: Host) -> Step:
        """This is where a kubeadm host joins: a 0600 JoinConfiguration holding the bootstrap
        token and CA hash (placeholders until the first server made them), removed right after.
        A control plane's file also holds the certificate key: kubeadm downloads the shared
        certificates from the kubeadm-certs Secret and adds an etcd member."""
        control_plane = host.role == "server"
        key = CERT_KEY.text if control_plane else None
        fills = (BOOTSTRAP_TOKEN, CA_HASH, CERT_KEY) if control_plane else (BOOTSTRAP_TOKEN, CA_HASH)
        config = self.join_config(host, init_server, BOOTSTRAP_TOKEN.text, (CA_HASH.text,), key)
        command = f"join --config {JOIN_CONFIG}; rc=$?; rm -f {JOIN_CONFIG}; exit $rc"
        reason = (
            "not part of the cluster yet; joins as a control plane (an etcd member)" if control_plane else "not part of the cluster yet"
        )
        return Step(
            "kubeadm join --control-plane" if control_plane else "kubeadm join",
            reason,
            (
                Upload(JOIN_CONFIG, config, 0o600, fills),
                self._kubeadm_command(host, command, "join"),
            ),
        )

    def _kubeadm_command(self, host: Host, args: str, what: str) -> Command:
        return Command(
            f"kubeadm {args}",
            self.timeout + 60,
            cleanup="kubeadm reset -f",
            hint=f"see `journalctl -u kubelet` on {host.name}",
            check_output=partial(_preflight_errors, what),
        )

    def join_secret_step(self, init_server: Host) -> Step:
        """A bootstrap token made now, valid for 15 minutes, and the CA hash to pin."""
        return Step(
            f"create a bootstrap token on {init_server.name}",
            "workers join with a fresh, short-lived token",
            (self._token_read(),),
        )

    @staticmethod
    def _token_read() -> ReadValue:
        return ReadValue(
            "kubeadm token create --ttl 15m0s --print-join-command",
            (BOOTSTRAP_TOKEN, CA_HASH),
            _join_command,
            "`kubeadm token create --print-join-command` printed no token and CA hash",
            timeout=60,
        )

    def upload_certs_step(self, init_server: Host) -> Step:
        """For control planes joining a running cluster: a bootstrap token, a new certificate
        key, and the shared certificates uploaded again under it (the kubeadm-certs Secret of the
        init lives two hours). The key reaches kubeadm in a 0600 file removed right after."""
        command = (
            f"kubeadm init phase upload-certs --upload-certs --skip-certificate-key-print --config {UPLOAD_CERTS_CONFIG}; "
            f"rc=$?; rm -f {UPLOAD_CERTS_CONFIG}; exit $rc"
        )
        return Step(
            f"create a bootstrap token and upload the certificates on {init_server.name}",
            "control planes join with a fresh, short-lived token and the certificate key of a new kubeadm-certs Secret",
            (
                self._token_read(),
                self._certificate_key_read(),
                Upload(UPLOAD_CERTS_CONFIG, self.upload_certs_config(CERT_KEY.text), 0o600, (CERT_KEY,)),
                Command(command, 120, hint=f"see `kubeadm init phase upload-certs` on {init_server.name}"),
            ),
        )

    def cluster_plan(self, plans: dict[str, HostPlan], state: ClusterState) -> ClusterPlan:
        """As for every distribution; when a control plane joins a cluster that already runs,
        the join-secret step also uploads the certificates under a new key (a new cluster's init
        uploaded them moments before)."""
        plan = super().cluster_plan(plans, state)
        init = state.init_server
        fresh = plans[init.name].action is Action.INSTALL
        if plan.join_secret is None or fresh or not any(CERT_KEY in p.needs for n, p in plans.items() if n != init.name):
            return plan
        return replace(plan, join_secret=self.upload_certs_step(init))

    def addon_steps(self, state: ClusterState) -> list[Step]:
        manifest, fingerprint = self.flannel_manifest()
        current = state.addons.get("flannel")
        if current == fingerprint:
            return []
        reason = "not applied yet" if current is None else "its manifest changed"
        version = self.cluster.flannel_version
        return [
            Step(
                f"Flannel {version}",
                reason,
                (
                    Upload(FLANNEL_MANIFEST, manifest),
                    Command(self.kubectl(f"apply -f {FLANNEL_MANIFEST}"), PACKAGE_TIMEOUT),
                ),
            )
        ]

    def service_unit(self, host: Host) -> str:
        return "kubelet"

    # --- day 2: remove, upgrade, reset ------------------------------------------------------------
    def uninstall_steps(self, host: Host, facts: HostFacts) -> list[Step]:
        """``kubeadm reset -f`` (stops the kubelet, removes /etc/kubernetes' manifests, PKI and
        kubeconfigs, and on a control plane its etcd member), then what reset leaves for the
        user to clean by hand (its own closing words): the CNI config, the Flannel/CNI
        interfaces, the iptables chains of kube-proxy and Flannel; then the kubelet flags file
        and this tool's folder, and the packages released from their hold. The packages stay
        installed, so the host can join again. Already done: each command is a no-op then."""
        k = kubeadm_facts(facts)
        os_ = hostos.for_facts(facts)
        assert os_ is not None, "unsupported OS families are refused while validating hosts"
        steps = []
        if "kubeadm" in k.packages:
            steps.append(
                Step(
                    "kubeadm reset -f",
                    "undoes kubeadm init/join (and removes the etcd member of a control plane)",
                    (Command("kubeadm reset -f", self.timeout + 60, hint=f"see `journalctl -u kubelet` on {host.name}"),),
                )
            )
        steps.append(
            Step(
                "CNI config, state and interfaces",
                "kubeadm reset leaves /etc/cni/net.d, the plugins' state, cni0 and flannel.1",
                (Command(CNI_CLEANUP, 60),),
            )
        )
        steps.append(
            Step("iptables chains of kube-proxy and Flannel", "kubeadm reset does not clean iptables", (Command(IPTABLES_CLEANUP, 120),))
        )
        steps.append(
            Step(
                "kubelet flags and provisioner files",
                f"{os_.kubelet_defaults} and {WORKDIR} were written by provisioner",
                (Command(f"rm -f {os_.kubelet_defaults} && rm -rf {WORKDIR}", 60),),
            )
        )
        held = sorted(set(KUBE_PACKAGES) & k.held)
        if held:
            steps.append(
                Step(
                    "release the package hold",
                    f"{', '.join(held)} are held at the cluster's version",
                    (Command(os_.unhold(KUBE_PACKAGES), 120),),
                )
            )
        return steps

    def needs_upgrade(self, k: KubeadmFacts) -> bool:
        """A joined host whose kubelet or kubeadm package is not at the inventory's version."""
        wanted = self.cluster.version
        return bool(wanted) and any(p in k.packages and not version_matches(k.packages[p], wanted) for p in ("kubelet", "kubeadm"))

    def upgrade_steps(self, host: Host, f: HostFacts, *, first: bool) -> list[Step]:
        """The kubeadm upgrade of one host, after its repository points at the new minor (the
        preparation steps before these): kubeadm released, installed at the new version and
        held; ``kubeadm upgrade plan`` then ``apply`` on the first control plane, ``kubeadm
        upgrade node`` elsewhere; then kubelet and kubectl the same way and a kubelet restart.
        With a minor only in the inventory the exact version is the one the repository gives
        kubeadm (``kubeadm version -o short`` on the host)."""
        os_ = hostos.for_facts(f)
        assert os_ is not None, "unsupported OS families are refused while validating hosts"
        wanted = (self.cluster.version or "").lstrip("v")
        exact = wanted if wanted.count(".") == 2 else None
        target = f"v{exact}" if exact else '"$(kubeadm version -o short)"'
        k = kubeadm_facts(f)
        steps = [
            Step(
                f"kubeadm {wanted}",
                f"kubeadm {k.packages.get('kubeadm', '?')} is installed",
                (
                    Command(
                        f"{os_.unhold(['kubeadm'])} && {os_.install([os_.pin('kubeadm', exact)])} && {os_.hold(['kubeadm'])}",
                        PACKAGE_TIMEOUT,
                    ),
                ),
            )
        ]
        if first:
            steps.append(
                Step(
                    "kubeadm upgrade plan",
                    "kubeadm checks that the cluster can go to the new version",
                    (Command(f"kubeadm upgrade plan {target}", self.timeout, hint=f"see `kubeadm upgrade plan` on {host.name}"),),
                )
            )
            steps.append(
                Step(
                    "kubeadm upgrade apply",
                    "the first control plane upgrades the cluster's components",
                    (
                        Command(
                            f"kubeadm upgrade apply {target} -y",
                            self.timeout + PACKAGE_TIMEOUT,
                            hint=f"see `journalctl -u kubelet` on {host.name}",
                        ),
                    ),
                )
            )
        else:
            steps.append(
                Step(
                    "kubeadm upgrade node",
                    "the node takes the new kubelet configuration",
                    (Command("kubeadm upgrade node", self.timeout + 60, hint=f"see `journalctl -u kubelet` on {host.name}"),),
                )
            )
        pair = ["kubelet", "kubectl"]
        steps.append(
            Step(
                f"kubelet and kubectl {wanted}",
                f"kubelet {k.packages.get('kubelet', '?')} is installed",
                (
                    Command(
                        f"{os_.unhold(pair)} && {os_.install([os_.pin(p, exact) for p in pair], refresh=False)} && "
                        f"{os_.hold(pair)} && systemctl daemon-reload && systemctl restart kubelet",
                        PACKAGE_TIMEOUT,
                        journal_unit="kubelet",
                    ),
                ),
            )
        )
        return steps

    def embedded_etcd(self, servers: int) -> bool:
        """kubeadm control planes run stacked etcd (an etcd member on each)."""
        return True

    def upgraded_version(self) -> str | None:
        version = (self.cluster.version or "").lstrip("v")
        if not version:
            return None
        return f"v{version}" if version.count(".") == 2 else f"v{version}."


def parse_version(text: str) -> tuple[int, ...] | None:
    """(major, minor[, patch]) of "1.31", "v1.31.4" or a package version "1.31.4-1.1"."""
    match = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", text.strip())
    if not match:
        return None
    return tuple(int(g) for g in match.groups() if g is not None)


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(str(v) for v in version)


def kubeadm_facts(facts: HostFacts) -> KubeadmFacts:
    """The host's kubeadm facts (gathered with the kubeadm fact script)."""
    assert isinstance(facts.dist, KubeadmFacts), "facts were gathered for kubeadm"
    return facts.dist


def _preflight_errors(what: str, host: str, output: str) -> ProvisionerError | None:
    """kubeadm's preflight ``[ERROR …]`` lines as a typed error (kubeadm changed nothing)."""
    errors = [line.strip() for line in output.splitlines() if line.strip().startswith("[ERROR")]
    return KubeadmPreflightError(host, what, errors) if errors else None


def _join_command(output: str) -> tuple[str, ...] | None:
    token = re.search(r"--token\s+(\S+)", output)
    hashes = re.findall(r"--discovery-token-ca-cert-hash\s+(\S+)", output)
    return (token.group(1), hashes[0]) if token and hashes else None


def _certificate_key(output: str) -> tuple[str, ...] | None:
    key = output.strip()
    return (key,) if re.fullmatch(r"[0-9a-f]{64}", key) else None


def _kubeadm_version(output: str) -> tuple[str, ...] | None:
    version = output.strip()
    return (version,) if re.fullmatch(r"v\d+\.\d+\.\d+\S*", version) else None


# What `kubeadm reset` leaves (cmd/kubeadm/app/cmd/reset.go tells the user to remove /etc/cni/net.d,
# which it stopped deleting in kubernetes/kubernetes#83950; phases/reset/cleanupnode.go empties
# only the manifests, kubelet and certificate directories): the CNI config, the plugins' state
# (/var/lib/cni: host-local IPAM reservations of the pods whose containers reset removed without a
# CNI DEL, which a rejoined node would otherwise never hand out again; /run/flannel: flanneld's
# subnet lease) and Flannel's interfaces.
CNI_CLEANUP = (
    "rm -rf /etc/cni/net.d /var/lib/cni /run/flannel && "
    'for link in cni0 flannel.1; do if ip link show "$link" >/dev/null 2>&1; then ip link delete "$link"; fi; done'
)
# Rules and chains whose text names kube-proxy's, Flannel's or the CNI plugins' chains are dropped;
# every other rule is restored as it was.
IPTABLES_CLEANUP = (
    "for tool in iptables ip6tables; do "
    'command -v "$tool-save" >/dev/null 2>&1 || continue; '
    '"$tool-save" | grep -v -E \'KUBE-|FLANNEL|CNI-\' | "$tool-restore" || exit 1; '
    "done"
)

# Swap off now and at boot: comment the active swap lines of /etc/fstab, after a dated backup.
SWAP_OFF = (
    "swapoff -a && "
    "if awk '!/^[[:space:]]*#/ && $3==\"swap\"' /etc/fstab | grep -q .; then "
    "cp -p /etc/fstab /etc/fstab.provisioner-backup-$(date +%Y%m%d%H%M%S) && "
    "sed -i -E 's|^([^#[:space:]][^[:space:]]*[[:space:]]+[^[:space:]]+[[:space:]]+swap[[:space:]].*)$|# \\1  # swap off for Kubernetes (provisioner)|' /etc/fstab; "
    "fi"
)
