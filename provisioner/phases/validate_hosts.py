"""Validate hosts: everything that rules a run out is found before anything changes."""

from __future__ import annotations

from collections import defaultdict

from provisioner.errors import HostValidationError
from provisioner.phases import Context, Phase
from provisioner.quorum import even_servers_problem, quorum


class ValidateHosts(Phase):
    """sudo really gives root; cloned machines are noticed; an even number of etcd servers is
    refused (unless allowed); the distribution's own checks."""

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
        servers = len(ctx.inputs.inventory.servers)
        even = even_servers_problem(servers) if dist.embedded_etcd(servers) else None
        if even is not None and not ctx.inputs.options.allow_even_servers:
            problems.append(even)
        elif even is not None:
            ctx.warn(f"{servers} servers (--allow-even-servers): etcd needs {quorum(servers)} of them up")
        problems += dist.check_hosts(facts)
        for warning in dist.host_warnings(facts):
            ctx.warn(warning)
        if problems:
            raise HostValidationError(problems)
