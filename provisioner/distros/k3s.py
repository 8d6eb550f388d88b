"""k3s: installed with the official install script (online, pinned or by channel, or air-gapped).

Everything a host needs (server URL, join token, node name, node IP, TLS SANs, extra flags) is
rendered into ``/etc/rancher/k3s/config.yaml`` (root, 0600, uploaded over SFTP), so the join token
never appears in a command line or an environment, and a rerun knows a host is already done when
its version, binary and config hash match and its service is active with a Ready node that
*runs* that version (the node's ``kubeletVersion``, not only the binary on disk).

High availability: with more than one server the first gets ``cluster-init`` (embedded etcd) and
the others join it (its own address) one at a time with the server token; ``cluster.api_endpoint``
is in every server's ``tls-san``, the kubeconfig's server and the URL agents join through. Agents hold only
the **agent token** (``agent-token`` on every server, generated once by this tool, kept by k3s on
the first server in ``/var/lib/rancher/k3s/server/agent-token``, root 0600, and read back from
there on every run), never the server token, which gives full administrator access (docs.k3s.io
cli/token). A running single server without etcd (SQLite) is not converted: the run is refused
with the manual steps.

The install script decides whether to restart k3s by comparing hashes of the binary, unit and
environment file taken when it starts with those at its end (k3s-io/k3s install.sh:
``PRE_INSTALL_HASHES`` in ``setup_env``, "No change detected so skipping service start" in
``service_enable_and_start``). Air-gap artefacts are uploaded before it runs, so whenever the plan
replaces the binary or the images (or the config), it passes ``INSTALL_K3S_FORCE_RESTART=true``.
"""

from __future__ import annotations

import hashlib
import os
import shlex
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from provisioner import templates
from provisioner.distros.base import ClusterState, Distribution, sha256_text
from provisioner.flags import flags_to_config
from provisioner.inventory import Host, K3sCluster, url_host
from provisioner.secrets import Secret
from provisioner.steps import (
    Action,
    Command,
    HostPlan,
    Placeholder,
    ReadValue,
    Step,
    Upload,
)

if TYPE_CHECKING:
    from provisioner.facts import HostFacts
    from provisioner.remote import Remote

BIN = "/usr/local/bin/k3s"
BIN_DIR = "/usr/local/bin"
#: The k3s binary the online install script downloads (about 70 MB), with room to spare.
DOWNLOAD_SPACE = 100 * 1000 * 1000
CONFIG = "/etc/rancher/k3s/config.yaml"
NODE_TOKEN = "/var/lib/rancher/k3s/server/node-token"
#: Written by k3s when ``agent-token`` is configured: ``K10<ca hash>::node:<secret>``.
AGENT_TOKEN_FILE = "/var/lib/rancher/k3s/server/agent-token"
#: Present on a server that runs embedded etcd (k3s pkg/etcd: ``<data-dir>/server/db/etcd``).
ETCD_DIR = "/var/lib/rancher/k3s/server/db/etcd"
ADMIN_KUBECONFIG = "/etc/rancher/k3s/k3s.yaml"
INSTALLER = "/var/lib/provisioner/k3s-install.sh"
IMAGES_DIR = "/var/lib/rancher/k3s/agent/images"
UNITS = {"server": "k3s", "agent": "k3s-agent"}
ARCHES = {"x86_64", "aarch64", "armv7l", "s390x"}
JOIN_TOKEN = Placeholder("k3s-join-token", "<join token of the first server>")
#: The full agent token (agents' ``token``), read from the first server.
AGENT_TOKEN = Placeholder("k3s-agent-token", "<agent token of the first server>")
#: The agent token's secret (servers' ``agent-token``): read back from the first server, or new.
AGENT_SECRET = Placeholder("k3s-agent-secret", "<agent token secret>")
#: What firewalld must let in for k3s (docs.k3s.io, Installation > Requirements: inbound rules and
#: the Red Hat/CentOS/Fedora firewalld section): the API on servers, Flannel VXLAN and the kubelet
#: everywhere, etcd between servers of an HA cluster; pod and service networks in the trusted zone.
FIREWALLD_PORTS = {"server": ("6443/tcp", "8472/udp", "10250/tcp"), "agent": ("8472/udp", "10250/tcp")}
ETCD_PORTS = "2379-2380/tcp"
DEFAULT_CIDRS = ("10.42.0.0/16", "10.43.0.0/16")


