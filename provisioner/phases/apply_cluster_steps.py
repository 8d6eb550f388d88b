"""Cluster-wide steps on the first server once its API answers (e.g. Flannel for kubeadm)."""

from __future__ import annotations

from provisioner.errors import HostsFailed
from provisioner.phases import Context, Phase


class ApplyClusterSteps(Phase):
    """Runs only the steps the plan found missing or changed."""

    title = "cluster add-ons"

    def should_run(self, ctx: Context) -> bool:
        return bool(ctx.cluster_steps) and ctx.init_server.name not in ctx.failures

    def run(self, ctx: Context) -> None:
        init = ctx.init_server
        remote = ctx.remote(init)

        def apply_all(host: object) -> None:
            for step in ctx.cluster_steps:
                ctx.reporter.step(init.name, step.title)
                assert step.run is not None
                step.run(remote)
                ctx.applied_cluster_steps.append(step.title)

        ctx.each([init], apply_all, step="cluster add-ons", done="cluster add-ons applied")
        if init.name in ctx.failures:
            raise HostsFailed({init.name: ctx.failures[init.name]})
        ctx.outcome(init).result = "changed"
