"""Check free space: refuse before anything changes when a host has no room for its plan."""

from __future__ import annotations

from provisioner.errors import HostValidationError
from provisioner.phases import Context, Phase
from provisioner.space import shortages


class CheckFreeSpace(Phase):
    """Compares each host's planned writes (uploads in full, package estimates, a margin) with the
    free space its facts measured, per filesystem; any shortage stops the run, naming the host,
    the directories and the space needed."""

    title = "check free space"

    def run(self, ctx: Context) -> None:
        problems: list[str] = []
        for name, plan in ctx.plan.hosts.items():
            facts = ctx.results.facts.get(name)
            if facts is None:
                continue
            remote = ctx.results.remotes.get(name)
            staged = remote is not None and remote.user != "root"  # uploads go through /tmp
            problems += [s.line() for s in shortages(facts, plan, staged=staged)]
        if problems:
            raise HostValidationError(problems)
