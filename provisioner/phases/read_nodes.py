"""Read nodes: ask the first server that answers for the cluster's nodes (for ``status``)."""

from __future__ import annotations

from provisioner.errors import ProvisionerError
from provisioner.phases import Context, Phase
from provisioner.quorum import QuorumLost, lost_quorum


class ReadNodes(Phase):
    """Tries each connected server in inventory order until one lists the nodes. When none
    does and a server's API says its etcd has no quorum, that is the error (not a timeout)."""

    title = "read nodes"

    def run(self, ctx: Context) -> None:
        reasons: dict[str, str] = {}
        for host in ctx.inputs.hosts:
            if host.name not in ctx.results.remotes:
                continue
            listing = ctx.inputs.distribution.list_nodes(ctx.remote(host))
            if listing.nodes is not None:
                ctx.results.nodes = listing.nodes
                ctx.inputs.reporter.done(host.name, f"{len(listing.nodes)} nodes")
                return
            reasons[host.name] = listing.error
        servers = [h for h in ctx.inputs.inventory.servers]
        if any(lost_quorum(reason) for reason in reasons.values()):
            for host in servers:
                reasons.setdefault(host.name, "not reachable over SSH")
            raise QuorumLost([h.name for h in servers], reasons, ctx.inputs.distribution.service_unit(servers[0]))
        raise ProvisionerError("no server could list the nodes: " + "; ".join(f"{name}: {why}" for name, why in reasons.items()))
