"""What every distribution (k3s, kubeadm) provides to the phases, and the plan it produces.

Phases never ask which distribution they run: they call these methods. A distribution turns facts
and the cluster state into steps (``plan``, ``cluster_plan``) before anything changes; the
executor (``provisioner.executor``) runs exactly those steps. Nothing here runs a change.
"""

from __future__ import annotations

import hashlib
import shlex
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from provisioner.inventory import url_host
from provisioner.nodes import Node, NodeListing, parse_node_list
from provisioner.secrets import Secret
from provisioner.steps import (
    Action,
    ClusterPlan,
    Command,
    HostPlan,
    Placeholder,
    Step,
    Wait,
)

if TYPE_CHECKING:
    from provisioner.facts import DistributionFacts, HostFacts
    from provisioner.inventory import Host, Inventory
    from provisioner.remote import Remote

__all__ = ["Action", "ClusterState", "Distribution", "HostPlan", "Step", "sha256_text"]


def sha256_text(text: str) -> str:
    """Hash of a rendered file, compared with the hash a host reports for its copy."""
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class ClusterState:
    """What the running cluster says, read from the first server before planning.

    ``nodes`` is None when the API could not be asked (new cluster, or server down).
    """

    init_server: Host
    join_secret: Secret | None = None
    nodes: list[Node] | None = None
    #: Fingerprints of cluster add-ons as found (e.g. {"flannel": "<manifest hash>"}), None = absent.
    addons: dict[str, str | None] = field(default_factory=dict)
    #: Other secrets read from the first server, by name (k3s: "agent-token").
    secrets: dict[str, Secret] = field(default_factory=dict)

    #: ``nodes`` by name, for the list it was built from (planning asks once per host).
    _by_name: tuple[list[Node] | None, dict[str, Node]] = field(default=(None, {}), init=False, repr=False, compare=False)

    def node(self, name: str) -> Node | None:
        """The Node called ``name``, if the API listed it; a lookup, not a scan of the list."""
        listed, index = self._by_name
        if listed is not self.nodes:
            index = {}
            for node in self.nodes or []:
                index.setdefault(node.name, node)
            self._by_name = (self.nodes, index)
        return index.get(name)


