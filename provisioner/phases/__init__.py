"""Phases: the steps an action is made of, and the context they share.

An action (up, plan, status, kubeconfig) is an ordered list of phases (see ``provisioner.actions``).
A ``Context`` holds the fixed ``Inputs`` (inventory, options, distribution, connector, reporter)
and the ``Results`` phases produce (facts, cluster state, the plan, outcomes, nodes, kubeconfig).
Work on several hosts runs in parallel through ``Context.each``, bounded by ``--concurrency``
(changes) or ``--connect-concurrency`` (connecting and gathering facts, which change nothing); a
host that fails is recorded in ``failures`` and left alone by later phases. Planned steps run
through ``Context.execute`` (the one executor); no phase decides what to change on a host.
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
from typing import ClassVar, TypeVar

from provisioner.checks import CheckOptions, CheckResult
from provisioner.disruption import Blocker
from provisioner.distros import ClusterState, Distribution
from provisioner.errors import HostError, ProvisionerError
from provisioner.executor import StepFailed, StepRecord, ValueStore, batches, run_steps
from provisioner.facts import HostFacts
from provisioner.health import HostHealth
from provisioner.inventory import Host, Inventory
from provisioner.nodeops import DrainOptions
from provisioner.nodes import Node
from provisioner.progress import SilentReporter
from provisioner.remote import Remote
from provisioner.removal import RemovalPlan
from provisioner.steps import RunPlan, Step
from provisioner.summary import (
    FetchedKubeconfig,
    HostCounts,
    HostOutcome,
    Result,
    RunSummary,
)

log = logging.getLogger("provisioner.phases")

T = TypeVar("T")

Connector = Callable[[Inventory, Host], Remote]


@dataclass
class Options:
    """Run options from the command line."""

    concurrency: int = 10
    #: Hosts connected to and asked for facts at once; each holds a slot at most until its own
    #: connect or command timeout, so a dead host never holds up the others.
    connect_concurrency: int = 32
    timeout: float = 300.0
    merge: bool = False
    set_current: bool = False
    replace: bool = False
    kubeconfig_out: Path | None = None
    context_name: str | None = None
    #: The inventory file: the local lock is per file (``provisioner.phases.lock_cluster``).
    inventory_path: Path | None = None
    #: Seconds to wait for a lock another run holds (0: fail at once).
    wait_lock: float = 0.0
    # day 2: remove, rolling upgrade, reset
    targets: tuple[str, ...] = ()  # remove: the nodes to remove
    drain_timeout: float = 300.0
    delete_emptydir_data: bool = False
    force: bool = False
    no_drain: bool = False  # rolling upgrade without draining
    max_unavailable: int = 1  # agents upgraded at once
    unreachable_ok: bool = False  # remove: an unreachable host is not an error
    allow_even_servers: bool = False  # up/plan: an even number of etcd servers is allowed

    @property
    def drain(self) -> DrainOptions:
        return DrainOptions(self.drain_timeout, self.delete_emptydir_data, self.force)

    check: CheckOptions | None = None  # `check`, `up --check`: what to prove about the running cluster


@dataclass(frozen=True)
class Inputs:
    """What an action starts from; no phase changes it."""

    inventory: Inventory
    distribution: Distribution
    options: Options
    connector: Connector
    reporter: SilentReporter
    hosts: tuple[Host, ...]  # the hosts this action works on


@dataclass
class Results:
    """What the phases produce, in the order they produce it."""

    remotes: dict[str, Remote] = field(default_factory=dict)
    facts: dict[str, HostFacts] = field(default_factory=dict)
    state: ClusterState | None = None
    plan: RunPlan | None = None
    values: ValueStore = field(default_factory=ValueStore)
    outcomes: dict[str, HostOutcome] = field(default_factory=dict)
    failures: dict[str, ProvisionerError] = field(default_factory=dict)
    cluster_steps: list[StepRecord] = field(default_factory=list)
    applied_addons: list[str] = field(default_factory=list)
    nodes: list[Node] | None = None
    kubeconfig: FetchedKubeconfig | None = None
    warnings: list[str] = field(default_factory=list)
    #: Hosts that did not answer over SSH where an action goes on without them (remove).
    unreachable: dict[str, str] = field(default_factory=dict)
    removal: RemovalPlan | None = None
    #: Budgets found blocking a drain (the last time they were read).
    blockers: list[Blocker] = field(default_factory=list)
    #: Hosts the rolling upgrade finished, in order.
    upgraded: list[str] = field(default_factory=list)
    kubeconfig_cleaned: list[tuple[Path, Path | None]] = field(default_factory=list)
    health: dict[str, HostHealth] = field(default_factory=dict)
    checks: list[CheckResult] = field(default_factory=list)


@dataclass
class Context:
    """A run: fixed ``inputs`` and the ``results`` phases fill in order."""

    inputs: Inputs
    results: Results = field(default_factory=Results)

    @property
    def state(self) -> ClusterState:
        assert self.results.state is not None, "cluster state is read before this is used"
        return self.results.state

    @property
    def plan(self) -> RunPlan:
        assert self.results.plan is not None, "the plan is made before this is used"
        return self.results.plan

    @property
    def init_server(self) -> Host:
        return self.state.init_server

    @property
    def failures(self) -> dict[str, ProvisionerError]:
        return self.results.failures

    def remote(self, host: Host | str) -> Remote:
        return self.results.remotes[host if isinstance(host, str) else host.name]

    def outcome(self, host: Host | str) -> HostOutcome:
        name = host if isinstance(host, str) else host.name
        return self.results.outcomes.setdefault(name, HostOutcome())

    def warn(self, message: str) -> None:
        log.warning("%s", message)
        self.results.warnings.append(message)
        self.inputs.reporter.note(f"warning: {message}")

    def execute(self, host: Host, steps: Iterable[Step], *, cluster: bool = False) -> None:
        """Run planned ``steps`` on ``host`` with the one executor; the records go to the host's
        outcome (or the cluster's). A failed step raises its typed error."""
        records = self.outcome(host).steps if not cluster else self.results.cluster_steps
        for batch in batches(steps):  # consecutive uploads go together (one round trip)
            names = [step.name for step in batch]
            self.inputs.reporter.step(host.name, names[0] if len(names) == 1 else f"{names[0]} (+{len(names) - 1} more uploads)")
            try:
                records += run_steps(self.remote(host), batch, self.results.values)
            except StepFailed as failed:
                records += failed.records
                raise failed.cause from None

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
        reporter = self.inputs.reporter

        def one(host: Host) -> None:
            label = step(host) if callable(step) else step
            reporter.step(host.name, label)
            started = time.monotonic()
            try:
                value = work(host)
            except ProvisionerError as error:
                self._fail(host, error)
                return
            except Exception as error:  # noqa: BLE001 - reported per host, with traceback in the log
                log.error("%s: unexpected error during %s\n%s", host.name, label, traceback.format_exc())
                self._fail(host, HostError(host.name, unexpected(label, error)))
                return
            finally:
                self.outcome(host).seconds += time.monotonic() - started
            results[host.name] = value
            reporter.step(host.name, done(value) if callable(done) else done)

        workers = max(1, min(limit or self.inputs.options.concurrency, len(todo)))
        if workers == 1:
            for host in todo:
                one(host)
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="host") as pool:
                list(pool.map(one, todo))
        return results

    def fail(self, host: Host | str, error: ProvisionerError) -> None:
        """Record ``host`` as failed with ``error`` (once: the first failure is the one shown)."""
        name = host if isinstance(host, str) else host.name
        if name not in self.failures:
            self._fail(next(h for h in self.inputs.inventory.hosts if h.name == name), error)

    def _fail(self, host: Host, error: ProvisionerError) -> None:
        log.error("%s: %s", host.name, error)
        self.failures[host.name] = error
        outcome = self.outcome(host)
        outcome.result = Result.FAILED
        outcome.error = error.message if isinstance(error, HostError) else str(error)
        self.inputs.reporter.done(host.name, f"failed: {outcome.error}", ok=False)

    def summary(self) -> RunSummary:
        """What the report and callers see of this run."""
        r = self.results
        return RunSummary(
            cluster_name=self.inputs.inventory.cluster.name,
            inventory_hosts=tuple(self.inputs.inventory.hosts),
            hosts=self.inputs.hosts,
            outcomes=dict(r.outcomes),
            counts={n: HostCounts(remote.command_count, remote.upload_count) for n, remote in r.remotes.items()},
            plan=r.plan,
            cluster_steps=tuple(r.cluster_steps),
            applied_addons=tuple(r.applied_addons),
            nodes=tuple(r.nodes) if r.nodes is not None else None,
            kubeconfig=r.kubeconfig,
            warnings=tuple(r.warnings),
            unreachable=dict(r.unreachable),
            removal=r.removal,
            blockers=tuple(r.blockers),
            upgraded=tuple(r.upgraded),
            kubeconfig_cleaned=tuple(r.kubeconfig_cleaned),
            checks=tuple(r.checks),
        )


