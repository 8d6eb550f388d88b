"""The plan of ``provisioner remove``: which nodes, in which order, and the refusals.

``plan_removal`` is pure: from the inventory, the cluster state and the facts of the hosts that
answered, it either refuses (unknown names, the last server, a server whose removal loses the
etcd quorum) or returns every step as data: per node cordon → drain → delete the Node object on
a server that stays, then the distribution's uninstall steps on the host. ``--dry-run`` prints
this plan; ``remove`` runs exactly it.
"""

from __future__ import annotations

from dataclasses import dataclass

from provisioner import nodeops
from provisioner.distros.base import ClusterState, Distribution
from provisioner.errors import ProvisionerError, UsageError
from provisioner.facts import HostFacts
from provisioner.inventory import Host, Inventory
from provisioner.steps import Step

SERVER_ROLES = {"control-plane", "master", "etcd"}


class RemovalRefused(ProvisionerError):
    """A removal that would break the cluster; nothing was changed."""

    exit_code = 2


@dataclass(frozen=True)
class NodeRemoval:
    """One node to remove: the API steps (None when it has no Node object) and the host's."""

    name: str
    role: str
    host: Host | None
    cordon: Step | None
    drain: Step | None
    delete: Step | None
    uninstall: tuple[Step, ...]
    #: Why the uninstall is skipped ("" when it runs).
    skipped: str = ""
    unreachable: bool = False

    @property
    def api_steps(self) -> tuple[Step, ...]:
        return tuple(s for s in (self.cordon, self.drain, self.delete) if s is not None)

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "role": self.role,
            "address": self.host.address if self.host else None,
            "in_inventory": self.host is not None,
            "api_steps": [s.as_dict() for s in self.api_steps],
            "uninstall": [s.as_dict() for s in self.uninstall],
            "uninstall_skipped": self.skipped or None,
        }


@dataclass(frozen=True)
class RemovalPlan:
    """All removals; API steps run on ``api_host`` (a server that stays)."""

    api_host: Host
    nodes: tuple[NodeRemoval, ...]

    def as_dict(self) -> dict[str, object]:
        return {"api_host": self.api_host.name, "nodes": [n.as_dict() for n in self.nodes]}


def cluster_servers(inventory: Inventory, state: ClusterState) -> list[str]:
    """Servers of the cluster: the inventory's and the Node objects with a control-plane role."""
    names = [h.name for h in inventory.servers]
    for node in state.nodes or []:
        if SERVER_ROLES & set(node.roles) and node.name not in names:
            names.append(node.name)
    return names


def check_quorum(dist: Distribution, servers: list[str], removed: list[str], state: ClusterState) -> None:
    """Refuses removing the last server, and (embedded etcd) servers whose removal leaves fewer
    healthy members than the quorum of the current member count."""
    leaving = [s for s in servers if s in removed]
    if not leaving:
        return
    staying = [s for s in servers if s not in removed]
    if not staying:
        raise RemovalRefused(
            f"refusing to remove {', '.join(leaving)}: it is the cluster's last server "
            "(use `provisioner reset` to tear the whole cluster down)"
        )
    members = len(servers)
    if dist.embedded_etcd(members) and members > 1:
        quorum = members // 2 + 1
        healthy = [s for s in staying if state.nodes is None or (state.node(s) is not None and state.node(s).is_ready)]  # type: ignore[union-attr]
        if len(healthy) < quorum:
            raise RemovalRefused(
                f"refusing to remove {', '.join(leaving)}: etcd has {members} members and needs {quorum} for quorum; "
                f"{len(healthy)} healthy would remain ({', '.join(healthy) or 'none'}). Add a server first, "
                "or remove one server at a time from a larger cluster"
            )


def plan_removal(
    targets: tuple[str, ...],
    inventory: Inventory,
    dist: Distribution,
    state: ClusterState,
    facts: dict[str, HostFacts],
    drain: nodeops.DrainOptions,
) -> RemovalPlan:
    """Every step of removing ``targets``, or a refusal; nothing runs here."""
    by_name = {h.name: h for h in inventory.hosts}
    if state.nodes is None:
        raise ProvisionerError(
            f"the API on {state.init_server.name} did not list the nodes; nothing was changed (check `provisioner status`)"
        )
    node_names = [n.name for n in state.nodes]
    known = list(by_name) + [n for n in node_names if n not in by_name]
    unknown = [t for t in targets if t not in known]
    if unknown:
        raise UsageError(f"unknown node(s): {', '.join(unknown)}; known: {', '.join(known)}")
    servers = cluster_servers(inventory, state)
    check_quorum(dist, servers, list(targets), state)
    api = next((h for h in inventory.servers if h.name not in targets and h.name in facts and dist.installed(facts[h.name])), None)
    if api is None:
        raise ProvisionerError("no reachable server outside the nodes to remove can run kubectl; nothing was changed")
    removals = []
    for name in dict.fromkeys(targets):
        host = by_name.get(name)
        node = state.node(name)
        role = host.role if host else ("server" if node and SERVER_ROLES & set(node.roles) else "agent")
        cordon = drain_step = delete = None
        if node is not None:
            cordon = nodeops.cordon(dist, name, "no new pods are scheduled on it")
            drain_step = nodeops.drain(dist, name, drain, "its pods move elsewhere, as their PodDisruptionBudgets allow")
            why = (
                "its etcd member is removed with it" if role == "server" and dist.embedded_etcd(len(servers)) else "the cluster forgets it"
            )
            delete = nodeops.delete_node(dist, name, why)
        uninstall: tuple[Step, ...] = ()
        skipped = ""
        unreachable = False
        if host is None:
            skipped = "not in the inventory: no host to uninstall on"
        elif name not in facts:
            skipped = "unreachable over SSH: uninstall skipped"
            unreachable = True
        else:
            uninstall = tuple(dist.uninstall_steps(host, facts[name]))
        removals.append(NodeRemoval(name, role, host, cordon, drain_step, delete, uninstall, skipped, unreachable))
    return RemovalPlan(api, tuple(removals))
