"""Cluster add-ons on the first server once its API answers (e.g. Flannel for kubeadm)."""

from __future__ import annotations

from provisioner.errors import HostsFailed
from provisioner.inventory import Host
from provisioner.phases import Context, Phase
from provisioner.summary import Result


class ApplyClusterSteps(Phase):
    """Runs only the add-on steps the plan found missing or changed."""

    title = "cluster add-ons"

    def should_run(self, ctx: Context) -> bool:
        return bool(ctx.plan.cluster.addons) and ctx.init_server.name not in ctx.failures

    def run(self, ctx: Context) -> None:
        init = ctx.init_server

        def apply_all(host: Host) -> None:
            for step in ctx.plan.cluster.addons:
                ctx.execute(host, [step], cluster=True)
                ctx.results.applied_addons.append(step.name)

        ctx.each([init], apply_all, step="cluster add-ons", done="cluster add-ons applied")
        if init.name in ctx.failures:
            raise HostsFailed({init.name: ctx.failures[init.name]})
        ctx.outcome(init).result = Result.CHANGED
