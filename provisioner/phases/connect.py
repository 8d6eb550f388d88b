"""Connect: open an SSH session to every host of the action, in parallel."""

from __future__ import annotations

from provisioner.errors import HostsFailed
from provisioner.phases import Context, Phase


class Connect(Phase):
    """Opens the sessions. With ``require_all`` (the default) one unreachable host stops the
    action before anything changes; otherwise it is enough that one host answers."""

    title = "connect"

    def __init__(self, *, require_all: bool = True) -> None:
        self.require_all = require_all

    def run(self, ctx: Context) -> None:
        ctx.reporter.begin([(h.name, h.role) for h in ctx.hosts])
        connected = ctx.each(
            ctx.hosts, lambda host: ctx.connector(ctx.inventory, host), step="connecting", done="connected"
        )
        ctx.remotes.update(connected)
        if ctx.failures and (self.require_all or not connected):
            raise HostsFailed(dict(ctx.failures))
