"""Bootstrap the first server: run its planned steps (install, upgrade, reconfigure or restart,
then wait for its API)."""

from __future__ import annotations

from provisioner.errors import HostsFailed
from provisioner.phases import Context, Phase
from provisioner.summary import Result


class BootstrapFirstServer(Phase):
    """Skipped when the first server needs nothing. Runs its steps as planned; the other hosts'
    plans were made up front (placeholders for what this server will give them)."""

    title = "bootstrap the first server"

    def should_run(self, ctx: Context) -> bool:
        name = ctx.init_server.name
        return ctx.plan.hosts[name].action.changes and name not in ctx.plan.rolled

    def run(self, ctx: Context) -> None:
        init = ctx.init_server
        plan = ctx.plan.hosts[init.name]
        ctx.each([init], lambda host: ctx.execute(host, plan.steps), step=f"{plan.action.value}: {init.role}", done="API ready")
        if init.name in ctx.failures:
            raise HostsFailed({init.name: ctx.failures[init.name]})
        ctx.outcome(init).result = Result.CHANGED
