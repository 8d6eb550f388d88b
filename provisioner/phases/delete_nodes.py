"""Delete the Node objects of the drained nodes (k3s and kubeadm then forget them; with k3s's
embedded etcd the server's etcd member goes with its Node)."""

from __future__ import annotations

from provisioner.phases import Context, Phase


class DeleteNodes(Phase):
    """Runs the planned deletions on the server that stays."""

    title = "delete node objects"

    def run(self, ctx: Context) -> None:
        plan = ctx.results.removal
        assert plan is not None
        for node in plan.nodes:
            if node.delete is not None:
                ctx.inputs.reporter.step(node.name, "deleting the Node object")
                ctx.execute(plan.api_host, [node.delete], cluster=True)
