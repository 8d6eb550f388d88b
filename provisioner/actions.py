"""Actions: each command of the tool as an ordered list of phases, in one place.

    up          [local lock] connect → facts → cluster lock → validate → read state → plan
                → free space → rolling upgrade → first server → cluster add-ons → join secret
                → stale nodes → other servers → agents → kubeconfig → wait Ready → verify kubeconfig
    plan        connect → facts → validate → read state → plan → free space (nothing changes)
    status      connect to servers → read nodes
    kubeconfig  connect to servers → facts → read state → kubeconfig → verify
    check       connect → health facts → read kubeconfig → verify → check cluster → check hosts
                → (workload) → conclude; ``up --check`` runs the same checks after its own phases
    remove      connect (unreachable hosts set aside) → facts → [lock] → read state
                → plan the removal (--dry-run stops here) → cordon → drain → delete Nodes
                → uninstall the removed hosts
    reset       connect → facts → [lock] → uninstall agents, then servers → forget kubeconfig

``[lock]`` marks where the cluster lock phase goes (first after facts, before anything changes).

The plan phase decides everything ``up`` changes: a ``HostPlan`` per host and a ``ClusterPlan``
(``provisioner.steps``), every step as data. The phases after it only pick which planned steps
run when and hand them to the one executor (``provisioner.executor``): the first server's steps
(ending with "wait for the Kubernetes API"), the add-ons, the read of the join secret, the stale
Node deletions, then the other hosts' steps. ``plan`` prints the same steps ``up`` runs.

Every command that changes hosts has ``LockCluster("<command>")`` right after the facts: one run
at a time per cluster (a local lock per inventory before connecting, the cluster lock on the
server that holds the cluster), both released when the action ends whatever happens.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass, replace

from provisioner import distros
from provisioner.checks import CheckOptions
from provisioner.errors import HostsFailed, ProvisionerError
from provisioner.inventory import Host, Inventory
from provisioner.phases import Connector, Context, Inputs, Options, Phase, run_phases
from provisioner.phases.apply_cluster_steps import ApplyClusterSteps
from provisioner.phases.bootstrap_first_server import BootstrapFirstServer
from provisioner.phases.check_cluster import CheckCluster
from provisioner.phases.check_free_space import CheckFreeSpace
from provisioner.phases.check_hosts import CheckHosts
from provisioner.phases.check_workload import CheckWorkload
from provisioner.phases.conclude_checks import ConcludeChecks
from provisioner.phases.connect import Connect
from provisioner.phases.connect_reachable import ConnectReachable
from provisioner.phases.delete_nodes import DeleteNodes
from provisioner.phases.drain_nodes import CordonNodes, DrainNodes
from provisioner.phases.forget_kubeconfig import ForgetKubeconfig
from provisioner.phases.gather_facts import GatherFacts
from provisioner.phases.gather_health import GatherHealth
from provisioner.phases.get_kubeconfig import GetKubeconfig
from provisioner.phases.join_hosts import JoinAgents, JoinServers
from provisioner.phases.lock_cluster import LockCluster
from provisioner.phases.obtain_join_secret import ObtainJoinSecret
from provisioner.phases.plan_hosts import PlanHosts
from provisioner.phases.plan_removal import PlanRemoval
from provisioner.phases.read_cluster_state import ReadClusterState
from provisioner.phases.read_kubeconfig import ReadKubeconfig
from provisioner.phases.read_nodes import ReadNodes
from provisioner.phases.remove_stale_nodes import RemoveStaleNodes
from provisioner.phases.rolling_upgrade import RollingUpgrade
from provisioner.phases.uninstall_hosts import UninstallAll, UninstallRemoved
from provisioner.phases.validate_hosts import ValidateHosts
from provisioner.phases.verify_kubeconfig import VerifyKubeconfig
from provisioner.phases.wait_ready import WaitReady
from provisioner.progress import SilentReporter
from provisioner.remote import RUN_JUMP_HOSTS, Remote, connect, sudo_password_for
from provisioner.summary import RunSummary


def up_phases() -> list[Phase]:
    return [
        Connect(),
        GatherFacts(),
        LockCluster("up"),
        ValidateHosts(),
        ReadClusterState(),
        PlanHosts(),
        CheckFreeSpace(),
        RollingUpgrade(),
        BootstrapFirstServer(),
        ApplyClusterSteps(),
        ObtainJoinSecret(),
        RemoveStaleNodes(),
        JoinServers(),
        JoinAgents(),
        GetKubeconfig(),
        WaitReady(),
        VerifyKubeconfig(),
    ]


def plan_phases() -> list[Phase]:
    return [Connect(), GatherFacts(), ValidateHosts(), ReadClusterState(), PlanHosts(), CheckFreeSpace()]


def status_phases() -> list[Phase]:
    return [Connect(require_all=False), ReadNodes()]


def kubeconfig_phases() -> list[Phase]:
    return [Connect(), GatherFacts(), ReadClusterState(), GetKubeconfig(), VerifyKubeconfig()]


def remove_phases(*, dry_run: bool = False) -> list[Phase]:
    lock: list[Phase] = [] if dry_run else [LockCluster("remove")]
    planning: list[Phase] = [ConnectReachable(), GatherFacts(), *lock, ReadClusterState(), PlanRemoval()]
    if dry_run:
        return planning
    return planning + [CordonNodes(), DrainNodes(), DeleteNodes(), UninstallRemoved()]


def reset_phases() -> list[Phase]:
    return [
        Connect(),
        GatherFacts(),
        LockCluster("reset"),
        UninstallAll(),
        ForgetKubeconfig(),
    ]


def check_phases() -> list[Phase]:
    """Read-only (``--workload`` aside, in a namespace of its own that it deletes)."""
    return [Connect(require_all=False), GatherHealth(), ReadKubeconfig(), VerifyKubeconfig(report_only=True), *checks_after_up()]


def checks_after_up() -> list[Phase]:
    """What ``up --check`` adds after the Ready wait and the kubeconfig verification."""
    return [CheckCluster(), CheckHosts(), CheckWorkload(), ConcludeChecks()]


def ssh_connector(inventory: Inventory, host: Host) -> Remote:
    """Connect over SSH with the inventory's settings and the sudo password it names."""
    return connect(inventory, host, sudo_password=sudo_password_for(inventory, host))


