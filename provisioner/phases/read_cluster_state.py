"""Read cluster state: join secret and nodes from the first server, if it already runs."""

from __future__ import annotations

from provisioner.distros import ClusterState
from provisioner.phases import Context, Phase


class ReadClusterState(Phase):
    """Finds the server that holds the cluster and asks it; a new cluster reads nothing."""

    title = "read cluster state"

    def run(self, ctx: Context) -> None:
        dist = ctx.distribution
        init = dist.init_server(ctx.facts)
        if dist.installed(ctx.facts[init.name]):
            ctx.reporter.step(init.name, "reading cluster state")
            ctx.state = dist.read_state(ctx.remote(init), init)
        else:
            ctx.state = ClusterState(init_server=init)
        ctx.join_secret = ctx.state.join_secret
        ctx.nodes = ctx.state.nodes
