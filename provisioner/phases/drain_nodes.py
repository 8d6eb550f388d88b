"""Cordon and drain nodes through the API (``remove`` and the rolling upgrade share this).

The planned drain step is one ``kubectl drain`` attempt; while it fails, the PodDisruptionBudgets
that block it are read (``kubectl get pdb -A``, the node's pods; matched by
``provisioner.disruption``) and shown, and the attempt is repeated until ``--drain-timeout``.
Then ``DrainBlocked`` names the budgets; the node stays cordoned.
"""

from __future__ import annotations

import time

from provisioner import nodeops
from provisioner.disruption import Blocker, DrainBlocked, blockers, parse_budgets, parse_pods
from provisioner.errors import ProvisionerError
from provisioner.inventory import Host
from provisioner.phases import Context, Phase
from provisioner.steps import Step

#: Pause between two drain attempts.
RETRY_SECONDS = 5.0


def read_blockers(ctx: Context, api: Host, node: str) -> list[Blocker]:
    """The budgets that allow no disruption and cover a pod still on ``node`` (empty when the
    API cannot say)."""
    dist = ctx.inputs.distribution
    remote = ctx.remote(api)
    budgets = remote.sudo(nodeops.budgets_command(dist), check=False, timeout=30)
    pods = remote.sudo(nodeops.pods_on_node_command(dist, node), check=False, timeout=30)
    if not (budgets.ok and pods.ok):
        return []
    try:
        return blockers(parse_budgets(budgets.stdout), parse_pods(pods.stdout))
    except ProvisionerError:
        return []


def drain_node(ctx: Context, api: Host, node: str, step: Step, timeout: float) -> None:
    """Run the drain ``step`` on ``api`` until it succeeds or ``timeout`` passes (then raise
    ``DrainBlocked`` with the blocking budgets)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            ctx.execute(api, [step], cluster=True)
            return
        except ProvisionerError as error:
            found = read_blockers(ctx, api, node)
            ctx.results.blockers = found
            for b in found:
                ctx.inputs.reporter.note(
                    f"drain of {node} waits for PDB {b.budget.namespace}/{b.budget.name} "
                    f"(disruptionsAllowed={b.budget.disruptions_allowed}; covers {', '.join(b.pods)})"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DrainBlocked(node, timeout, found, str(error)) from None
            time.sleep(min(RETRY_SECONDS, remaining))


class CordonNodes(Phase):
    """Cordons every node to remove (all before any drain, so pods do not move onto them)."""

    title = "cordon nodes"

    def run(self, ctx: Context) -> None:
        plan = ctx.results.removal
        assert plan is not None
        for node in plan.nodes:
            if node.cordon is not None:
                ctx.inputs.reporter.step(node.name, "cordoning")
                ctx.execute(plan.api_host, [node.cordon], cluster=True)


class DrainNodes(Phase):
    """Drains each node in turn; a drain that does not finish stops the action (nothing is
    deleted or uninstalled)."""

    title = "drain nodes"

    def run(self, ctx: Context) -> None:
        plan = ctx.results.removal
        assert plan is not None
        for node in plan.nodes:
            if node.drain is not None:
                ctx.inputs.reporter.step(node.name, "draining")
                drain_node(ctx, plan.api_host, node.name, node.drain, ctx.inputs.options.drain_timeout)
                ctx.inputs.reporter.step(node.name, "drained")