def unexpected(doing: str, error: Exception) -> str:
    """The line for an error the tool did not foresee (a bug): what it was doing and the error's
    own words, never its repr; the traceback goes to the run log."""
    words = str(error).strip().splitlines()
    detail = f"{type(error).__name__}: {words[0]}" if words else type(error).__name__
    return f"unexpected error during {doing} ({detail}); the traceback is in the run log"


class Phase(ABC):
    """One step of an action. ``should_run`` lets a phase skip itself from what it reads;
    ``prepare`` runs before any phase of the action runs, ``clean_up`` after the action ends
    (whatever happened) for every phase that was prepared."""

    title: ClassVar[str]

    def should_run(self, ctx: Context) -> bool:
        return True

    def prepare(self, ctx: Context) -> None:
        """Before the first phase runs (e.g. take a lock on this machine)."""

    def clean_up(self, ctx: Context) -> None:
        """After the action, whatever happened (e.g. release a lock); must not raise."""

    @abstractmethod
    def run(self, ctx: Context) -> None:
        """Do the step; raise a ``ProvisionerError`` to stop the action."""


def run_phases(phases: list[Phase], ctx: Context) -> None:
    """Prepare ``phases``, run them in order, then clean them up and close the remotes whatever
    happens. A host's error that ends the action marks that host failed in the summary."""
    prepared: list[Phase] = []
    try:
        for phase in phases:
            prepared.append(phase)
            phase.prepare(ctx)
        for phase in phases:
            if not phase.should_run(ctx):
                log.debug("phase skipped: %s", phase.title)
                continue
            started = time.monotonic()
            log.info("phase: %s", phase.title)
            try:
                phase.run(ctx)
            except HostError as error:
                if any(h.name == error.host for h in ctx.inputs.inventory.hosts):
                    ctx.fail(error.host, error)
                raise
            log.info("phase done: %s (%.2fs)", phase.title, time.monotonic() - started)
    finally:
        for phase in reversed(prepared):
            try:
                phase.clean_up(ctx)
            except Exception:
                log.warning("clean-up of %s failed", phase.title, exc_info=True)
        for remote in ctx.results.remotes.values():
            remote.close()
