"""Uninstall the distribution from hosts (``remove`` after the Node is gone; ``reset`` agents
first, then servers), and report the hosts skipped."""

from __future__ import annotations

from provisioner.errors import HostsFailed, ProvisionerError
from provisioner.inventory import Host
from provisioner.phases import Context, Phase
from provisioner.summary import Result


class UninstallSkipped(ProvisionerError):
    """Hosts could not be uninstalled because they did not answer (their Nodes were removed)."""

    def __init__(self, hosts: dict[str, str]) -> None:
        self.hosts = hosts
        super().__init__(
            f"uninstall skipped on {', '.join(hosts)} (unreachable); the Node objects were removed. "
            "Uninstall by hand or rerun when the host answers; --unreachable-ok accepts this"
        )

    def lines(self) -> list[str]:
        return [str(self)] + [f"  {name}: {reason}" for name, reason in self.hosts.items()]


class UninstallRemoved(Phase):
    """``remove``: runs each removed host's uninstall steps (in parallel); hosts that were
    unreachable are an error unless ``--unreachable-ok``."""

    title = "uninstall removed hosts"

    def run(self, ctx: Context) -> None:
        plan = ctx.results.removal
        assert plan is not None
        steps = {n.name: n.uninstall for n in plan.nodes if n.uninstall}
        hosts = [n.host for n in plan.nodes if n.host is not None and n.name in steps]

        def uninstall(host: Host) -> None:
            ctx.outcome(host).result = Result.CHANGED
            ctx.execute(host, steps[host.name])

        ctx.each(hosts, uninstall, step="uninstalling", done="uninstalled")
        for node in plan.nodes:
            if node.skipped:
                ctx.inputs.reporter.done(node.name, node.skipped, ok=not node.unreachable)
        unreachable = {n.name: ctx.results.unreachable.get(n.name, "") for n in plan.nodes if n.unreachable}
        if unreachable and not ctx.failures and not ctx.inputs.options.unreachable_ok:
            raise UninstallSkipped(unreachable)


class UninstallAll(Phase):
    """``reset``: every host of the inventory, agents first (in parallel), then servers one at a
    time; a host that fails stops the servers' turn."""

    title = "uninstall all hosts"

    def run(self, ctx: Context) -> None:
        dist = ctx.inputs.distribution
        facts = ctx.results.facts

        def uninstall(host: Host) -> None:
            ctx.outcome(host).result = Result.CHANGED
            ctx.execute(host, dist.uninstall_steps(host, facts[host.name]))

        inventory = ctx.inputs.inventory
        ctx.each(inventory.agents, uninstall, step="uninstalling", done="uninstalled")
        if ctx.failures:
            raise HostsFailed(dict(ctx.failures))
        ctx.each(inventory.servers, uninstall, step="uninstalling", done="uninstalled", limit=1)
