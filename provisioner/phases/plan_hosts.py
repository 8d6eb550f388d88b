"""Plan: every host's action and steps, and the cluster's steps, before any change."""

from __future__ import annotations

from provisioner.phases import Context, Phase
from provisioner.rollout import plan_rollout
from provisioner.steps import RunPlan


class PlanHosts(Phase):
    """Asks the distribution for the plan (every config rendered, secrets as placeholders);
    later phases run exactly these steps. Shows each host's decision."""

    title = "plan"

    def run(self, ctx: Context) -> None:
        dist = ctx.inputs.distribution
        hosts = dist.plan(ctx.results.facts, ctx.state)  # a template error is a ProvisionerError
        options = ctx.inputs.options
        rollout = plan_rollout(
            dist,
            hosts,
            ctx.state,
            drain=None if options.no_drain else options.drain,
            max_unavailable=options.max_unavailable,
            wait_timeout=options.timeout,
        )
        plan = RunPlan(hosts, dist.cluster_plan(hosts, ctx.state), rollout)
        ctx.results.plan = plan
        inventory_names = {h.name for h in ctx.inputs.inventory.hosts}
        for node in ctx.state.nodes or []:
            if node.name not in inventory_names:
                ctx.warn(
                    f"node {node.name} is in the cluster but not in inventory: remove it with "
                    f"`provisioner remove -i INVENTORY {node.name}` (nothing deletes it on its own)"
                )
        for name, host_plan in plan.hosts.items():
            ctx.outcome(name).action = host_plan.action
            ctx.inputs.reporter.step(name, "up to date" if not host_plan.action.changes else f"to {host_plan.action.value}")
