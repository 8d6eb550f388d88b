"""Phases: the steps an action is made of, and the context they share.

An action (up, plan, status, kubeconfig) is an ordered list of phases (see ``provisioner.actions``).
Each phase reads what earlier phases left in the ``Context`` and adds its own result. Work on
several hosts runs in parallel through ``Context.each``, bounded by ``--concurrency``; a host that
fails is recorded in ``Context.failures`` and left alone by later phases.
"""

from __future__ import annotations

import logging
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from provisioner.distros import ClusterState, Distribution, HostPlan
from provisioner.distros.base import Step
from provisioner.errors import ProvisionerError
from provisioner.facts import HostFacts
from provisioner.inventory import Host, Inventory
from provisioner.kubeconfig import Check, WriteResult
from provisioner.nodes import Node
from provisioner.progress import SilentReporter
from provisioner.remote import Remote
from provisioner.secrets import Secret

log = logging.getLogger("provisioner.phases")

T = TypeVar("T")

Connector = Callable[[Inventory, Host], Remote]


@dataclass
class Options:
    """Run options from the command line."""

    concurrency: int = 10
    timeout: float = 300.0
    merge: bool = False
    set_current: bool = False
    replace: bool = False
    kubeconfig_out: Path | None = None
    context_name: str | None = None


@dataclass
class HostOutcome:
    """What happened to one host in this run, for the summary."""

    action: str = "nothing"
    result: str = "unchanged"  # "unchanged" | "changed" | "failed"
    seconds: float = 0.0
    error: str = ""


@dataclass
class Context:
    """Everything a run knows. Phases fill it in order."""

    inventory: Inventory
    distribution: Distribution
    options: Options
    connector: Connector
    reporter: SilentReporter = field(default_factory=SilentReporter)
    hosts: list[Host] = field(default_factory=list)  # the hosts this action works on
    remotes: dict[str, Remote] = field(default_factory=dict)
    facts: dict[str, HostFacts] = field(default_factory=dict)
    state: ClusterState | None = None
    plans: dict[str, HostPlan] = field(default_factory=dict)
    cluster_steps: list[Step] = field(default_factory=list)
    applied_cluster_steps: list[str] = field(default_factory=list)
    join_secret: Secret | None = None
    failures: dict[str, ProvisionerError] = field(default_factory=dict)
    outcomes: dict[str, HostOutcome] = field(default_factory=dict)
    nodes: list[Node] | None = None
    kubeconfig: Any = None
    kubeconfig_written: WriteResult | None = None
    kubeconfig_check: Check | None = None
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.hosts:
            self.hosts = list(self.inventory.hosts)

    @property
    def init_server(self) -> Host:
        assert self.state is not None, "cluster state is read before this is used"
        return self.state.init_server

    def remote(self, host: Host | str) -> Remote:
        return self.remotes[host if isinstance(host, str) else host.name]

    def outcome(self, host: Host | str) -> HostOutcome:
        name = host if isinstance(host, str) else host.name
        return self.outcomes.setdefault(name, HostOutcome())

    def warn(self, message: str) -> None:
        log.warning("%s", message)
        self.warnings.append(message)
        self.reporter.note(f"warning: {message}")

    def each(
        self,
        hosts: Iterable[Host],
        work: Callable[[Host], T],
        *,
        step: str | Callable[[Host], str],
        done: str | Callable[[T], str] = "done",
        limit: int | None = None,
    ) -> dict[str, T]:
        """Run ``work`` on ``hosts`` in parallel (at most ``--concurrency`` at once).

        Results by host name; a host whose work raises is recorded in ``failures`` instead.
        Hosts that already failed in an earlier phase are skipped.
        """
        todo = [h for h in hosts if h.name not in self.failures]
        results: dict[str, T] = {}
        if not todo:
            return results

        def one(host: Host) -> None:
            label = step(host) if callable(step) else step
            self.reporter.step(host.name, label)
            started = time.monotonic()
            try:
                value = work(host)
            except ProvisionerError as error:
                self._fail(host, error)
                return
            except Exception as error:  # noqa: BLE001 - reported per host, with traceback in the log
                log.error("%s: unexpected error during %s\n%s", host.name, label, traceback.format_exc())
                self._fail(host, ProvisionerError(f"unexpected error during {label}: {error!r}"))
                return
            finally:
                self.outcome(host).seconds += time.monotonic() - started
            results[host.name] = value
            self.reporter.step(host.name, done(value) if callable(done) else done)

        workers = max(1, min(limit or self.options.concurrency, len(todo)))
        if workers == 1:
            for host in todo:
                one(host)
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="host") as pool:
                list(pool.map(one, todo))
        return results

    def _fail(self, host: Host, error: ProvisionerError) -> None:
        log.error("%s: %s", host.name, error)
        self.failures[host.name] = error
        outcome = self.outcome(host)
        outcome.result = "failed"
        outcome.error = error.message if hasattr(error, "message") else str(error)
        self.reporter.done(host.name, f"failed: {outcome.error}", ok=False)


class Phase(ABC):
    """One step of an action. ``should_run`` lets a phase skip itself from what it reads."""

    title: ClassVar[str]

    def should_run(self, ctx: Context) -> bool:
        return True

    @abstractmethod
    def run(self, ctx: Context) -> None:
        """Do the step; raise a ``ProvisionerError`` to stop the action."""


def run_phases(phases: list[Phase], ctx: Context) -> None:
    """Run ``phases`` in order; remotes are closed whatever happens."""
    try:
        for phase in phases:
            if not phase.should_run(ctx):
                log.debug("phase skipped: %s", phase.title)
                continue
            started = time.monotonic()
            log.info("phase: %s", phase.title)
            phase.run(ctx)
            log.info("phase done: %s (%.2fs)", phase.title, time.monotonic() - started)
    finally:
        for remote in ctx.remotes.values():
            remote.close()
