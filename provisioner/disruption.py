"""Which PodDisruptionBudgets block draining a node: pure parsers and the selector match.

``kubectl drain`` evicts through the eviction API, which refuses an eviction that would take a
PodDisruptionBudget below what it allows (``disruptionsAllowed`` 0). kubectl only says "Cannot
evict pod as it would violate the pod's disruption budget"; this module says which budget:
the PDBs (``kubectl get pdb -A -o json``) whose selector matches a pod on the node
(``kubectl get pods -A --field-selector spec.nodeName=NODE -o json``) and allow no disruption.

Selector semantics follow the Kubernetes API (policy/v1): ``matchLabels`` and
``matchExpressions`` (In, NotIn, Exists, DoesNotExist) all have to hold; an empty selector
(``{}``) matches every pod of the PDB's namespace; a missing selector matches none.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from provisioner.errors import ProvisionerError


@dataclass(frozen=True)
class Pod:
    """A pod on the node being drained."""

    namespace: str
    name: str
    labels: Mapping[str, str]
    #: The kind of its controller (ReplicaSet, DaemonSet…), "" for a bare pod.
    owner_kind: str = ""


@dataclass(frozen=True)
class Budget:
    """A PodDisruptionBudget: where it is, what it selects, and how many disruptions it allows."""

    namespace: str
    name: str
    selector: Mapping[str, Any] | None
    disruptions_allowed: int
    min_available: str = ""
    max_unavailable: str = ""


@dataclass(frozen=True)
class Blocker:
    """A budget that allows no disruption and covers pods on the node."""

    budget: Budget
    pods: tuple[str, ...]  # namespace/name of the pods on the node it covers

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.budget.name,
            "namespace": self.budget.namespace,
            "disruptionsAllowed": self.budget.disruptions_allowed,
            "minAvailable": self.budget.min_available,
            "maxUnavailable": self.budget.max_unavailable,
            "pods": list(self.pods),
        }


def _items(text: str, what: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(text)
    except ValueError as error:
        raise ProvisionerError(f"kubectl printed {what} that is not JSON: {error}") from None
    return [i for i in data.get("items") or [] if isinstance(i, dict)]


def parse_pods(text: str) -> list[Pod]:
    """Pods from ``kubectl get pods -o json``."""
    pods = []
    for item in _items(text, "pods"):
        meta = item.get("metadata") or {}
        owners = meta.get("ownerReferences") or []
        owner = next((o.get("kind", "") for o in owners if o.get("controller")), "")
        pods.append(Pod(meta.get("namespace", "default"), meta.get("name", ""), dict(meta.get("labels") or {}), owner))
    return pods


def parse_budgets(text: str) -> list[Budget]:
    """PodDisruptionBudgets from ``kubectl get pdb -A -o json``."""
    budgets = []
    for item in _items(text, "PodDisruptionBudgets"):
        meta = item.get("metadata") or {}
        spec = item.get("spec") or {}
        status = item.get("status") or {}
        budgets.append(
            Budget(
                namespace=meta.get("namespace", "default"),
                name=meta.get("name", ""),
                selector=spec.get("selector"),
                disruptions_allowed=int(status.get("disruptionsAllowed") or 0),
                min_available=str(spec.get("minAvailable", "")),
                max_unavailable=str(spec.get("maxUnavailable", "")),
            )
        )
    return budgets


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Whether a label selector (``matchLabels`` + ``matchExpressions``) selects ``labels``."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key = expression.get("key", "")
        operator = expression.get("operator", "")
        values = set(expression.get("values") or [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False  # an unknown operator selects nothing, as the API refuses it
    return True


def covered(budget: Budget, pods: list[Pod]) -> list[Pod]:
    """The pods (of the budget's namespace) that ``budget`` selects."""
    return [p for p in pods if p.namespace == budget.namespace and selector_matches(budget.selector, p.labels)]


def blockers(budgets: list[Budget], pods_on_node: list[Pod]) -> list[Blocker]:
    """Budgets that allow no disruption and cover a pod the drain still has to evict
    (DaemonSet pods are not evicted by ``--ignore-daemonsets``, so they are left out)."""
    evictable = [p for p in pods_on_node if p.owner_kind != "DaemonSet"]
    out = []
    for budget in budgets:
        if budget.disruptions_allowed > 0:
            continue
        pods = covered(budget, evictable)
        if pods:
            out.append(Blocker(budget, tuple(f"{p.namespace}/{p.name}" for p in pods)))
    return out


class DrainBlocked(ProvisionerError):
    """A drain did not finish before ``--drain-timeout``; the node is left cordoned and nothing
    after the drain ran. ``blockers`` are the PDBs refusing evictions (may be empty when
    something else held the drain up)."""

    def __init__(self, node: str, timeout: float, blockers: list[Blocker], detail: str = "") -> None:
        self.node = node
        self.blockers = blockers
        why = (
            f"blocked by PodDisruptionBudget {', '.join(f'{b.budget.namespace}/{b.budget.name}' for b in blockers)}"
            if blockers
            else (detail or "kubectl drain did not finish")
        )
        super().__init__(
            f"drain of {node} did not finish within {timeout:.0f}s: {why}; {node} is left cordoned, nothing was deleted or uninstalled"
        )

    def lines(self) -> list[str]:
        out = [str(self)]
        for b in self.blockers:
            out.append(
                f"  PDB {b.budget.namespace}/{b.budget.name}: disruptionsAllowed={b.budget.disruptions_allowed}, covers {', '.join(b.pods)}"
            )
        return out