@dataclass(frozen=True)
class K3sFacts:
    """What k3s looks like on a host."""

    version: str | None = None
    units: dict[str, str] = field(default_factory=dict)  # unit name -> `systemctl is-active`
    config_sha256: str | None = None
    binary_sha256: str | None = None
    images_sha256: str | None = None
    installer_sha256: str | None = None
    #: ``systemctl is-active firewalld``, its open ports and the trusted zone's sources.
    firewalld: str = ""
    firewalld_ports: frozenset[str] = frozenset()
    firewalld_trusted: frozenset[str] = frozenset()
    #: The server keeps its data in embedded etcd (cluster-init or joined), not SQLite.
    etcd: bool = False

    @property
    def installed(self) -> bool:
        return bool(self.units)

    @property
    def role(self) -> str | None:
        if "k3s" in self.units:
            return "server"
        if "k3s-agent" in self.units:
            return "agent"
        return None

    @property
    def service_state(self) -> str:
        role = self.role
        return self.units.get(UNITS[role], "missing") if role else "missing"

    @property
    def active(self) -> bool:
        return self.service_state == "active"


class K3s(Distribution):
    """k3s servers and agents."""

    name = "k3s"
    admin_kubeconfig = ADMIN_KUBECONFIG

    @property
    def cluster(self) -> K3sCluster:
        """The inventory's cluster settings, typed as this distribution's model."""
        return self.inventory.cluster_as(K3sCluster)

    # --- facts --------------------------------------------------------------------------
    def fact_script(self) -> str:
        airgap = self.cluster.airgap
        lines = [
            f"if [ -x {BIN} ]; then",
            f"  echo \"k3s.version=$({BIN} --version 2>/dev/null | awk 'NR==1 {{print $3}}')\"",
        ]
        if airgap is not None:
            lines.append(f"  echo \"k3s.binary_sha256=$(sha256sum {BIN} | cut -d' ' -f1)\"")
        lines += [
            "fi",
            f"[ -f {CONFIG} ] && echo \"k3s.config_sha256=$(sha256sum {CONFIG} | cut -d' ' -f1)\"",
            f"[ -d {ETCD_DIR} ] && echo k3s.etcd=yes",
        ]
        if airgap is not None:
            lines.append(f"[ -f {INSTALLER} ] && echo \"k3s.installer_sha256=$(sha256sum {INSTALLER} | cut -d' ' -f1)\"")
            if airgap.images is not None:
                image = f"{IMAGES_DIR}/{airgap.images.name}"
                lines.append(f"[ -f {shlex.quote(image)} ] && echo \"k3s.images_sha256=$(sha256sum {shlex.quote(image)} | cut -d' ' -f1)\"")
        # one systemctl for every unit (each call costs the host ~8 ms of CPU): firewalld, and the
        # k3s units that have a unit file; one state line per unit, in order
        lines += [
            "set -- firewalld",
            'for unit in k3s k3s-agent; do [ -f /etc/systemd/system/$unit.service ] && set -- "$@" $unit; done',
            'states=$(systemctl is-active "$@" 2>/dev/null)',
            'printf \'%s\\n\' "$states" | for unit in "$@"; do',
            "  IFS= read -r state",
            '  if [ "$unit" != firewalld ]; then echo "k3s.unit.$unit=$state"; continue; fi',
            '  echo "firewalld=$state"',
            '  if [ "$state" = active ]; then',
            '    echo "firewalld.ports=$(firewall-cmd --list-ports 2>/dev/null)"',
            '    echo "firewalld.trusted=$(firewall-cmd --zone=trusted --list-sources 2>/dev/null)"',
            "  fi",
            "done",
            "true",
        ]
        return "\n".join(lines) + "\n"

    def parse_facts(self, values: dict[str, str]) -> K3sFacts:
        return K3sFacts(
            version=values.get("k3s.version") or None,
            units={k.split(".", 2)[2]: v or "unknown" for k, v in values.items() if k.startswith("k3s.unit.")},
            config_sha256=values.get("k3s.config_sha256") or None,
            binary_sha256=values.get("k3s.binary_sha256") or None,
            images_sha256=values.get("k3s.images_sha256") or None,
            installer_sha256=values.get("k3s.installer_sha256") or None,
            firewalld=values.get("firewalld", ""),
            firewalld_ports=frozenset(values.get("firewalld.ports", "").split()),
            firewalld_trusted=frozenset(values.get("firewalld.trusted", "").split()),
            etcd=values.get("k3s.etcd") == "yes",
        )

    def check_hosts(self, facts: dict[str, HostFacts]) -> list[str]:
        problems = []
        online = self.cluster.airgap is None
        for host in self.inventory.hosts:
            f = facts[host.name]
            k = k3s_facts(f)
            if not f.systemd:
                problems.append(f"{host.name}: systemd is not running; k3s is installed as a systemd service")
            if f.arch not in ARCHES:
                problems.append(f"{host.name}: architecture {f.arch!r} is not one k3s ships for ({', '.join(sorted(ARCHES))})")
            if online and not f.tools & {"curl", "wget"}:
                problems.append(f"{host.name}: neither curl nor wget is installed; install one, or use cluster.airgap")
            if "kubeadm" in f.kubernetes:
                problems.append(
                    f"{host.name}: is already a kubeadm node (/etc/kubernetes/kubelet.conf); run `kubeadm reset -f` "
                    "on it before installing k3s"
                )
            if len(k.units) > 1:
                problems.append(
                    f"{host.name}: both k3s and k3s-agent are installed; remove the wrong one "
                    "(k3s-uninstall.sh or k3s-agent-uninstall.sh) and run again"
                )
            elif k.role is not None and k.role != host.role:
                script = "k3s-uninstall.sh" if k.role == "server" else "k3s-agent-uninstall.sh"
                problems.append(
                    f"{host.name}: runs k3s as {k.role} but the inventory says {host.role}; changing roles "
                    f"needs a fresh host (run {script} on it first)"
                )
            elif k.role == "server" and host.role == "server" and len(self.inventory.servers) > 1 and not k.etcd:
                problems.append(sqlite_conversion_refused(host))
        return problems

    def host_warnings(self, facts: dict[str, HostFacts]) -> list[str]:
        """Several servers without ``api_endpoint``: clients depend on the first server alone."""
        servers = self.inventory.servers
        if len(servers) > 1 and not self.cluster.api_endpoint:
            return [
                f"cluster.api_endpoint is not set: the kubeconfig and the agents point at {servers[0].name} "
                f"({servers[0].address}) only; while it is down they lose the API although the other servers keep "
                "the cluster. Set cluster.api_endpoint to a virtual IP, load balancer or DNS name that reaches every server"
            ]
        return []

    # --- cluster state --------------------------------------------------------------------
    def kubectl(self, args: str) -> str:
        return f"{BIN} kubectl {args}"

    def read_state(self, remote: Remote, init_server: Host) -> ClusterState:
        state = ClusterState(init_server=init_server)
        # both tokens in one command; either file may be missing (a cluster without agent-token)
        tokens = remote.sudo(f"cat {NODE_TOKEN} {AGENT_TOKEN_FILE}", check=False, secret_output=True)
        for line in (line.strip() for line in tokens.stdout.splitlines()):
            if "::server:" in line:
                state.join_secret = Secret(line)
            elif line and agent_token_secret(line):
                state.secrets["agent-token"] = Secret(line)
        state.nodes = self.list_nodes(remote).nodes
        return state

    @cached_property
    def _new_agent_secret(self) -> Secret:
        """The agent token secret of a cluster that has none yet: made once per run."""
        return Secret(os.urandom(16).hex())

    def known_values(self, state: ClusterState) -> dict[Placeholder, Secret | str]:
        """The server token (read from the first server); the agent token and its secret when
        the first server has one, else a new secret for the servers' ``agent-token``."""
        known: dict[Placeholder, Secret | str] = {}
        if state.join_secret is not None:
            known[JOIN_TOKEN] = state.join_secret
        agent = state.secrets.get("agent-token")
        if agent is not None:
            known[AGENT_TOKEN] = agent
            known[AGENT_SECRET] = Secret(agent_token_secret(agent.reveal()))
        else:
            known[AGENT_SECRET] = self._new_agent_secret
        return known

    # --- configuration --------------------------------------------------------------------
    def render_config(self, host: Host, init_server: Host, token: str | None, agent_secret: str | None = AGENT_SECRET.text) -> str:
        """The config.yaml for ``host``; ``token`` is the text to put in it (or None): the server
        token for servers that join, the agent token for agents; servers get ``agent_secret`` as
        ``agent-token``. The first server gets ``cluster-init`` with more than one server (or
        with ``cluster.embedded_etcd``)."""
        cluster = self.cluster
        is_init = host.name == init_server.name
        extra, _ = flags_to_config(cluster.server_args if host.role == "server" else cluster.agent_args)
        given = extra.pop("tls-san", [])
        user_sans = [given] if isinstance(given, str) else [str(s) for s in given] if isinstance(given, list) else []
        sans: list[str] = []
        for san in [cluster.api_endpoint, init_server.address if is_init else None, host.address, host.node_ip, *user_sans]:
            if san and san not in sans:
                sans.append(str(san))
        return templates.render(
            "k3s/config.yaml.j2",
            cluster_name=cluster.name,
            node_name=host.name,
            role=host.role,
            server_url=None if is_init else self.join_url(host, init_server),
            token=None if is_init else token,
            node_ip=host.node_ip,
            flannel_iface=host.flannel_iface,
            cluster_init=is_init and (len(self.inventory.servers) > 1 or cluster.embedded_etcd),
            agent_token=agent_secret if host.role == "server" else None,
            tls_sans=sans,
            extra=extra,
        )

    def join_url(self, host: Host, init_server: Host) -> str:
        """Where ``host`` joins: a server joins the first server itself (an etcd member is added
        through a running one; the endpoint may not lead to a server yet), an agent joins
        through ``api_endpoint`` when set (else the first server)."""
        if host.role == "server":
            return f"https://{url_host(init_server.address)}:{self.api_port}"
        return self.server_url(init_server)

    @cached_property
    def _airgap_hashes(self) -> dict[str, str]:
        airgap = self.cluster.airgap
        if airgap is None:
            return {}
        hashes = {
            "binary": _file_sha256(airgap.k3s_binary),
            "installer": _file_sha256(airgap.install_script),
        }
        if airgap.images is not None:
            hashes["images"] = _file_sha256(airgap.images)
        return hashes

    # --- planning ---------------------------------------------------------------------------
    def plan(self, facts: dict[str, HostFacts], state: ClusterState) -> dict[str, HostPlan]:
        """Each host's config is rendered once, with the join token as a placeholder; when the
        token is known (the cluster runs) the filled text's hash is compared with the host's."""
        plans = {}
        known = self.known_values(state)
        for host in self.inventory.hosts:
            is_init = host.name == state.init_server.name
            k = k3s_facts(facts[host.name])
            token = None if is_init else (JOIN_TOKEN if host.role == "server" else AGENT_TOKEN)
            config = self.render_config(host, state.init_server, token.text if token else None)
            fills = tuple(p for p in (token, AGENT_SECRET if host.role == "server" else None) if p is not None)
            desired: str | None = None
            if all(p in known for p in fills):
                filled = config
                for p in fills:
                    value = known[p]
                    filled = filled.replace(p.text, value.reveal() if isinstance(value, Secret) else value)
                desired = sha256_text(filled)
            action, reasons = self.decide(host, k, desired, state, is_init=is_init)
            upload = Upload(CONFIG, config, 0o600, fills, show=True)
            steps = self.host_steps(host, k, action, upload, config_changed=desired is None or desired != k.config_sha256)
            firewall = self.firewalld_step(host, k)
            if firewall is not None:
                steps.insert(0, firewall)
                if action is Action.NOTHING:
                    action, reasons = Action.RECONFIGURE, [*reasons, firewall.reason]
            if is_init and action.changes:
                steps.append(self.wait_api_step(host))
            plans[host.name] = HostPlan(host, action, state.init_server, tuple(reasons), tuple(steps))
        return plans

    def decide(
        self, host: Host, k: K3sFacts, desired_config_sha: str | None, state: ClusterState, *, is_init: bool
    ) -> tuple[Action, list[str]]:
        """One host's action from its facts. ``desired_config_sha`` is None when the config
        cannot be known yet (the first server is about to be installed)."""
        if not k.installed:
            return (Action.INSTALL if is_init else Action.JOIN), ["k3s is not installed"]
        unit = UNITS[host.role]
        reasons: list[str] = []
        action = Action.NOTHING
        wanted = self.cluster.version
        if wanted and k.version != wanted:
            reasons.append(f"runs {k.version or 'an unknown version'}, the inventory wants {wanted}")
            action = Action.UPGRADE
        hashes = self._airgap_hashes
        if hashes and k.binary_sha256 != hashes["binary"]:
            reasons.append(f"{BIN} differs from cluster.airgap.k3s_binary")
            action = Action.UPGRADE
        if "images" in hashes and k.images_sha256 != hashes["images"]:
            reasons.append("the air-gap images differ from cluster.airgap.images")
            action = Action.UPGRADE
        if desired_config_sha is None:
            reasons.append("the first server is new: it will rejoin with the new token")
            action = action if action is Action.UPGRADE else Action.RECONFIGURE
        elif k.config_sha256 != desired_config_sha:
            reasons.append(f"{CONFIG} {'is missing' if k.config_sha256 is None else 'differs from the inventory'}")
            action = action if action is Action.UPGRADE else Action.RECONFIGURE
        node = state.node(host.name)
        if action is Action.NOTHING and node is not None and k.version and node.version and node.version != k.version:
            reasons.append(
                f"node {host.name} still runs {node.version} but {BIN} is {k.version}: {unit} was not restarted after the upgrade"
            )
            action = Action.UPGRADE
        if action is Action.NOTHING:
            if not k.active:
                reasons.append(f"{unit} is {k.service_state}")
                action = Action.RESTART
            elif state.nodes is not None and node is None:
                reasons.append(f"{unit} is active but node {host.name} is not registered")
                action = Action.RESTART
            elif node is not None and not node.is_ready:
                why = node.ready_condition.reason if node.ready_condition else "no Ready condition"
                reasons.append(f"node {host.name} is NotReady ({why})")
                action = Action.RESTART
        return action, reasons

    # --- steps ---------------------------------------------------------------------------------
    def host_steps(self, host: Host, k: K3sFacts, action: Action, config: Upload, *, config_changed: bool) -> list[Step]:
        """The steps for ``action``: the config first (0600, over SFTP, only when it differs),
        then a restart (reconfigure, restart) or the install script (install, join, upgrade).
        This is where a k3s agent joins: its config names the server and the token placeholder."""
        unit = UNITS[host.role]
        restart = Step(
            f"restart {unit}",
            f"{unit} picks up its config" if action is Action.RECONFIGURE else f"{unit} is down or its node is not Ready",
            (self._service_command(host, f"systemctl reset-failed {unit} 2>/dev/null; systemctl restart {unit}"),),
        )
        if action is Action.NOTHING:
            return []
        if action is Action.RESTART:
            return [restart]
        steps = []
        if config_changed:
            steps.append(
                Step(
                    f"upload {CONFIG}",
                    "its content differs from the rendered config" if k.config_sha256 else "the host has no config yet",
                    (config,),
                )
            )
        if action is Action.RECONFIGURE:
            return steps + [restart]
        replaced = self.replaced_artefacts(k)
        if not steps and not replaced and not self._version_differs(k):
            # the binary is already the wanted one, only the running process is old
            return [Step(f"restart {unit}", f"{unit} runs an older version than {BIN}", restart.operations)]
        return steps + self._install_steps(host, k, force_restart=k.installed and (config_changed or bool(replaced)))

    def firewalld_step(self, host: Host, k: K3sFacts) -> Step | None:
        """Open what k3s needs in an active firewalld (ports, and the pod and service networks
        as trusted sources), permanently, then reload. Already done: firewalld is not active, or
        every port and source is listed."""
        if k.firewalld != "active":
            return None
        ports = list(FIREWALLD_PORTS[host.role])
        if host.role == "server" and len(self.inventory.servers) > 1:
            ports.append(ETCD_PORTS)
        missing_ports = [p for p in ports if p not in k.firewalld_ports]
        missing_sources = [c for c in self.cluster_cidrs() if c not in k.firewalld_trusted]
        if not missing_ports and not missing_sources:
            return None
        commands = []
        if missing_ports:
            commands.append("firewall-cmd --permanent " + " ".join(f"--add-port={p}" for p in missing_ports))
        if missing_sources:
            commands.append(
                "firewall-cmd --permanent --zone=trusted " + " ".join(f"--add-source={shlex.quote(c)}" for c in missing_sources)
            )
        commands.append("firewall-cmd --reload")
        return Step(
            "firewalld: open k3s ports",
            f"firewalld is active and {', '.join(missing_ports + missing_sources)} are not open",
            (Command(" && ".join(commands), 120),),
        )

    def cluster_cidrs(self) -> list[str]:
        """The pod and service networks: the servers' --cluster-cidr/--service-cidr, or k3s' defaults."""
        config, _ = flags_to_config(self.cluster.server_args)
        cidrs: list[str] = []
        for key, default in zip(("cluster-cidr", "service-cidr"), DEFAULT_CIDRS, strict=True):
            values = config.get(key) or [default]
            for value in values if isinstance(values, list) else [values]:
                cidrs += [c.strip() for c in str(value).split(",") if c.strip()]
        return cidrs

    def _version_differs(self, k: K3sFacts) -> bool:
        wanted = self.cluster.version
        return bool(wanted) and k.version != wanted

    def replaced_artefacts(self, k: K3sFacts) -> list[str]:
        """The air-gap files this run uploads over the host's copies (``binary``, ``images``):
        the install script's own before/after hashes cannot see them change."""
        hashes = self._airgap_hashes
        replaced: list[str] = []
        if hashes and k.binary_sha256 != hashes["binary"]:
            replaced.append("binary")
        if "images" in hashes and k.images_sha256 != hashes["images"]:
            replaced.append("images")
        return replaced

    def _install_steps(self, host: Host, k: K3sFacts, *, force_restart: bool) -> list[Step]:
        """Air-gap artefacts that differ, then the install script: the host ends with the wanted
        binary and a started unit. The script itself skips the restart when binary, unit and
        environment are the same as when it started, so ``force_restart`` is set whenever this
        plan changes what it cannot see (the config, an uploaded binary or images)."""
        cluster = self.cluster
        env: dict[str, str] = {"INSTALL_K3S_EXEC": host.role}
        if cluster.version:
            env["INSTALL_K3S_VERSION"] = cluster.version
        elif cluster.channel:
            env["INSTALL_K3S_CHANNEL"] = cluster.channel
        if force_restart:
            env["INSTALL_K3S_FORCE_RESTART"] = "true"
        steps = []
        airgap = cluster.airgap
        if airgap is not None:
            hashes = self._airgap_hashes
            if k.binary_sha256 != hashes["binary"]:
                steps.append(
                    Step(
                        f"upload {BIN}",
                        "the host's binary differs from cluster.airgap.k3s_binary",
                        (Upload(BIN, mode=0o755, local_file=airgap.k3s_binary),),
                    )
                )
            if airgap.images is not None and k.images_sha256 != hashes["images"]:
                path = f"{IMAGES_DIR}/{airgap.images.name}"
                steps.append(
                    Step(
                        f"upload {path}",
                        "the host's images differ from cluster.airgap.images",
                        (Upload(path, mode=0o644, local_file=airgap.images),),
                    )
                )
            if k.installer_sha256 != hashes["installer"]:
                steps.append(
                    Step(
                        f"upload {INSTALLER}",
                        "the host's install script differs from cluster.airgap.install_script",
                        (Upload(INSTALLER, mode=0o755, local_file=airgap.install_script),),
                    )
                )
            env["INSTALL_K3S_SKIP_DOWNLOAD"] = "true"
            env["INSTALL_K3S_SKIP_SELINUX_RPM"] = "true"
            fetch = ""
        else:
            url = shlex.quote(cluster.install_script_url)
            fetch = f"mkdir -p /var/lib/provisioner && {{ curl -sfL {url} -o {INSTALLER} || wget -qO {INSTALLER} {url}; }} && "
        assignments = " ".join(f"{key}={shlex.quote(value)}" for key, value in sorted(env.items()))
        command = f"{fetch}env {assignments} timeout {int(self.timeout)} sh {INSTALLER}"
        reason = "k3s is not installed" if not k.installed else "another version, binary or config is wanted"
        # online, the install script downloads the binary into /usr/local/bin
        space = () if airgap is not None else ((BIN_DIR, DOWNLOAD_SPACE),)
        steps.append(Step(f"run the install script as {host.role}", reason, (self._service_command(host, command, space),)))
        return steps

    def _service_command(self, host: Host, command: str, space: tuple[tuple[str, int], ...] = ()) -> Command:
        """A command that (re)starts the k3s unit; its journal explains a failure."""
        return Command(command, self.timeout + 30, journal_unit=UNITS[host.role], space=space)

    def join_secret_step(self, init_server: Host) -> Step:
        """The full server token (K10<ca-hash>::server:<secret>, for servers) and agent token
        (K10<ca-hash>::node:<secret>, for agents), read as root once both files exist."""
        return Step(
            f"read the join tokens from {init_server.name}",
            "servers join with the server token, agents with the agent token",
            (
                ReadValue(
                    f"cat {NODE_TOKEN} {AGENT_TOKEN_FILE}",
                    (JOIN_TOKEN, AGENT_TOKEN),
                    _tokens,
                    f"{NODE_TOKEN} and {AGENT_TOKEN_FILE} did not appear within {self.timeout:.0f}s",
                    timeout=60,
                    retry_for=self.timeout,
                ),
            ),
        )

    def service_unit(self, host: Host) -> str:
        return UNITS[host.role]

    # --- day 2: remove, upgrade, reset ------------------------------------------------------------
    def uninstall_steps(self, host: Host, facts: HostFacts) -> list[Step]:
        """The uninstall script the installer wrote for the role the host runs (it stops k3s,
        removes the binary, units, data and /etc/rancher/k3s), then the files this tool wrote.
        Already done: no k3s unit on the host (only the file removal runs, a no-op then)."""
        k = k3s_facts(facts)
        steps = []
        if k.role is not None:
            script = f"/usr/local/bin/{UNITS[k.role]}-uninstall.sh"
            steps.append(
                Step(
                    f"run {script}",
                    f"the k3s installer wrote it when {host.name} was installed as {k.role}",
                    (Command(script, 300, hint=f"the script is what the k3s installer left on {host.name}"),),
                )
            )
        steps.append(Step("remove the files provisioner wrote", f"{CONFIG} and {INSTALLER}", (Command(f"rm -f {CONFIG} {INSTALLER}", 60),)))
        return steps

    def embedded_etcd(self, servers: int) -> bool:
        """k3s with more than one server runs embedded etcd (the first server has cluster-init);
        deleting a server's Node object makes k3s remove its etcd member."""
        return servers > 1

    def upgraded_version(self) -> str | None:
        return self.cluster.version