def make_room_for_connections(hosts: int) -> None:
    """Every host keeps an SSH socket open for the whole run (two behind a jump host): raise the
    soft limit on open files to cover them when the hard limit allows (1024 is a common soft
    limit; a run on a thousand hosts needs more)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * hosts + 256
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if raised > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))


@dataclass
class Outcome:
    """A finished action: what it reports, and the error that ended it, if any."""

    summary: RunSummary
    error: ProvisionerError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def execute(
    phases: list[Phase],
    inventory: Inventory,
    options: Options | None = None,
    *,
    reporter: SilentReporter | None = None,
    connector: Connector | None = None,
    servers_only: bool = False,
    hosts: tuple[Host, ...] | None = None,
) -> Outcome:
    """Run ``phases`` against ``inventory``. Host failures that let the run finish are turned
    into one ``HostsFailed`` at the end, after the summary data is complete."""
    options = options or Options()
    make_room_for_connections(len(inventory.servers if servers_only else inventory.hosts))
    ctx = Context(
        Inputs(
            inventory=inventory,
            distribution=distros.for_inventory(inventory, timeout=options.timeout),
            options=options,
            connector=connector or ssh_connector,
            reporter=reporter or SilentReporter(),
            hosts=hosts if hosts is not None else tuple(inventory.servers if servers_only else inventory.hosts),
        )
    )
    error: ProvisionerError | None = None
    try:
        run_phases(phases, ctx)
    except ProvisionerError as raised:
        error = raised
    finally:
        ctx.inputs.reporter.end()
        RUN_JUMP_HOSTS.close()  # after run_phases closed the hosts' connections through them
    if error is None and ctx.failures:
        error = HostsFailed(dict(ctx.failures))
    return Outcome(ctx.summary(), error)


def up(inventory: Inventory, options: Options | None = None, **kwargs: object) -> Outcome:
    """Build or converge the cluster the inventory describes (with ``options.check``, then check it)."""
    phases = up_phases()
    if options is not None and options.check is not None:
        phases += [GatherHealth(), *checks_after_up()]
    return execute(phases, inventory, options, **kwargs)  # type: ignore[arg-type]


def plan(inventory: Inventory, options: Options | None = None, **kwargs: object) -> Outcome:
    """What ``up`` would do, per host, without changing anything."""
    return execute(plan_phases(), inventory, options, **kwargs)  # type: ignore[arg-type]


def status(inventory: Inventory, options: Options | None = None, **kwargs: object) -> Outcome:
    """The cluster's nodes as the API reports them."""
    return execute(status_phases(), inventory, options, servers_only=True, **kwargs)  # type: ignore[arg-type]


def kubeconfig(inventory: Inventory, options: Options | None = None, **kwargs: object) -> Outcome:
    """Fetch, rewrite and write (or merge) the cluster's kubeconfig."""
    return execute(kubeconfig_phases(), inventory, options, servers_only=True, **kwargs)  # type: ignore[arg-type]


def remove(inventory: Inventory, options: Options, *, dry_run: bool = False, **kwargs: object) -> Outcome:
    """Remove ``options.targets`` from the cluster: cordon, drain, delete the Node objects, then
    uninstall the hosts. With ``dry_run`` only the plan is made. Works on the servers (kubectl)
    and the hosts to remove; other hosts are not contacted."""
    hosts = tuple(h for h in inventory.hosts if h.role == "server" or h.name in options.targets)
    return execute(remove_phases(dry_run=dry_run), inventory, options, hosts=hosts, **kwargs)  # type: ignore[arg-type]


def reset(inventory: Inventory, options: Options | None = None, **kwargs: object) -> Outcome:
    """Tear the cluster down: every host uninstalled (agents first), the kubeconfig entries
    taken out. The caller asks for confirmation."""
    return execute(reset_phases(), inventory, options, **kwargs)  # type: ignore[arg-type]


def check(inventory: Inventory, options: Options | None = None, **kwargs: object) -> Outcome:
    """Health of the running cluster (and with ``options.check.workload`` a smoke test)."""
    options = options or Options()
    if options.check is None:
        options = replace(options, check=CheckOptions())
    return execute(check_phases(), inventory, options, **kwargs)  # type: ignore[arg-type]
