"""Connect to the hosts that answer: unreachable ones are set aside, not failed (``remove``: the
API steps still run for a host that is down; only its uninstall is skipped)."""

from __future__ import annotations

from provisioner.errors import HostsFailed, ProvisionerError
from provisioner.phases import Context, Phase


class ConnectReachable(Phase):
    """Opens the sessions; a host that does not answer goes to ``unreachable`` with the reason.
    At least one server has to answer (kubectl runs there)."""

    title = "connect"

    def run(self, ctx: Context) -> None:
        inputs = ctx.inputs
        inputs.reporter.begin([(h.name, h.role) for h in inputs.hosts])
        connected = ctx.each(inputs.hosts, lambda host: inputs.connector(inputs.inventory, host), step="connecting", done="connected")
        ctx.results.remotes.update(connected)
        failed = dict(ctx.failures)
        ctx.failures.clear()
        for name, error in failed.items():
            ctx.results.unreachable[name] = str(error)
            ctx.warn(f"{name} does not answer over SSH; going on without it ({error})")
        if not any(h.name in connected for h in inputs.inventory.servers):
            raise HostsFailed(
                {name: error for name, error in failed.items()} or {"servers": ProvisionerError("no server in the inventory")}
            )
