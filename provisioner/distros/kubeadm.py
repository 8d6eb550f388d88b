"""kubeadm + Flannel: upstream Kubernetes the way the kubeadm guides build it, step by step.

Every host gets the same preparation — kernel modules, sysctls, swap off, (RHEL family: SELinux
permissive, firewalld ports), containerd with the systemd cgroup driver, the pkgs.k8s.io
repository, kubelet/kubeadm/kubectl held at the chosen version, kubelet flags — each step run only
when the facts say it is missing or different. Then the first control plane runs ``kubeadm init``,
Flannel is applied, and workers ``kubeadm join`` with a bootstrap token made for this run, handed
over in a 0600 JoinConfiguration file. OS differences come from ``provisioner.hostos``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from provisioner import hostos, templates
from provisioner.distros.base import Action, ClusterState, Distribution, HostPlan, JoinTicket, Step, sha256_text
from provisioner.errors import HostError, RemoteCommandError
from provisioner.inventory import Host, is_ip, url_host
from provisioner.secrets import REDACTOR

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
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
FLANNEL_IMAGE = "docker.io/flannel/flannel:{version}"
# The CNI plugin image released together with Flannel v0.26.1.
FLANNEL_CNI_PLUGIN_IMAGE = "docker.io/flannel/flannel-cni-plugin:v1.5.1-flannel2"
ARCHES = {"x86_64", "aarch64", "ppc64le", "s390x"}
MIN_CPUS = 2
MIN_MEMORY_MIB = 1700  # kubeadm's preflight minimum for control planes
WATCHED_FILES = (MODULES_FILE, SYSCTL_FILE, CONTAINERD_CONFIG, "/etc/default/kubelet", "/etc/sysconfig/kubelet",
                 "/etc/apt/sources.list.d/kubernetes.list", "/etc/yum.repos.d/kubernetes.repo")


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

    # --- facts ------------------------------------------------------------------------------
    def fact_script(self) -> str:
        files = " ".join(WATCHED_FILES)
        return (
            "grep -qw overlay /proc/filesystems && echo module.overlay=yes\n"
            "[ -d /proc/sys/net/bridge ] && echo module.br_netfilter=yes\n"
            + "".join(f"echo \"sysctl.{k}=$(sysctl -n {k} 2>/dev/null)\"\n" for k in SYSCTLS)
            + "echo \"swap.devices=$(awk 'NR>1' /proc/swaps | wc -l)\"\n"
            "echo \"swap.fstab=$(awk '!/^[[:space:]]*#/ && $3==\"swap\"' /etc/fstab 2>/dev/null | wc -l)\"\n"
            f"for f in {files}; do [ -f \"$f\" ] && echo \"file:$f=$(sha256sum \"$f\" | cut -d' ' -f1)\"; done\n"
            "[ -s /etc/apt/keyrings/kubernetes-apt-keyring.asc ] && echo key.kubernetes=yes\n"
            "command -v containerd >/dev/null 2>&1 && echo \"containerd.version=$(containerd --version 2>/dev/null | awk '{print $3}')\"\n"
            "for s in containerd kubelet; do echo \"service.$s=$(systemctl is-active $s 2>/dev/null)\"; done\n"
            f"[ -f {ADMIN_CONF} ] && echo kubeadm.admin_conf=yes\n"
            f"[ -f {KUBELET_CONF} ] && echo kubeadm.kubelet_conf=yes\n"
            + hostos.package_facts_script()
            + "true\n"
        )

    def parse_facts(self, values: dict[str, str]) -> KubeadmFacts:
        def count(key: str) -> int:
            try:
                return int(values.get(key, "0").strip() or 0)
            except ValueError:
                return 0

        return KubeadmFacts(
            packages={k[4:]: v for k, v in values.items() if k.startswith("pkg.") and v},
            held=frozenset(values.get("held", "").split()),
            containerd_version=values.get("containerd.version") or None,
            services={k[8:]: v for k, v in values.items() if k.startswith("service.")},
            files={k[5:]: v for k, v in values.items() if k.startswith("file:")},
            repo_key=values.get("key.kubernetes") == "yes",
            admin_conf=values.get("kubeadm.admin_conf") == "yes",
            kubelet_conf=values.get("kubeadm.kubelet_conf") == "yes",
            modules=frozenset(k[7:] for k, v in values.items() if k.startswith("module.") and v == "yes"),
            sysctls={k[7:]: v for k, v in values.items() if k.startswith("sysctl.")},
            swap_devices=count("swap.devices"),
            fstab_swap=count("swap.fstab"),
        )

    def check_hosts(self, facts: dict[str, HostFacts]) -> list[str]:
        problems = []
        if len(self.inventory.servers) > 1:
            problems.append(
                "kubeadm: one control plane is supported; more than one host has role server "
                "(HA control planes are not implemented yet)"
            )
        for host in self.inventory.hosts:
            f = facts[host.name]
            k: KubeadmFacts = f.dist
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
                problems.append(
                    f"{host.name}: runs k3s; remove it (k3s-uninstall.sh or k3s-agent-uninstall.sh) before "
                    "installing kubeadm"
                )
            if k.role is not None and k.role != host.role:
                what = "a control plane" if k.role == "server" else "a worker"
                problems.append(
                    f"{host.name}: is already {what} but the inventory says {host.role}; changing roles needs "
                    "`kubeadm reset -f` on it first"
                )
        return problems

    def host_warnings(self, facts: dict[str, HostFacts]) -> list[str]:
        warnings = []
        wanted = self.inventory.cluster.version
        for host in self.inventory.hosts:
            k: KubeadmFacts = facts[host.name].dist
            kubelet = k.packages.get("kubelet")
            if k.installed and wanted and kubelet and not version_matches(kubelet, wanted):
                warnings.append(
                    f"{host.name}: kubelet {kubelet} is installed but the inventory wants {wanted}; upgrading a "
                    "kubeadm cluster is not automated (follow `kubeadm upgrade`), so the host is left as it is"
                )
        return warnings

    # --- cluster state ---------------------------------------------------------------------------
    def kubectl(self, args: str) -> str:
        return f"kubectl --kubeconfig {ADMIN_CONF} {args}"

    def read_state(self, remote: Remote, init_server: Host) -> ClusterState:
        state = ClusterState(init_server=init_server, nodes=self.read_nodes(remote))
        result = remote.sudo(self.kubectl("get daemonset kube-flannel-ds -n kube-flannel -o json"), check=False, timeout=30)
        if result.ok:
            annotations = json.loads(result.stdout).get("metadata", {}).get("annotations") or {}
            state.addons["flannel"] = annotations.get("provisioner.io/manifest-sha256", "")
        else:
            state.addons["flannel"] = None
        return state

    def control_plane_endpoint(self, init_server: Host) -> str:
        address = self.inventory.cluster.api_endpoint or init_server.address
        return f"{url_host(address)}:{self.api_port}"

    # --- rendered files ----------------------------------------------------------------------------
    @property
    def minor(self) -> str:
        version = (self.inventory.cluster.version or "").lstrip("v")
        return ".".join(version.split(".")[:2])

    def package_repo(self, os: hostos.HostOS) -> str:
        """The repository URL: the inventory's mirror, or pkgs.k8s.io for the minor and OS family."""
        if self.inventory.cluster.package_repo:
            url = self.inventory.cluster.package_repo
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

    def init_config(self, host: Host, kubernetes_version: str) -> str:
        cluster = self.inventory.cluster
        advertise = host.node_ip or (host.address if is_ip(host.address) else None)
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
            control_plane_endpoint=self.control_plane_endpoint(host),
            pod_network_cidr=cluster.pod_network_cidr,
            service_cidr=cluster.service_cidr,
            cert_sans=sans,
        )

    def join_config(self, host: Host, init_server: Host, token: str, ca_cert_hashes: tuple[str, ...]) -> str:
        return templates.render(
            "kubeadm/join.yaml.j2",
            cluster_name=self.inventory.cluster.name,
            node_name=host.name,
            api_version=self.api_version(),
            control_plane_endpoint=self.control_plane_endpoint(init_server),
            token=token,
            ca_cert_hashes=list(ca_cert_hashes),
            kubelet_args=self.kubelet_args(host),
        )

    def flannel_manifest(self) -> tuple[str, str]:
        """The Flannel manifest and its fingerprint (the hash of the rendering without it)."""
        cluster = self.inventory.cluster
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
            k: KubeadmFacts = f.dist
            is_init = host.name == state.init_server.name
            steps = self.host_steps(host, f)
            if not k.installed:
                action = Action.INSTALL if is_init else Action.JOIN
                final = "kubeadm init" if is_init else "kubeadm join"
                steps.append(Step(final, "not part of the cluster yet"))
            elif steps:
                action = Action.RECONFIGURE
            else:
                action, restart_reason = self._repair(host, k, state)
                if restart_reason:
                    steps.append(Step("restart kubelet", restart_reason))
            preview = self.init_config(host, self._preview_version()) if is_init and not k.installed else ""
            plans[host.name] = HostPlan(
                host, action, state.init_server, [f"{s.title}: {s.reason}" for s in steps], preview, steps
            )
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

    def _preview_version(self) -> str:
        version = self.inventory.cluster.version or ""
        return f"v{version}" if version.count(".") == 2 else f"v{self.minor}.<latest patch in the repository>"

    def host_steps(self, host: Host, f: HostFacts) -> list[Step]:
        """The preparation a host still needs, from its facts, in the order it is applied."""
        k: KubeadmFacts = f.dist
        os_ = hostos.for_facts(f)
        assert os_ is not None, "unsupported OS families are refused while validating hosts"
        steps: list[Step] = []
        put = _Put

        modules = templates.render("kubeadm/modules-k8s.conf.j2")
        missing_modules = sorted({"overlay", "br_netfilter"} - k.modules)
        if missing_modules or k.files.get(MODULES_FILE) != sha256_text(modules):
            load = " && ".join(f"modprobe {m}" for m in missing_modules) or None
            steps.append(Step(
                "kernel modules",
                f"{', '.join(missing_modules)} not loaded" if missing_modules else f"{MODULES_FILE} is missing or differs",
                partial(_run_after_puts, [put(MODULES_FILE, modules)], load),
            ))

        sysctls = templates.render("kubeadm/sysctl-k8s.conf.j2")
        wrong = [key for key in SYSCTLS if k.sysctls.get(key) != "1"]
        if wrong or k.files.get(SYSCTL_FILE) != sha256_text(sysctls):
            steps.append(Step(
                "sysctls",
                f"{', '.join(wrong)} not 1" if wrong else f"{SYSCTL_FILE} is missing or differs",
                partial(_run_after_puts, [put(SYSCTL_FILE, sysctls)], f"sysctl -q -p {SYSCTL_FILE}"),
            ))

        if k.swap_devices or k.fstab_swap:
            steps.append(Step(
                "swap off",
                f"{k.swap_devices} swap device(s) active, {k.fstab_swap} swap line(s) in /etc/fstab",
                partial(_run_after_puts, [], SWAP_OFF),
            ))

        for title, reason, command in os_.prepare_steps(f, host.role):
            steps.append(Step(title, reason, partial(_run_after_puts, [], command)))

        if os_.containerd_package not in k.packages:
            setup = os_.containerd_setup()
            install = os_.install([os_.containerd_package])
            steps.append(Step(
                "install containerd", "containerd is not installed",
                partial(_run_after_puts, [], f"{setup} && {install}" if setup else install),
            ))
        generation = k.containerd_generation
        config_differs = generation is None or k.files.get(CONTAINERD_CONFIG) != sha256_text(self.containerd_config(generation))
        if config_differs or k.services.get("containerd") != "active":
            reason = (
                f"{CONTAINERD_CONFIG} is missing or differs (systemd cgroup driver)" if config_differs
                else f"containerd is {k.services.get('containerd') or 'not running'}"
            )
            steps.append(Step("configure containerd", reason, partial(self._configure_containerd, os_)))

        repo = os_.kubernetes_repo(self.package_repo(os_))
        repo_files_differ = any(k.files.get(path) != sha256_text(text) for path, text in repo.files.items())
        if repo_files_differ or (repo.key_path and not k.repo_key):
            steps.append(Step(
                "Kubernetes package repository",
                f"{os_.kubernetes_repo_file} is missing or does not point at {self.package_repo(os_)}"
                if repo_files_differ else "the repository key is missing",
                partial(_run_after_puts, [put(p, t) for p, t in repo.files.items()], repo.key_command or None),
            ))

        wanted = self.inventory.cluster.version
        missing = [p for p in KUBE_PACKAGES if p not in k.packages]
        mismatched = [] if k.installed or not wanted else [
            p for p in KUBE_PACKAGES if p in k.packages and not version_matches(k.packages[p], wanted)
        ]
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
            steps.append(Step("kubelet, kubeadm, kubectl", "; ".join(parts), partial(_run_after_puts, [], command)))

        defaults = self.kubelet_defaults(host)
        if k.files.get(os_.kubelet_defaults) != sha256_text(defaults):
            restart = "systemctl restart kubelet" if k.installed else None
            steps.append(Step(
                "kubelet flags", f"{os_.kubelet_defaults} is missing or differs",
                partial(_run_after_puts, [put(os_.kubelet_defaults, defaults)], restart),
            ))
        return steps

    def cluster_steps(self, state: ClusterState) -> list[Step]:
        manifest, fingerprint = self.flannel_manifest()
        current = state.addons.get("flannel")
        if current == fingerprint:
            return []
        reason = "not applied yet" if current is None else "its manifest changed"
        command = self.kubectl(f"apply -f {FLANNEL_MANIFEST}")
        version = self.inventory.cluster.flannel_version
        return [Step(f"Flannel {version}", reason, partial(_run_after_puts, [_Put(FLANNEL_MANIFEST, manifest)], command))]

    # --- applying ------------------------------------------------------------------------------------
    def bootstrap(self, remote: Remote, plan: HostPlan, facts: HostFacts) -> None:
        self._converge(remote, plan)
        if plan.action is Action.INSTALL:
            self._init(remote, plan.host)
        self.wait_api(remote, plan.host)

    def needs_join_secret(self, plan: HostPlan) -> bool:
        return plan.action is Action.JOIN

    def join_secret(self, remote: Remote, state: ClusterState) -> JoinTicket:
        """A bootstrap token made now, valid for 15 minutes, and the CA hash to pin."""
        result = remote.sudo("kubeadm token create --ttl 15m0s --print-join-command", secret_output=True, timeout=60)
        token = re.search(r"--token\s+(\S+)", result.stdout)
        hashes = re.findall(r"--discovery-token-ca-cert-hash\s+(\S+)", result.stdout)
        if not token or not hashes:
            raise HostError(state.init_server.name, "`kubeadm token create --print-join-command` printed no token and CA hash")
        return JoinTicket(token.group(1), tuple(hashes))

    def apply(self, remote: Remote, plan: HostPlan, facts: HostFacts, secret: object) -> None:
        self._converge(remote, plan)
        if plan.action is Action.JOIN:
            assert isinstance(secret, JoinTicket), "a join needs the ticket from join_secret"
            self._join(remote, plan, secret)

    def _converge(self, remote: Remote, plan: HostPlan) -> None:
        """Run the plan's preparation steps; a RESTART plan restarts kubelet."""
        for step in plan.steps:
            if step.run is not None:
                step.run(remote)
        if plan.action is Action.RESTART:
            remote.sudo("systemctl restart kubelet", timeout=120)

    def _configure_containerd(self, os_: hostos.HostOS, remote: Remote) -> None:
        """Write the config for the installed containerd generation; restart it when it changed."""
        version = remote.sudo("containerd --version", timeout=30).stdout.split()
        generation = KubeadmFacts(containerd_version=version[2] if len(version) > 2 else None).containerd_generation or 1
        config = self.containerd_config(generation)
        current = remote.sudo(f"sha256sum {CONTAINERD_CONFIG} 2>/dev/null | cut -d' ' -f1", check=False).stdout.strip()
        if current != sha256_text(config):
            remote.put(config, CONTAINERD_CONFIG, mode=0o644)
        remote.sudo("systemctl enable containerd >/dev/null 2>&1; systemctl restart containerd", timeout=120)

    def _init(self, remote: Remote, host: Host) -> None:
        """kubeadm init from a 0600 config file; preflight errors verbatim; a failure after
        preflight is reset so that a rerun starts clean."""
        cluster = self.inventory.cluster
        version = cluster.version or ""
        if version.count(".") == 2:
            version = f"v{version}"
        else:  # a minor: the newest patch the repository had, which is what got installed
            version = remote.sudo("kubeadm version -o short", timeout=60).stdout.strip()
            if not re.fullmatch(r"v\d+\.\d+\.\d+\S*", version):
                raise HostError(host.name, f"`kubeadm version -o short` printed {version!r}, not a version")
        remote.put(self.init_config(host, version), INIT_CONFIG, mode=0o600)
        self._kubeadm(remote, host, f"init --config {INIT_CONFIG}", "init")

    def _join(self, remote: Remote, plan: HostPlan, ticket: JoinTicket) -> None:
        """kubeadm join from a 0600 JoinConfiguration holding the token; removed right after."""
        config = self.join_config(plan.host, plan.init_server, ticket.reveal(), ticket.ca_cert_hashes)
        remote.put(config, JOIN_CONFIG, mode=0o600)
        self._kubeadm(remote, plan.host, f"join --config {JOIN_CONFIG}", "join", cleanup=JOIN_CONFIG)

    def _kubeadm(self, remote: Remote, host: Host, args: str, what: str, cleanup: str | None = None) -> None:
        command = f"kubeadm {args}"
        if cleanup:
            command += f"; rc=$?; rm -f {cleanup}; exit $rc"
        result = remote.sudo(command, check=False, timeout=self.timeout + 60)
        if result.ok:
            return
        output = REDACTOR.redact(result.stderr + "\n" + result.stdout)
        errors = [line.strip() for line in output.splitlines() if line.strip().startswith("[ERROR")]
        if errors:
            raise KubeadmPreflightError(host.name, what, errors)
        remote.sudo("kubeadm reset -f", check=False, timeout=180)
        raise RemoteCommandError(
            host.name, f"kubeadm {args}", result.exit_code, output,
            f"`kubeadm reset -f` was run so that a rerun starts clean; see `journalctl -u kubelet` on {host.name}",
        )

    def service_unit(self, host: Host) -> str:
        return "kubelet"


# Swap off now and at boot: comment the active swap lines of /etc/fstab, after a dated backup.
SWAP_OFF = (
    "swapoff -a && "
    "if awk '!/^[[:space:]]*#/ && $3==\"swap\"' /etc/fstab | grep -q .; then "
    "cp -p /etc/fstab /etc/fstab.provisioner-backup-$(date +%Y%m%d%H%M%S) && "
    "sed -i -E 's|^([^#[:space:]][^[:space:]]*[[:space:]]+[^[:space:]]+[[:space:]]+swap[[:space:]].*)$|# \\1  # swap off for Kubernetes (provisioner)|' /etc/fstab; "
    "fi"
)


@dataclass(frozen=True)
class _Put:
    """A file a step writes before its command runs."""

    path: str
    content: str
    mode: int = 0o644


def _run_after_puts(puts: list[_Put], command: str | None, remote: Remote) -> None:
    """Write the step's files, then run its command (if any)."""
    for item in puts:
        remote.put(item.content, item.path, mode=item.mode)
    if command:
        remote.sudo(command, timeout=900)
