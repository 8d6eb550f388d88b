"""Conclude the checks: the action fails when any check failed (``check`` exits 1)."""

from __future__ import annotations

from provisioner.checks import ChecksFailed
from provisioner.phases import Context, Phase


class ConcludeChecks(Phase):
    """Raises ``ChecksFailed`` naming every failed check; the table of all checks is the report."""

    title = "conclude checks"

    def run(self, ctx: Context) -> None:
        failures = [row for row in ctx.results.checks if not row.ok]
        if failures:
            raise ChecksFailed(failures)
