"""Read cluster state: join secret and nodes from the first server, if it already runs."""

from __future__ import annotations

from provisioner.distros import ClusterState
from provisioner.phases import Context, Phase


class ReadClusterState(Phase):
    """Finds the server that holds the cluster and asks it; a new cluster reads nothing."""

    title = "read cluster state"

    def run(self, ctx: Context) -> None:
        dist = ctx.inputs.distribution
        facts = ctx.results.facts
        init = dist.init_server(facts)
        if dist.installed(facts[init.name]):
            ctx.inputs.reporter.step(init.name, "reading cluster state")
            state = dist.read_state(ctx.remote(init), init)
        else:
            state = ClusterState(init_server=init)
        ctx.results.state = state
        ctx.results.nodes = state.nodes
        ctx.results.values.prefill(dist.known_values(state))
