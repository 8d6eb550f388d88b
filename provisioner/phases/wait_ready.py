"""Wait until every inventory node is Ready, asking the API on the first server over SSH."""

from __future__ import annotations

import time

from provisioner.errors import NotReadyError
from provisioner.nodes import Node, parse_node_list, readiness
from provisioner.phases import Context, Phase

POLL_SECONDS = 2.0


class WaitReady(Phase):
    """Polls ``kubectl get nodes -o json`` until all expected nodes are Ready or ``--timeout``
    passes; then fails with the nodes that are not Ready and why. Hosts that failed earlier in
    the run are not waited for (they are already reported)."""

    title = "wait for Ready nodes"

    def should_run(self, ctx: Context) -> bool:
        return ctx.init_server.name not in ctx.failures

    def run(self, ctx: Context) -> None:
        expected = [h.name for h in ctx.inventory.hosts if h.name not in ctx.failures]
        nothing_changed = not ctx.applied_cluster_steps and all(not p.action.changes for p in ctx.plans.values())
        if nothing_changed and ctx.nodes is not None and readiness(ctx.nodes, expected).complete:
            self._report(ctx, ctx.nodes, expected)
            return
        remote = ctx.remote(ctx.init_server)
        command = ctx.distribution.list_nodes_command()
        deadline = time.monotonic() + ctx.options.timeout
        nodes: list[Node] = []
        while True:
            result = remote.sudo(command, check=False, timeout=30)
            if result.ok:
                nodes = parse_node_list(result.stdout)
                state = readiness(nodes, expected)
                self._report(ctx, nodes, expected)
                if state.complete:
                    ctx.nodes = nodes
                    return
            if time.monotonic() >= deadline:
                break
            ctx.reporter.note(f"waiting for {len(expected) - len(readiness(nodes, expected).ready)} node(s) to be Ready")
            time.sleep(POLL_SECONDS)
        ctx.nodes = nodes
        state = readiness(nodes, expected)
        rows = [n.as_dict() for n in state.not_ready] + [
            {"name": name, "status": "missing", "ready": False, "roles": [], "version": "", "address": "",
             "reason": "NotRegistered", "message": "no Node object with this name"}
            for name in state.missing
        ]
        raise NotReadyError(
            f"{len(rows)} of {len(expected)} nodes not Ready after {ctx.options.timeout:.0f}s: "
            + ", ".join(r["name"] for r in rows),
            rows,
        )

    @staticmethod
    def _report(ctx: Context, nodes: list[Node], expected: list[str]) -> None:
        by_name = {n.name: n for n in nodes}
        for name in expected:
            node = by_name.get(name)
            if node is not None and node.is_ready:
                ctx.reporter.done(name, f"Ready ({node.version})")
            else:
                ctx.reporter.step(name, "waiting for Ready" if node is None else f"waiting for Ready ({node.status_text})")
