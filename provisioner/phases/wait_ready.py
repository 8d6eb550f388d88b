"""Wait until every inventory node is Ready, asking the API on the first server over SSH."""

from __future__ import annotations

import time

from provisioner.errors import NotReadyError
from provisioner.nodes import Node, readiness
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
        expected = [h.name for h in ctx.inputs.inventory.hosts if h.name not in ctx.failures]
        known = ctx.results.nodes
        nothing_changed = not ctx.results.applied_addons and all(not p.action.changes for p in ctx.plan.hosts.values())
        if nothing_changed and known is not None and readiness(known, expected).complete:
            self._report(ctx, known, expected)
            return
        remote = ctx.remote(ctx.init_server)
        timeout = ctx.inputs.options.timeout
        deadline = time.monotonic() + timeout
        nodes: list[Node] = []
        while True:
            listing = ctx.inputs.distribution.list_nodes(remote)
            if listing.nodes is not None:
                nodes = listing.nodes
                state = readiness(nodes, expected)
                self._report(ctx, nodes, expected)
                if state.complete:
                    ctx.results.nodes = nodes
                    return
            if time.monotonic() >= deadline:
                break
            ctx.inputs.reporter.note(f"waiting for {len(expected) - len(readiness(nodes, expected).ready)} node(s) to be Ready")
            time.sleep(POLL_SECONDS)
        ctx.results.nodes = nodes
        state = readiness(nodes, expected)
        rows = [n.as_dict() for n in state.not_ready] + [
            {
                "name": name,
                "status": "missing",
                "ready": False,
                "roles": [],
                "version": "",
                "address": "",
                "reason": "NotRegistered",
                "message": "no Node object with this name",
            }
            for name in state.missing
        ]
        raise NotReadyError(
            f"{len(rows)} of {len(expected)} nodes not Ready after {timeout:.0f}s: " + ", ".join(r["name"] for r in rows),
            rows,
        )

    @staticmethod
    def _report(ctx: Context, nodes: list[Node], expected: list[str]) -> None:
        by_name = {n.name: n for n in nodes}
        reporter = ctx.inputs.reporter
        for name in expected:
            node = by_name.get(name)
            if node is not None and node.is_ready:
                reporter.done(name, f"Ready ({node.version})")
            else:
                reporter.step(name, "waiting for Ready" if node is None else f"waiting for Ready ({node.status_text})")
