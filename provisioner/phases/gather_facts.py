"""Gather facts: one command per host, as root, answering everything later phases ask."""

from __future__ import annotations

from dataclasses import replace

from provisioner.errors import HostsFailed
from provisioner.facts import (
    HOST_FACT_SCRIPT,
    HostFacts,
    parse_host_facts,
    parse_key_values,
)
from provisioner.inventory import Host
from provisioner.phases import Context, Phase


class GatherFacts(Phase):
    """Runs the host and distribution fact scripts with sudo (which also proves sudo works);
    their output is parsed by pure functions, once. At most ``--connect-concurrency`` hosts at
    once; a host that does not answer fails after ``ssh.command_timeout`` (60 s by default)."""

    title = "gather facts"

    def run(self, ctx: Context) -> None:
        dist = ctx.inputs.distribution
        script = HOST_FACT_SCRIPT + dist.fact_script()

        def gather(host: Host) -> HostFacts:
            result = ctx.remote(host).sudo(script)
            values = parse_key_values(result.stdout)
            return replace(parse_host_facts(host.name, values), dist=dist.parse_facts(values))

        gathered = ctx.each(
            [h for h in ctx.inputs.hosts if h.name in ctx.results.remotes],
            gather,
            step="gathering facts",
            done=lambda f: f"{f.os.pretty_name or f.os.id}, {f.arch}",
            limit=ctx.inputs.options.connect_concurrency,
        )
        ctx.results.facts.update(gathered)
        if ctx.failures:
            raise HostsFailed(dict(ctx.failures))
