"""Gather health: clock, disk and memory of every connected host, one command each (for ``check``)."""

from __future__ import annotations

import time

from provisioner.facts import parse_key_values
from provisioner.health import HostHealth, health_script, parse_health
from provisioner.inventory import Host
from provisioner.phases import Context, Phase


class GatherHealth(Phase):
    """Runs the health script as root on each host in parallel, noting this machine's clock when
    the command is sent and answered (the clocks are compared through it). Changes nothing; a host
    that does not answer is recorded as failed and reported by the checks."""

    title = "gather health"

    def run(self, ctx: Context) -> None:
        script = health_script(ctx.inputs.distribution.admin_kubeconfig)

        def gather(host: Host) -> HostHealth:
            sent = time.time()
            result = ctx.remote(host).sudo(script, timeout=30)
            received = time.time()
            return parse_health(host.name, parse_key_values(result.stdout), sent=sent, received=received)

        ctx.results.health.update(
            ctx.each(
                [h for h in ctx.inputs.hosts if h.name in ctx.results.remotes],
                gather,
                step="reading clock, disk and memory",
                done="health read",
            )
        )
