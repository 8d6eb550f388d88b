"""Bootstrap the first server: install, upgrade, reconfigure or restart it, wait for its API,
and read the join secret the other hosts need."""

from __future__ import annotations

from provisioner.distros import Action, ClusterState
from provisioner.errors import HostsFailed
from provisioner.phases import Context, Phase


class BootstrapFirstServer(Phase):
    """Skipped when the first server needs nothing and its join secret is already known."""

    title = "bootstrap the first server"

    def should_run(self, ctx: Context) -> bool:
        return ctx.plans[ctx.init_server.name].action.changes or ctx.join_secret is None

    def run(self, ctx: Context) -> None:
        init = ctx.init_server
        plan = ctx.plans[init.name]
        label = "checking the API" if plan.action is Action.NOTHING else f"{plan.action.value}: {init.role}"
        secrets = ctx.each(
            [init],
            lambda host: ctx.distribution.bootstrap(ctx.remote(host), plan, ctx.facts[host.name]),
            step=label,
            done="API ready",
        )
        if init.name in ctx.failures:
            raise HostsFailed({init.name: ctx.failures[init.name]})
        if plan.action.changes:
            ctx.outcome(init).result = "changed"
        first_secret = ctx.join_secret is None
        ctx.join_secret = secrets[init.name]
        if first_secret:
            # The other hosts were planned without the secret: plan them again now that the
            # server answers, so hosts already joined to it are left alone.
            ctx.state = ClusterState(init, ctx.join_secret, ctx.distribution.read_nodes(ctx.remote(init)))
            replanned = ctx.distribution.plan(ctx.facts, ctx.state)
            for name, new_plan in replanned.items():
                if name != init.name:
                    ctx.plans[name] = new_plan
                    ctx.outcome(name).action = new_plan.action.value
            ctx.nodes = ctx.state.nodes
