"""Checks of a running cluster: what ``provisioner check`` (and ``up --check``) report.

A check is a name, a status (ok or failed) and the reason, e.g. ``nodes Ready: failed: agent2
NotReady (NodeStatusUnknown: Kubelet stopped posting node status.)``. The judgments here are pure
functions of what the cluster and the hosts said (parsed ``kubectl … -o json`` output, the host
health facts of ``provisioner.health``); the phases under ``provisioner.phases.check_*`` ask, and
append the results to the run. Nothing here changes a cluster or a host.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from provisioner.errors import ProvisionerError
from provisioner.nodes import Node

#: The image of the workload check's Deployment: the upstream nginx image.
DEFAULT_IMAGE = "nginx:1.27"


class CheckStatus(str, Enum):
    OK = "ok"
    FAILED = "failed"


@dataclass(frozen=True)
class CheckResult:
    """One line of the check table: what was checked, whether it holds, and why."""

    name: str
    status: CheckStatus
    detail: str

    @property
    def ok(self) -> bool:
        return self.status is CheckStatus.OK

    def as_dict(self) -> dict[str, str | bool]:
        return {"name": self.name, "status": self.status.value, "ok": self.ok, "detail": self.detail}


def ok(name: str, detail: str) -> CheckResult:
    return CheckResult(name, CheckStatus.OK, detail)


def failed(name: str, detail: str) -> CheckResult:
    return CheckResult(name, CheckStatus.FAILED, detail)


@dataclass(frozen=True)
class CheckOptions:
    """What ``check`` (and ``up --check``) is asked to prove."""

    workload: bool = False
    image: str = DEFAULT_IMAGE
    #: Nodes that may be cordoned (spec.unschedulable) without failing the check.
    allow_cordoned: tuple[str, ...] = ()
    #: The kubeconfig to test the API through (default ./<cluster>.kubeconfig, as ``up`` writes it).
    kubeconfig: Path | None = None
    #: Seconds the hosts' clocks may differ.
    clock_bound: float = 2.0
    #: Percent of free disk (/ and /var/lib) and of available memory below which a host fails.
    min_free_percent: float = 10.0


class ChecksFailed(ProvisionerError):
    """At least one check failed; the table says which and why."""

    def __init__(self, failures: Sequence[CheckResult]) -> None:
        self.failures = tuple(failures)
        super().__init__(f"{len(self.failures)} check(s) failed: " + ", ".join(f.name for f in self.failures))

    def lines(self) -> list[str]:
        return [f"check failed: {f.name}: {f.detail}" for f in self.failures]


def _json(text: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as error:
        raise ProvisionerError(f"kubectl printed something that is not JSON for {what}: {error}") from None
    if not isinstance(data, dict):
        raise ProvisionerError(f"kubectl printed JSON that is not an object for {what}")
    return data


# --- nodes ------------------------------------------------------------------------------------


def node_checks(
    nodes: list[Node],
    expected: Sequence[str],
    *,
    version_problem: Callable[[str], str | None],
    allow_cordoned: Iterable[str] = (),
) -> list[CheckResult]:
    """Registered, Ready, on the wanted version, not cordoned: one row each, naming the nodes that
    fail it (nodes not in the inventory are listed by the API but not judged)."""
    by_name = {n.name: n for n in nodes}
    present = [by_name[name] for name in expected if name in by_name]
    missing = [name for name in expected if name not in by_name]
    rows = [
        failed("nodes registered", "no Node object for " + ", ".join(missing))
        if missing
        else ok("nodes registered", f"{len(expected)}/{len(expected)} inventory nodes have a Node object")
    ]

    def why(node: Node) -> str:
        condition = node.ready_condition
        if condition is None:
            return f"{node.name} has no Ready condition"
        reason = ": ".join(p for p in (condition.reason, condition.message) if p)
        return f"{node.name} {node.status_text}" + (f" ({reason})" if reason else "")

    not_ready = [n for n in present if not n.is_ready]
    rows.append(
        failed("nodes Ready", "; ".join(why(n) for n in not_ready))
        if not_ready
        else ok("nodes Ready", f"{len(present)}/{len(expected)} Ready")
    )
    wrong = [(n, problem) for n in present if (problem := version_problem(n.version)) is not None]
    versions = sorted({n.version for n in present})
    rows.append(
        failed("node versions", "; ".join(f"{n.name}: {problem}" for n, problem in wrong))
        if wrong
        else ok("node versions", "kubelet " + ", ".join(versions) if versions else "no nodes")
    )
    allowed = set(allow_cordoned)
    cordoned = [n.name for n in present if n.unschedulable and n.name not in allowed]
    expected_cordoned = [n.name for n in present if n.unschedulable and n.name in allowed]
    rows.append(
        failed(
            "nodes schedulable",
            "cordoned (spec.unschedulable): " + ", ".join(cordoned) + "; `kubectl uncordon` them, or pass --allow-cordoned NAME",
        )
        if cordoned
        else ok("nodes schedulable", "none cordoned" if not expected_cordoned else "cordoned as allowed: " + ", ".join(expected_cordoned))
    )
    return rows


def schedulable(nodes: Iterable[Node]) -> list[Node]:
    """Nodes a plain pod can land on: Ready, not cordoned, no NoSchedule/NoExecute taint."""
    return [
        n for n in nodes if n.is_ready and not n.unschedulable and not any(effect in ("NoSchedule", "NoExecute") for effect in n.taints)
    ]


# --- kube-system ------------------------------------------------------------------------------


def system_pods_check(text: str) -> CheckResult:
    """Every pod ``kubectl get pods -n kube-system -o json`` lists is Running or Succeeded (none
    listed is fine: a cluster may run its system components outside pods)."""
    name = "kube-system pods"
    items = _json(text, "the kube-system pods").get("items") or []
    bad = []
    for pod in items:
        phase = (pod.get("status") or {}).get("phase") or "Unknown"
        if phase not in ("Running", "Succeeded"):
            node = (pod.get("spec") or {}).get("nodeName") or "no node"
            bad.append(f"{(pod.get('metadata') or {}).get('name', '?')} {phase} ({node})")
    if bad:
        return failed(name, f"{len(bad)} of {len(items)} not Running: " + "; ".join(bad))
    return ok(name, f"{len(items)} Running or Succeeded" if items else "none listed")


def daemonset_check(namespace: str, ds_name: str, answered: bool, text: str) -> CheckResult:
    """A DaemonSet is ready on every node it should run on: ``desiredNumberScheduled`` pods, all
    ready (``numberReady``)."""
    name = f"DaemonSet {namespace}/{ds_name}"
    if not answered:
        return failed(name, f"not found: {text.strip().splitlines()[-1] if text.strip() else 'no output'}")
    status = _json(text, name).get("status") or {}
    desired = int(status.get("desiredNumberScheduled") or 0)
    ready = int(status.get("numberReady") or 0)
    if desired != ready:
        return failed(name, f"{ready}/{desired} pods ready")
    return ok(name, f"{ready}/{desired} pods ready")


def api_check(status: str, detail: str) -> CheckResult:
    """The result of testing the kubeconfig from this machine (``provisioner.kubeconfig.check``)."""
    name = "API through the kubeconfig"
    return ok(name, detail) if status == "ok" else failed(name, detail)
