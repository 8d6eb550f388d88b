"""Rolling upgrade: hosts whose plan is an upgrade (a new version in the inventory) are upgraded
one at a time — servers first (the first server first), then agents in batches of
``--max-unavailable`` — each cordoned, drained (unless ``--no-drain``), upgraded with its planned
steps, waited for until its node is Ready on the new version, and uncordoned, before the next.

A host that fails stops the rollout: it stays cordoned, the hosts after it are untouched, and the
error names it. The order and the surrounding steps are planned (``RunPlan.rollout``; ``plan``
shows them); this phase only runs them.
"""

from __future__ import annotations

from provisioner.errors import HostError, ProvisionerError
from provisioner.inventory import Host
from provisioner.phases import Context, Phase
from provisioner.phases.drain_nodes import drain_node
from provisioner.steps import RolloutHost
from provisioner.summary import Result


class RolloutStopped(ProvisionerError):
    """A host failed during the rolling upgrade; the rollout stopped there."""

    def __init__(self, host: str, cause: ProvisionerError, untouched: list[str]) -> None:
        self.host = host
        self.cause = cause
        self.untouched = untouched
        why = cause.message if isinstance(cause, HostError) else str(cause)
        rest = f"; not touched: {', '.join(untouched)}" if untouched else ""
        super().__init__(f"rolling upgrade stopped at {host}: {why}; {host} is left cordoned{rest}")

    def lines(self) -> list[str]:
        return [str(self)] + [f"  {line}" for line in self.cause.lines()[1:]]


class RollingUpgrade(Phase):
    """Runs the planned waves in order; the API steps on the first server, the upgrade steps on
    the hosts of the wave (in parallel within a wave). Already done: no host plans an upgrade,
    so there is no wave and the phase is skipped."""

    title = "rolling upgrade"

    def should_run(self, ctx: Context) -> bool:
        return bool(ctx.plan.rollout)

    def run(self, ctx: Context) -> None:
        api = ctx.init_server
        waves = ctx.plan.rollout
        options = ctx.inputs.options
        order = [h.host.name for wave in waves for h in wave]
        for wave in waves:
            current: RolloutHost | None = None
            try:
                for item in wave:
                    current = item
                    ctx.inputs.reporter.step(item.host.name, "cordoning")
                    ctx.execute(api, [item.cordon], cluster=True)
                for item in wave:
                    current = item
                    if item.drain is not None:
                        ctx.inputs.reporter.step(item.host.name, "draining")
                        drain_node(ctx, api, item.host.name, item.drain, options.drain_timeout)
                current = None
                self._upgrade(ctx, wave)
                for item in wave:
                    current = item
                    ctx.execute(api, [item.wait], cluster=True)
                    ctx.execute(api, [item.uncordon], cluster=True)
                    ctx.results.upgraded.append(item.host.name)
                    ctx.inputs.reporter.done(item.host.name, "upgraded")
            except ProvisionerError as error:
                failed = current.host.name if current is not None else next(iter(ctx.failures), wave[0].host.name)
                cause = ctx.failures.get(failed, error)
                done = set(ctx.results.upgraded) | {failed}
                untouched = [n for n in order[order.index(wave[0].host.name) :] if n not in done]
                ctx.outcome(failed).result = Result.FAILED
                raise RolloutStopped(failed, cause, untouched) from None

    @staticmethod
    def _upgrade(ctx: Context, wave: tuple[RolloutHost, ...]) -> None:
        """The wave's planned upgrade steps, its hosts in parallel; the first failure stops it."""

        def upgrade(host: Host) -> None:
            ctx.outcome(host).result = Result.CHANGED
            ctx.execute(host, ctx.plan.hosts[host.name].steps)

        ctx.each([item.host for item in wave], upgrade, step="upgrading", done="upgraded, waiting for Ready")
        failed = [item.host.name for item in wave if item.host.name in ctx.failures]
        if failed:
            raise ctx.failures[failed[0]]
