"""Plan: every host's action and steps, and the cluster's steps, before any change."""

from __future__ import annotations

import jinja2

from provisioner.errors import ProvisionerError
from provisioner.phases import Context, Phase
from provisioner.steps import RunPlan


class PlanHosts(Phase):
    """Asks the distribution for the plan (every config rendered, secrets as placeholders);
    later phases run exactly these steps. Shows each host's decision."""

    title = "plan"

    def run(self, ctx: Context) -> None:
        dist = ctx.inputs.distribution
        try:
            hosts = dist.plan(ctx.results.facts, ctx.state)
            plan = RunPlan(hosts, dist.cluster_plan(hosts, ctx.state))
        except jinja2.TemplateError as error:
            raise ProvisionerError(f"template error: {error}") from None
        ctx.results.plan = plan
        for name, host_plan in plan.hosts.items():
            ctx.outcome(name).action = host_plan.action
            ctx.inputs.reporter.step(name, "up to date" if not host_plan.action.changes else f"to {host_plan.action.value}")
