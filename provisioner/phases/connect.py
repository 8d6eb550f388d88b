"""Connect: open an SSH session to every host of the action, in parallel."""

from __future__ import annotations

from provisioner.errors import HostsFailed
from provisioner.phases import Context, Phase


class Connect(Phase):
    """Opens the sessions, at most ``--connect-concurrency`` at once. With ``require_all`` (the default) one unreachable host stops the
    action before anything changes; otherwise it is enough that one host answers."""

    title = "connect"

    def __init__(self, *, require_all: bool = True) -> None:
        self.require_all = require_all

    def run(self, ctx: Context) -> None:
        inputs = ctx.inputs
        inputs.reporter.begin([(h.name, h.role) for h in inputs.hosts])
        connected = ctx.each(
            inputs.hosts,
            lambda host: inputs.connector(inputs.inventory, host),
            step="connecting",
            done="connected",
            limit=inputs.options.connect_concurrency,
        )
        ctx.results.remotes.update(connected)
        if ctx.failures and (self.require_all or not connected):
            raise HostsFailed(dict(ctx.failures))
