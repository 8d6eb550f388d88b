"""Plan: decide per host what the run will do, and render every config before any change."""

from __future__ import annotations

import jinja2

from provisioner.errors import ProvisionerError
from provisioner.phases import Context, Phase


class PlanHosts(Phase):
    """Asks the distribution for a plan per host; shows each host's decision."""

    title = "plan"

    def run(self, ctx: Context) -> None:
        assert ctx.state is not None
        try:
            ctx.plans = ctx.distribution.plan(ctx.facts, ctx.state)
            ctx.cluster_steps = ctx.distribution.cluster_steps(ctx.state)
        except jinja2.TemplateError as error:
            raise ProvisionerError(f"template error: {error}") from None
        for name, plan in ctx.plans.items():
            ctx.outcome(name).action = plan.action.value
            ctx.reporter.step(name, "up to date" if not plan.action.changes else f"to {plan.action.value}")
