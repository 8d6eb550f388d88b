"""What every distribution (k3s, kubeadm) provides to the phases, and the plan it produces.

Phases never ask which distribution they run: they call these methods. A distribution decides
from facts (``plan``) before anything changes, then carries out one host's plan (``apply``).
"""

from __future__ import annotations

import hashlib
import shlex
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar

from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

from provisioner.errors import HostError
from provisioner.inventory import url_host
from provisioner.secrets import REDACTOR, Secret

if TYPE_CHECKING:
    from provisioner.facts import HostFacts
    from provisioner.inventory import Host, Inventory
    from provisioner.nodes import Node
    from provisioner.remote import Remote


def sha256_text(text: str) -> str:
    """Hash of a rendered file, compared with the hash a host reports for its copy."""
    return hashlib.sha256(text.encode()).hexdigest()


class Action(str, Enum):
    """What a run does to one host."""

    INSTALL = "install"  # the first server of a new cluster
    JOIN = "join"  # a host that is not part of the cluster yet
    UPGRADE = "upgrade"  # installed, but another version (or binary) is wanted
    RECONFIGURE = "reconfigure"  # installed, but its configuration differs
    RESTART = "restart"  # installed and configured, but its service is down or its node not Ready
    NOTHING = "nothing"

    @property
    def changes(self) -> bool:
        return self is not Action.NOTHING


@dataclass(frozen=True)
class Step:
    """One change a plan makes on a host: what, why (from the facts), and how."""

    title: str
    reason: str
    run: Callable[[Remote], None] | None = field(default=None, compare=False, repr=False)


@dataclass
class HostPlan:
    """The decision for one host, why, and the configuration it will get (secrets masked)."""

    host: Host
    action: Action
    init_server: Host
    reasons: list[str] = field(default_factory=list)
    config_preview: str = ""
    steps: list[Step] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "host": self.host.name,
            "address": self.host.address,
            "role": self.host.role,
            "action": self.action.value,
            "reasons": list(self.reasons),
            "steps": [step.title for step in self.steps],
            "config": self.config_preview,
        }


class JoinTicket(Secret):
    """A join secret that comes with the CA hashes a joining host pins (kubeadm)."""

    __slots__ = ("ca_cert_hashes",)

    def __init__(self, token: str, ca_cert_hashes: tuple[str, ...]) -> None:
        super().__init__(token)
        self.ca_cert_hashes = ca_cert_hashes


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

    def node(self, name: str) -> Node | None:
        return next((n for n in self.nodes or [] if n.name == name), None)


