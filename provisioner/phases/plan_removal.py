"""Plan the removal: refuse unknown names, the last server and a lost etcd quorum; otherwise
every step as data (``remove --dry-run`` prints it and stops here)."""

from __future__ import annotations

from provisioner.phases import Context, Phase
from provisioner.removal import plan_removal


class PlanRemoval(Phase):
    """Pure planning from the inventory, the cluster state and the facts of the hosts that
    answered (``provisioner.removal``); nothing changes."""

    title = "plan the removal"

    def run(self, ctx: Context) -> None:
        inputs = ctx.inputs
        plan = plan_removal(
            inputs.options.targets, inputs.inventory, inputs.distribution, ctx.state, ctx.results.facts, inputs.options.drain
        )
        ctx.results.removal = plan
        for node in plan.nodes:
            ctx.inputs.reporter.step(node.name, "to remove" + (f" ({node.skipped})" if node.skipped else ""))
