"""Read nodes: ask the first server that answers for the cluster's nodes (for ``status``)."""

from __future__ import annotations

from provisioner.errors import ProvisionerError
from provisioner.phases import Context, Phase


class ReadNodes(Phase):
    """Tries each connected server in inventory order until one lists the nodes."""

    title = "read nodes"

    def run(self, ctx: Context) -> None:
        reasons = []
        for host in ctx.inputs.hosts:
            if host.name not in ctx.results.remotes:
                continue
            listing = ctx.inputs.distribution.list_nodes(ctx.remote(host))
            if listing.nodes is not None:
                ctx.results.nodes = listing.nodes
                ctx.inputs.reporter.done(host.name, f"{len(listing.nodes)} nodes")
                return
            reasons.append(f"{host.name}: {listing.error}")
        raise ProvisionerError("no server could list the nodes: " + "; ".join(reasons))
