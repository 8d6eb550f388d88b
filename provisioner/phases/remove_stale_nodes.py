"""Remove stale nodes: a Node object left by an earlier install would block a host joining
under the same name (k3s refuses it: node password mismatch), so it is deleted first."""

from __future__ import annotations

from provisioner.errors import HostsFailed
from provisioner.phases import Context, Phase


class RemoveStaleNodes(Phase):
    """Runs the deletions the plan made for hosts about to join (still about to: a host that
    failed earlier keeps its Node object)."""

    title = "remove stale nodes"

    def should_run(self, ctx: Context) -> bool:
        return bool(ctx.plan.cluster.stale_nodes) and ctx.init_server.name not in ctx.failures

    def run(self, ctx: Context) -> None:
        init = ctx.init_server
        for warning in ctx.plan.cluster.warnings:
            ctx.warn(warning)
        ctx.each(
            [init],
            lambda host: ctx.execute(host, ctx.plan.cluster.stale_nodes, cluster=True),
            step="deleting stale node objects",
            done="stale node objects deleted",
        )
        if init.name in ctx.failures:
            raise HostsFailed({init.name: ctx.failures[init.name]})
