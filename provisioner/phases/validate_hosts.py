"""Validate hosts: everything that rules a run out is found before anything changes."""

from __future__ import annotations

from collections import defaultdict

from provisioner.errors import HostValidationError
from provisioner.phases import Context, Phase


class ValidateHosts(Phase):
    """sudo really gives root; cloned machines are noticed; the distribution's own checks."""

    title = "validate hosts"

    def run(self, ctx: Context) -> None:
        problems: list[str] = []
        for host in ctx.hosts:
            facts = ctx.facts[host.name]
            if facts.user != "root":
                problems.append(f"{host.name}: commands run with sudo ran as {facts.user!r}, not root")

        by_hostname: dict[str, list[str]] = defaultdict(list)
        by_machine_id: dict[str, list[str]] = defaultdict(list)
        for name, facts in ctx.facts.items():
            by_hostname[facts.hostname].append(name)
            if facts.machine_id:
                by_machine_id[facts.machine_id].append(name)
        for hostname, names in by_hostname.items():
            if len(names) > 1:
                ctx.reporter.note(
                    f"{', '.join(names)} share the hostname {hostname!r}; they join under their inventory names"
                )
        for machine_id, names in by_machine_id.items():
            if len(names) > 1:
                ctx.warn(
                    f"{', '.join(names)} share the machine-id {machine_id[:12]}… (cloned machines?); "
                    "consider regenerating /etc/machine-id on each"
                )

        problems += ctx.distribution.check_hosts(ctx.facts)
        for warning in ctx.distribution.host_warnings(ctx.facts):
            ctx.warn(warning)
        if problems:
            raise HostValidationError(problems)
