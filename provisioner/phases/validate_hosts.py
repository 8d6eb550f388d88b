"""Validate hosts: everything that rules a run out is found before anything changes."""

from __future__ import annotations

from collections import defaultdict

from provisioner.errors import HostValidationError
from provisioner.phases import Context, Phase


class ValidateHosts(Phase):
    """sudo really gives root; cloned machines are noticed; an odd number of etcd servers; the
    distribution's own checks."""

    title = "validate hosts"

    def run(self, ctx: Context) -> None:
        facts = ctx.results.facts
        problems: list[str] = []
        for host in ctx.inputs.hosts:
            if facts[host.name].user != "root":
                problems.append(f"{host.name}: commands run with sudo ran as {facts[host.name].user!r}, not root")

        by_hostname: dict[str, list[str]] = defaultdict(list)
        by_machine_id: dict[str, list[str]] = defaultdict(list)
        for name, host_facts in facts.items():
            by_hostname[host_facts.hostname].append(name)
            if host_facts.machine_id:
                by_machine_id[host_facts.machine_id].append(name)
        for hostname, names in by_hostname.items():
            if len(names) > 1:
                ctx.inputs.reporter.note(f"{', '.join(names)} share the hostname {hostname!r}; they join under their inventory names")
        for machine_id, names in by_machine_id.items():
            if len(names) > 1:
                ctx.warn(
                    f"{', '.join(names)} share the machine-id {machine_id[:12]}… (cloned machines?); "
                    "consider regenerating /etc/machine-id on each"
                )

        dist = ctx.inputs.distribution
        quorum = dist.quorum_problem(allow_even=ctx.inputs.options.allow_even_servers)
        if quorum:
            problems.append(quorum)
        problems += dist.check_hosts(facts)
        for warning in dist.host_warnings(facts):
            ctx.warn(warning)
        if problems:
            raise HostValidationError(problems)
