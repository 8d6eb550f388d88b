"""Obtain the join secret on the first server, only when the plan says a host needs it
(k3s: the node token of a new server; kubeadm: a fresh bootstrap token with a short lifetime)."""

from __future__ import annotations

from provisioner.errors import HostsFailed
from provisioner.phases import Context, Phase


class ObtainJoinSecret(Phase):
    """Runs the planned read step; the value stays in memory and reaches hosts only inside
    their 0600 files."""

    title = "obtain the join secret"

    def should_run(self, ctx: Context) -> bool:
        init = ctx.init_server.name
        if ctx.plan.cluster.join_secret is None or init in ctx.failures:
            return False
        return any(p.needs for n, p in ctx.plan.hosts.items() if n != init and n not in ctx.failures)

    def run(self, ctx: Context) -> None:
        init = ctx.init_server
        step = ctx.plan.cluster.join_secret
        assert step is not None
        ctx.each([init], lambda host: ctx.execute(host, [step], cluster=True), step="reading the join secret", done="join secret ready")
        if init.name in ctx.failures:
            raise HostsFailed({init.name: ctx.failures[init.name]})
