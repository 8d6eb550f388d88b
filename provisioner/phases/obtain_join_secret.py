"""Obtain the join secret from the first server, only when some host is about to need it
(k3s: the node token; kubeadm: a fresh bootstrap token with a short lifetime)."""

from __future__ import annotations

from provisioner.errors import HostsFailed
from provisioner.phases import Context, Phase


class ObtainJoinSecret(Phase):
    """Never written anywhere but into the 0600 files of the hosts that join."""

    title = "obtain the join secret"

    def should_run(self, ctx: Context) -> bool:
        if ctx.join_secret is not None:
            return False
        init = ctx.init_server.name
        return any(
            ctx.distribution.needs_join_secret(plan)
            for name, plan in ctx.plans.items()
            if name != init and name not in ctx.failures
        )

    def run(self, ctx: Context) -> None:
        assert ctx.state is not None
        init = ctx.init_server
        state = ctx.state
        secrets = ctx.each(
            [init],
            lambda host: ctx.distribution.join_secret(ctx.remote(host), state),
            step="creating the join secret",
            done="join secret ready",
        )
        if init.name in ctx.failures:
            raise HostsFailed({init.name: ctx.failures[init.name]})
        ctx.join_secret = secrets[init.name]
