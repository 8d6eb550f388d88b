"""What a finished action tells: per-host outcomes, the plan, nodes, kubeconfig, warnings.

``RunSummary`` is all the report (``provisioner.report``) and callers of ``provisioner.actions``
see of a run; the phases' working context stays inside the action.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from provisioner.checks import CheckResult
from provisioner.disruption import Blocker
from provisioner.executor import StepRecord
from provisioner.inventory import Host
from provisioner.kubeconfig import Check, WriteResult
from provisioner.nodes import Node
from provisioner.removal import RemovalPlan
from provisioner.steps import Action, RunPlan


class Result(str, Enum):
    """What happened to one host in this run."""

    UNCHANGED = "unchanged"
    CHANGED = "changed"
    FAILED = "failed"


@dataclass
class HostOutcome:
    """One host's action, result, time, error line and the steps it ran."""

    action: Action = Action.NOTHING
    result: Result = Result.UNCHANGED
    seconds: float = 0.0
    error: str = ""
    steps: list[StepRecord] = field(default_factory=list)


@dataclass(frozen=True)
class FetchedKubeconfig:
    """The rewritten admin kubeconfig, where it went, and the check from this machine."""

    config: Mapping[str, object]
    context: str
    written: WriteResult
    check: Check | None = None


@dataclass(frozen=True)
class HostCounts:
    """How many commands and uploads reached a host (SSH channels, SFTP writes)."""

    commands: int
    uploads: int


@dataclass(frozen=True)
class RunSummary:
    """Everything a finished action reports."""

    cluster_name: str
    inventory_hosts: tuple[Host, ...]
    hosts: tuple[Host, ...]  # the hosts the action worked on
    outcomes: Mapping[str, HostOutcome]
    counts: Mapping[str, HostCounts]
    plan: RunPlan | None = None
    cluster_steps: tuple[StepRecord, ...] = ()
    applied_addons: tuple[str, ...] = ()
    nodes: tuple[Node, ...] | None = None
    kubeconfig: FetchedKubeconfig | None = None
    warnings: tuple[str, ...] = ()
    unreachable: Mapping[str, str] = field(default_factory=dict)
    removal: RemovalPlan | None = None
    blockers: tuple[Blocker, ...] = ()
    upgraded: tuple[str, ...] = ()
    #: Kubeconfig files ``reset`` took the cluster's entries out of (path, backup).
    kubeconfig_cleaned: tuple[tuple[Path, Path | None], ...] = ()
    checks: tuple[CheckResult, ...] = ()  # `check`, `up --check`

    @property
    def roles(self) -> dict[str, str]:
        return {h.name: h.role for h in self.inventory_hosts}

    @property
    def kubeconfig_path(self) -> Path | None:
        return self.kubeconfig.written.path if self.kubeconfig else None