class Distribution(ABC):
    """One way of building a cluster (k3s, kubeadm)."""

    name: ClassVar[str]
    api_port: ClassVar[int] = 6443
    #: Where the server keeps the admin kubeconfig to fetch.
    admin_kubeconfig: ClassVar[str]
    #: (namespace, name) of the DaemonSets the distribution needs ready on every node (``check``).
    system_daemonsets: ClassVar[tuple[tuple[str, str], ...]] = ()

    def __init__(self, inventory: Inventory, *, timeout: float = 300.0) -> None:
        self.inventory = inventory
        self.timeout = timeout

    # --- facts and validation -----------------------------------------------------------
    @abstractmethod
    def fact_script(self) -> str:
        """Shell lines printing this distribution's ``key=value`` facts (run as root)."""

    @abstractmethod
    def parse_facts(self, values: dict[str, str]) -> DistributionFacts:
        """The distribution's facts from the fact script's output (a pure parser)."""

    @abstractmethod
    def check_hosts(self, facts: dict[str, HostFacts]) -> list[str]:
        """Reasons the hosts cannot carry the cluster as the inventory describes it."""

    def host_warnings(self, facts: dict[str, HostFacts]) -> list[str]:
        """Things worth telling that do not stop the run."""
        return []

    def installed(self, facts: HostFacts) -> bool:
        """Whether this distribution is installed on the host."""
        return facts.dist is not None and facts.dist.installed

    def init_server(self, facts: dict[str, HostFacts]) -> Host:
        """The server that holds the cluster: the first inventory server already running it,
        otherwise the first server in the inventory."""
        servers = self.inventory.servers
        for server in servers:
            if server.name in facts and self.installed(facts[server.name]):
                return server
        return servers[0]

    # --- the API: where it is, and what it says ----------------------------------------------
    def api_address(self, init_server: Host) -> str:
        """The one answer to "which address is the API": ``api_endpoint`` or the first server."""
        return self.inventory.cluster.api_endpoint or init_server.address

    def api_host_port(self, init_server: Host) -> str:
        """``host:port`` of the API (kubeadm's controlPlaneEndpoint)."""
        return f"{url_host(self.api_address(init_server))}:{self.api_port}"

    def server_url(self, init_server: Host) -> str:
        """The API URL for clients and joining hosts."""
        return f"https://{self.api_host_port(init_server)}"

    @abstractmethod
    def read_state(self, remote: Remote, init_server: Host) -> ClusterState:
        """Join secret and nodes from the first server, as far as it answers."""

    @abstractmethod
    def kubectl(self, args: str) -> str:
        """The command line that runs ``kubectl <args>`` as admin on a server."""

    def list_nodes(self, remote: Remote, *, timeout: float = 30) -> NodeListing:
        """The one place that lists the cluster's nodes (``kubectl get nodes -o json`` on a
        server, parsed); ``nodes`` is None with the reason when the API does not answer."""
        result = remote.sudo(self.kubectl("get nodes -o json"), check=False, timeout=timeout)
        if not result.ok:
            return NodeListing(None, (result.stderr.strip().splitlines() or ["no output"])[-1])
        return NodeListing(parse_node_list(result.stdout))

    def version_problem(self, kubelet_version: str) -> str | None:
        """Why a node's kubelet version is not the one the inventory pins (None: it is, or the
        inventory follows a channel). Here: the exact version."""
        wanted = self.inventory.cluster.version
        if not wanted or kubelet_version == wanted:
            return None
        return f"runs {kubelet_version or 'an unknown version'}, the inventory wants {wanted}"

    def delete_node_command(self, name: str) -> str:
        return self.kubectl(f"delete node {shlex.quote(name)} --wait=true --timeout=60s")

    # --- planning -------------------------------------------------------------------------
    @abstractmethod
    def plan(self, facts: dict[str, HostFacts], state: ClusterState) -> dict[str, HostPlan]:
        """Every host's action and steps, from facts and state only. Renders every config
        (secrets as placeholders) so a template error stops the run before anything changes."""

    def known_values(self, state: ClusterState) -> dict[Placeholder, Secret | str]:
        """Placeholder values already known from the cluster state (e.g. the k3s node token)."""
        return {}

    def addon_steps(self, state: ClusterState) -> list[Step]:
        """Cluster-wide changes still needed once the first server runs (e.g. a network add-on)."""
        return []

    @abstractmethod
    def join_secret_step(self, init_server: Host) -> Step:
        """The step, on the first server, that produces what joining hosts' placeholders need."""

    def cluster_plan(self, plans: dict[str, HostPlan], state: ClusterState) -> ClusterPlan:
        """Add-ons, the join-secret step (only when a host needs a value not known yet) and the
        deletion of stale Node objects of hosts about to join (a reinstalled host would be
        refused under its old name)."""
        init = state.init_server
        known = frozenset(self.known_values(state))
        needed = frozenset().union(*(p.needs for n, p in plans.items() if n != init.name)) - known
        join_secret = self.join_secret_step(init) if needed else None
        stale: list[Step] = []
        warnings: list[str] = []
        fresh_cluster = plans[init.name].action is Action.INSTALL
        for name, plan in plans.items():
            if plan.action is not Action.JOIN or fresh_cluster:
                continue
            host = plan.host
            command = self.delete_node_command(name)
            if state.nodes is None:  # the API did not answer while reading state: delete if present
                check = self.kubectl(f"get node {shlex.quote(name)}")
                stale.append(
                    Step(
                        f"delete the Node object {name} if it exists",
                        "the API did not list the nodes before the run; a reinstalled host is refused "
                        "under the name of a node that still exists",
                        (Command(f"if {check} >/dev/null 2>&1; then {command}; fi", 90),),
                    )
                )
                continue
            node = state.node(name)
            if node is None:
                continue
            if node.is_ready and node.internal_ip not in (host.address, host.node_ip):
                warnings.append(
                    f"node {name} is Ready at {node.internal_ip}, a different machine than {host.address}; "
                    "it is deleted because the inventory gives the name to this host"
                )
            stale.append(
                Step(
                    f"delete the stale Node object {name}",
                    f"{name} joins anew, its Node object is left from an earlier install",
                    (Command(command, 90),),
                )
            )
        return ClusterPlan(tuple(self.addon_steps(state)), join_secret, tuple(stale), tuple(warnings))

    def wait_api_step(self, host: Host) -> Step:
        """Poll the API's /readyz on the server until it answers ok, up to the timeout; on
        timeout the error carries the last line of the service's journal."""
        return Step(
            "wait for the Kubernetes API",
            f"later steps need the API on {host.name}",
            (
                Wait(
                    self.kubectl("get --raw=/readyz"),
                    "ok",
                    self.timeout,
                    f"the Kubernetes API ({self.name})",
                    journal_unit=self.service_unit(host),
                ),
            ),
        )

    @abstractmethod
    def service_unit(self, host: Host) -> str:
        """The systemd unit that runs Kubernetes on ``host`` (its journal explains failures)."""

    # --- day 2: remove, upgrade, reset ------------------------------------------------------------
    def uninstall_steps(self, host: Host, facts: HostFacts) -> list[Step]:
        """Steps that take the distribution off ``host`` (what its installer and this tool wrote),
        so that the host can join again later under the same name."""
        raise NotImplementedError(f"{self.name} cannot uninstall")

    def embedded_etcd(self, servers: int) -> bool:
        """Whether ``servers`` servers keep the cluster's state in an etcd of their own (then a
        removal must keep the quorum)."""
        return False

    def upgraded_version(self) -> str | None:
        """The kubeletVersion a node reports once upgraded to the inventory's version (a prefix
        ending in "." when any patch release will do); None when the inventory names none."""
        return None