class Distribution(ABC):
    """One way of building a cluster (k3s, kubeadm)."""

    name: ClassVar[str]
    api_port: ClassVar[int] = 6443
    #: Where the server keeps the admin kubeconfig to fetch.
    admin_kubeconfig: ClassVar[str]

    def __init__(self, inventory: Inventory, *, timeout: float = 300.0) -> None:
        self.inventory = inventory
        self.timeout = timeout

    # --- facts and validation -----------------------------------------------------------
    @abstractmethod
    def fact_script(self) -> str:
        """Shell lines printing this distribution's ``key=value`` facts (run as root)."""

    @abstractmethod
    def parse_facts(self, values: dict[str, str]) -> Any:
        """The distribution's facts from the fact script's output."""

    @abstractmethod
    def check_hosts(self, facts: dict[str, HostFacts]) -> list[str]:
        """Reasons the hosts cannot carry the cluster as the inventory describes it."""

    def host_warnings(self, facts: dict[str, HostFacts]) -> list[str]:
        """Things worth telling that do not stop the run."""
        return []

    def installed(self, facts: HostFacts) -> bool:
        """Whether this distribution is installed on the host."""
        return bool(getattr(facts.dist, "installed", False))

    def init_server(self, facts: dict[str, HostFacts]) -> Host:
        """The server that holds the cluster: the first inventory server already running it,
        otherwise the first server in the inventory."""
        servers = self.inventory.servers
        for server in servers:
            if self.installed(facts[server.name]):
                return server
        return servers[0]

    # --- cluster state ------------------------------------------------------------------
    @abstractmethod
    def read_state(self, remote: Remote, init_server: Host) -> ClusterState:
        """Join secret and nodes from the first server, as far as it answers."""

    def server_url(self, init_server: Host) -> str:
        """The API URL for clients and joining hosts: ``api_endpoint`` or the first server."""
        address = self.inventory.cluster.api_endpoint or init_server.address
        return f"https://{url_host(address)}:{self.api_port}"

    def list_nodes_command(self) -> str:
        return self.kubectl("get nodes -o json")

    def read_nodes(self, remote: Remote) -> list[Node] | None:
        """The cluster's nodes as the server's API lists them, or None if it does not answer."""
        from provisioner.nodes import parse_node_list

        result = remote.sudo(self.list_nodes_command(), check=False, timeout=30)
        return parse_node_list(result.stdout) if result.ok else None

    @abstractmethod
    def kubectl(self, args: str) -> str:
        """The command line that runs ``kubectl <args>`` as admin on a server."""

    def delete_node_command(self, name: str) -> str:
        return self.kubectl(f"delete node {shlex.quote(name)} --wait=true --timeout=60s")

    # --- planning and applying ----------------------------------------------------------
    @abstractmethod
    def plan(self, facts: dict[str, HostFacts], state: ClusterState) -> dict[str, HostPlan]:
        """Decide what to do on every host, from facts only. Renders every config (secrets
        masked) so a template error stops the run before anything changes."""

    @abstractmethod
    def bootstrap(self, remote: Remote, plan: HostPlan, facts: HostFacts) -> None:
        """Carry out the first server's plan and wait until its API answers."""

    def needs_join_secret(self, plan: HostPlan) -> bool:
        """Whether carrying out ``plan`` (of a host other than the first server) needs the secret."""
        return plan.action.changes

    @abstractmethod
    def join_secret(self, remote: Remote, state: ClusterState) -> Secret:
        """The secret other hosts join with, from the first server."""

    @abstractmethod
    def apply(self, remote: Remote, plan: HostPlan, facts: HostFacts, secret: Secret | None) -> None:
        """Carry out the plan of any other host (join, upgrade, reconfigure, restart)."""

    def cluster_steps(self, state: ClusterState) -> list[Step]:
        """Cluster-wide changes still needed once the first server runs (e.g. a network add-on)."""
        return []

    @abstractmethod
    def service_unit(self, host: Host) -> str:
        """The systemd unit that runs Kubernetes on ``host`` (its journal explains failures)."""

    def diagnose(self, remote: Remote, host: Host) -> str:
        """The last lines of the host's service journal, secrets masked, for errors and the log."""
        unit = self.service_unit(host)
        result = remote.sudo(f"journalctl -u {unit} -n 20 --no-pager -o cat", check=False, timeout=20)
        return REDACTOR.redact(result.stdout.strip())

    def wait_api(self, remote: Remote, host: Host) -> None:
        """Poll the API's /readyz on the server until it answers ok, up to the timeout; on
        timeout the error carries the last line of the service's journal."""
        probe = self.kubectl("get --raw=/readyz")
        retrying = Retrying(stop=stop_after_delay(self.timeout), wait=wait_fixed(2), retry=retry_if_result(lambda ok: not ok))
        try:
            retrying(lambda: remote.sudo(probe, check=False, timeout=20).stdout.strip() == "ok")
        except RetryError:
            journal = self.diagnose(remote, host)
            raise HostError(
                host.name,
                f"the Kubernetes API ({self.name}) did not become ready within {self.timeout:.0f}s"
                + (f"; last log line: {journal.splitlines()[-1]}" if journal else ""),
            ) from None