def k3s_facts(facts: HostFacts) -> K3sFacts:
    """The host's k3s facts (gathered with the k3s fact script)."""
    assert isinstance(facts.dist, K3sFacts), "facts were gathered for k3s"
    return facts.dist


def _tokens(output: str) -> tuple[str, ...] | None:
    """(server token, agent token) from the two files, once both are there."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if len(lines) == 2 and "::server:" in lines[0] and agent_token_secret(lines[1]):
        return lines[0], lines[1]
    return None


def agent_token_secret(token: str) -> str:
    """The secret of an agent token (``K10<hash>::node:<secret>``, or the bare secret); "" if none."""
    token = token.strip()
    if "::" in token:
        credentials = token.split("::", 1)[1]
        return credentials.split(":", 1)[1] if ":" in credentials else credentials
    return token


def sqlite_conversion_refused(host: Host) -> str:
    """Why a running SQLite server is not turned into an etcd cluster, and how to do it by hand."""
    return (
        f"{host.name}: runs k3s with SQLite (it was started without cluster-init), and more servers need "
        "embedded etcd; provisioner does not convert a running datastore. To convert it by hand: "
        f"(1) back up /var/lib/rancher/k3s/server/db and /var/lib/rancher/k3s/server/token on {host.name}; "
        f"(2) with {host.name} as the only server in the inventory, set cluster.embedded_etcd: true and run "
        "`provisioner up` (k3s moves the SQLite data into etcd when restarted with cluster-init); "
        "(3) check `provisioner status`; (4) add the other servers to the inventory and run `provisioner up` again"
    )


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
