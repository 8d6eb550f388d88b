"""Read nodes: ask the first server that answers for the cluster's nodes (for ``status``)."""

from __future__ import annotations

from provisioner.errors import ProvisionerError
from provisioner.nodes import parse_node_list
from provisioner.phases import Context, Phase


class ReadNodes(Phase):
    """Tries each connected server in inventory order until one lists the nodes."""

    title = "read nodes"

    def run(self, ctx: Context) -> None:
        reasons = []
        for host in ctx.hosts:
            if host.name not in ctx.remotes:
                continue
            result = ctx.remote(host).sudo(ctx.distribution.list_nodes_command(), check=False, timeout=30)
            if result.ok:
                ctx.nodes = parse_node_list(result.stdout)
                ctx.reporter.done(host.name, f"{len(ctx.nodes)} nodes")
                return
            reasons.append(f"{host.name}: {(result.stderr.strip().splitlines() or ['no output'])[-1]}")
        raise ProvisionerError("no server could list the nodes: " + "; ".join(reasons))
