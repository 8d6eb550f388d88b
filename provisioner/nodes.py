"""Kubernetes Node objects as the provisioner sees them, parsed from ``kubectl get nodes -o json``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from provisioner.errors import ProvisionerError

ROLE_LABEL_PREFIX = "node-role.kubernetes.io/"


@dataclass(frozen=True)
class Condition:
    type: str
    status: str
    reason: str = ""
    message: str = ""
    last_heartbeat: str = ""


@dataclass(frozen=True)
class Node:
    """The parts of a Node the provisioner reports and decides on."""

    name: str
    ready: str  # "True" | "False" | "Unknown"
    roles: tuple[str, ...]
    version: str
    internal_ip: str
    unschedulable: bool = False
    conditions: tuple[Condition, ...] = field(default=())
    taints: tuple[str, ...] = ()  # the effects of the node's taints (NoSchedule, NoExecute, …)

    @property
    def is_ready(self) -> bool:
        return self.ready == "True"

    @property
    def status_text(self) -> str:
        text = "Ready" if self.is_ready else "NotReady"
        return text + (",SchedulingDisabled" if self.unschedulable else "")

    @property
    def ready_condition(self) -> Condition | None:
        return next((c for c in self.conditions if c.type == "Ready"), None)

    def as_dict(self) -> dict[str, Any]:
        ready = self.ready_condition
        return {
            "name": self.name,
            "status": self.status_text,
            "ready": self.is_ready,
            "roles": list(self.roles),
            "version": self.version,
            "address": self.internal_ip,
            "reason": ready.reason if ready else "",
            "message": ready.message if ready else "",
        }


@dataclass(frozen=True)
class NodeListing:
    """What asking the API for its nodes gave: the nodes, or None and why not."""

    nodes: list[Node] | None
    error: str = ""


def parse_node_list(text: str) -> list[Node]:
    """Nodes from the JSON of ``kubectl get nodes -o json``."""
    try:
        data = json.loads(text)
    except ValueError as error:
        raise ProvisionerError(f"kubectl printed something that is not JSON: {error}") from None
    return [parse_node(item) for item in data.get("items", [])]


def parse_node(item: dict[str, Any]) -> Node:
    metadata = item.get("metadata", {})
    status = item.get("status", {})
    labels = metadata.get("labels") or {}
    roles = tuple(sorted(k[len(ROLE_LABEL_PREFIX) :] for k in labels if k.startswith(ROLE_LABEL_PREFIX) and k != ROLE_LABEL_PREFIX))
    conditions = tuple(
        Condition(
            type=c.get("type", ""),
            status=c.get("status", "Unknown"),
            reason=c.get("reason", ""),
            message=c.get("message", ""),
            last_heartbeat=c.get("lastHeartbeatTime", ""),
        )
        for c in status.get("conditions") or []
    )
    ready = next((c.status for c in conditions if c.type == "Ready"), "Unknown")
    address = next((a.get("address", "") for a in status.get("addresses") or [] if a.get("type") == "InternalIP"), "")
    return Node(
        name=metadata.get("name", ""),
        ready=ready,
        roles=roles,
        version=(status.get("nodeInfo") or {}).get("kubeletVersion", ""),
        internal_ip=address,
        unschedulable=bool((item.get("spec") or {}).get("unschedulable")),
        conditions=conditions,
        taints=tuple(t.get("effect", "") for t in (item.get("spec") or {}).get("taints") or []),
    )


@dataclass(frozen=True)
class Readiness:
    """Which expected nodes are Ready, not Ready, or not registered at all."""

    ready: tuple[str, ...]
    not_ready: tuple[Node, ...]
    missing: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return not self.not_ready and not self.missing


def readiness(nodes: list[Node], expected: list[str]) -> Readiness:
    """Compare the cluster's nodes with the node names the inventory expects."""
    by_name = {n.name: n for n in nodes}
    ready = tuple(n for n in expected if n in by_name and by_name[n].is_ready)
    not_ready = tuple(by_name[n] for n in expected if n in by_name and not by_name[n].is_ready)
    missing = tuple(n for n in expected if n not in by_name)
    return Readiness(ready, not_ready, missing)
