"""Remove stale nodes: a Node object left by an earlier install would block a host joining
under the same name (k3s refuses it: node password mismatch), so it is deleted first."""

from __future__ import annotations

from provisioner.distros import Action
from provisioner.nodes import parse_node_list
from provisioner.phases import Context, Phase


class RemoveStaleNodes(Phase):
    """Runs only when some host is about to join; asks the API for the current nodes."""

    title = "remove stale nodes"

    def should_run(self, ctx: Context) -> bool:
        return any(p.action is Action.JOIN and n not in ctx.failures for n, p in ctx.plans.items())

    def run(self, ctx: Context) -> None:
        remote = ctx.remote(ctx.init_server)
        listed = ctx.nodes
        if listed is None:
            listed = parse_node_list(remote.sudo(ctx.distribution.list_nodes_command(), timeout=60).stdout)
        nodes = {n.name: n for n in listed}
        for name, plan in ctx.plans.items():
            if plan.action is not Action.JOIN or name not in nodes:
                continue
            node = nodes[name]
            host = plan.host
            if node.is_ready and node.internal_ip not in (host.address, host.node_ip):
                ctx.warn(
                    f"node {name} is Ready at {node.internal_ip}, a different machine than {host.address}; "
                    "it is deleted because the inventory gives the name to this host"
                )
            ctx.reporter.step(name, "deleting stale node object")
            remote.sudo(ctx.distribution.delete_node_command(name), timeout=90)
            ctx.reporter.note(f"deleted stale node object {name} (left by an earlier install)")
