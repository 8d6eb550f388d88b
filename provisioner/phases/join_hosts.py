"""Join hosts: the other servers one at a time, then the agents in parallel."""

from __future__ import annotations

from provisioner.inventory import Host
from provisioner.phases import Context, Phase


class _Join(Phase):
    role: str
    limit: int | None

    def _hosts(self, ctx: Context) -> list[Host]:
        return [
            ctx.plans[h.name].host
            for h in ctx.inventory.hosts
            if h.role == self.role and h.name != ctx.init_server.name and ctx.plans[h.name].action.changes
        ]

    def should_run(self, ctx: Context) -> bool:
        return bool(self._hosts(ctx))

    def run(self, ctx: Context) -> None:
        secret = ctx.join_secret

        def apply(host: Host) -> None:
            plan = ctx.plans[host.name]
            ctx.distribution.apply(ctx.remote(host), plan, ctx.facts[host.name], secret)
            ctx.outcome(host).result = "changed"

        hosts = self._hosts(ctx)
        for host in hosts:
            ctx.reporter.step(host.name, f"queued to {ctx.plans[host.name].action.value}")
        ctx.each(
            hosts,
            apply,
            step=lambda host: f"{ctx.plans[host.name].action.value}: {host.role}",
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
