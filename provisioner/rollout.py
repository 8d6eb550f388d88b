"""The order of a rolling upgrade, planned with the rest (``plan`` shows it, ``up`` runs it).

Hosts whose plan is ``upgrade`` and whose node is registered are rolled: servers one at a time,
the first server first, then agents in batches of ``max_unavailable``. Each gets cordon, drain
(unless ``no_drain``), its own upgrade steps, a wait until its node is Ready on the new version,
and uncordon (``provisioner.nodeops``). Hosts that are not registered yet are not rolled.
"""

from __future__ import annotations

from provisioner import nodeops
from provisioner.distros.base import ClusterState, Distribution
from provisioner.steps import Action, HostPlan, RolloutHost


def plan_rollout(
    dist: Distribution,
    plans: dict[str, HostPlan],
    state: ClusterState,
    *,
    drain: nodeops.DrainOptions | None,
    max_unavailable: int,
    wait_timeout: float,
) -> tuple[tuple[RolloutHost, ...], ...]:
    """The waves of the rollout (empty when no registered host is to be upgraded)."""
    if state.nodes is None:
        return ()
    init = state.init_server.name
    upgrading = [p.host for p in plans.values() if p.action is Action.UPGRADE and state.node(p.host.name) is not None]
    servers = sorted((h for h in upgrading if h.role == "server"), key=lambda h: h.name != init)
    agents = [h for h in upgrading if h.role == "agent"]
    version = dist.upgraded_version()

    def item(host_name: str) -> RolloutHost:
        host = plans[host_name].host
        return RolloutHost(
            host,
            nodeops.cordon(dist, host_name, "no new pods land on it while it is upgraded"),
            None if drain is None else nodeops.drain(dist, host_name, drain, "its pods move while it is upgraded"),
            nodeops.wait_ready_on_version(dist, host_name, version, wait_timeout),
            nodeops.uncordon(dist, host_name, "it is back on the new version"),
        )

    waves: list[tuple[RolloutHost, ...]] = [(item(h.name),) for h in servers]
    size = max(1, max_unavailable)
    for start in range(0, len(agents), size):
        waves.append(tuple(item(h.name) for h in agents[start : start + size]))
    return tuple(waves)
