"""Join hosts: run the other servers' planned steps one at a time, then the agents' in parallel."""

from __future__ import annotations

from provisioner.inventory import Host
from provisioner.phases import Context, Phase
from provisioner.summary import Result


class _Join(Phase):
    role: str
    limit: int | None

    def _hosts(self, ctx: Context) -> list[Host]:
        plans = ctx.plan.hosts
        return [
            plans[h.name].host
            for h in ctx.inputs.inventory.hosts
            if h.role == self.role and h.name != ctx.init_server.name and plans[h.name].action.changes and h.name not in ctx.plan.rolled
        ]

    def should_run(self, ctx: Context) -> bool:
        return bool(self._hosts(ctx))

    def run(self, ctx: Context) -> None:
        plans = ctx.plan.hosts

        def apply(host: Host) -> None:
            ctx.execute(host, plans[host.name].steps)
            ctx.outcome(host).result = Result.CHANGED

        hosts = self._hosts(ctx)
        for host in hosts:
            ctx.inputs.reporter.step(host.name, f"queued to {plans[host.name].action.value}")
        ctx.each(
            hosts,
            apply,
            step=lambda host: f"{plans[host.name].action.value}: {host.role}",
            done="applied",
            limit=self.limit,
        )


class JoinServers(_Join):
    """Additional servers join one at a time (etcd members must not join concurrently)."""

    title = "join other servers"
    role = "server"
    limit = 1


class JoinAgents(_Join):
    """Agents join in parallel, at most ``--concurrency`` at once."""

    title = "join agents"
    role = "agent"
    limit = None
