"""Check the hosts: each answered over SSH, their clocks agree, disk and memory headroom — judged
from the health facts read once per host. Read-only."""

from __future__ import annotations

from provisioner.checks import failed, ok
from provisioner.health import clock_check, headroom_check
from provisioner.phases import Context, Phase


class CheckHosts(Phase):
    """One row for reachability, one for the clocks, one per host for headroom."""

    title = "check hosts"

    def run(self, ctx: Context) -> None:
        rows = ctx.results.checks
        options = ctx.inputs.options.check
        health = ctx.results.health
        hosts = ctx.inputs.hosts
        silent = [h.name for h in hosts if h.name not in health]
        if silent:
            why = "; ".join(f"{name}: {ctx.failures[name]}" if name in ctx.failures else name for name in silent)
            rows.append(failed("hosts answer over SSH", why))
        else:
            rows.append(ok("hosts answer over SSH", f"{len(hosts)}/{len(hosts)}"))
        rows.append(clock_check(health, options.clock_bound if options else 2.0))
        for host in hosts:
            if host.name in health:
                rows.append(headroom_check(health[host.name], options.min_free_percent if options else 10.0))
