"""Bootstrap the first server: install, upgrade, reconfigure or restart it, and wait for its API."""

from __future__ import annotations

from provisioner.errors import HostsFailed
from provisioner.phases import Context, Phase


class BootstrapFirstServer(Phase):
    """Skipped when the first server needs nothing. Afterwards the cluster state is read again;
    when that changes the join secret (a new cluster), the other hosts are planned again, so
    hosts already joined to this server are still left alone."""

    title = "bootstrap the first server"

    def should_run(self, ctx: Context) -> bool:
        return ctx.plans[ctx.init_server.name].action.changes

    def run(self, ctx: Context) -> None:
        init = ctx.init_server
        plan = ctx.plans[init.name]
        dist = ctx.distribution
        ctx.each(
            [init],
            lambda host: dist.bootstrap(ctx.remote(host), plan, ctx.facts[host.name]),
            step=f"{plan.action.value}: {init.role}",
            done="API ready",
        )
        if init.name in ctx.failures:
            raise HostsFailed({init.name: ctx.failures[init.name]})
        ctx.outcome(init).result = "changed"
        assert ctx.state is not None
        before = ctx.state.join_secret
        ctx.state = dist.read_state(ctx.remote(init), init)
        ctx.nodes = ctx.state.nodes
        ctx.cluster_steps = dist.cluster_steps(ctx.state)
        if ctx.state.join_secret != before:
            ctx.join_secret = ctx.state.join_secret
            for name, new_plan in dist.plan(ctx.facts, ctx.state).items():
                if name != init.name:
                    ctx.plans[name] = new_plan
                    ctx.outcome(name).action = new_plan.action.value
