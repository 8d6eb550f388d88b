"""Rendering outcomes for people (rich tables) and for scripts (JSON-ready dicts)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape as _escape
from rich.table import Table

from provisioner.errors import NotReadyError, ProvisionerError
from provisioner.nodes import Node
from provisioner.phases import Context

RESULT_STYLE = {"changed": "yellow", "unchanged": "green", "failed": "red"}


def escape(text: str) -> str:
    return _escape(text)


def _host_rows(ctx: Context) -> list[dict[str, Any]]:
    rows = []
    for host in ctx.hosts:
        outcome = ctx.outcomes.get(host.name)
        rows.append(
            {
                "name": host.name,
                "address": host.address,
                "role": host.role,
                "action": outcome.action if outcome else "nothing",
                "result": outcome.result if outcome else "unchanged",
                "seconds": round(outcome.seconds, 2) if outcome else 0.0,
                "error": outcome.error if outcome else "",
                "commands": ctx.remotes[host.name].command_count if host.name in ctx.remotes else 0,
                "uploads": ctx.remotes[host.name].upload_count if host.name in ctx.remotes else 0,
            }
        )
    return rows


def nodes_table(nodes: list[Node], inventory_roles: dict[str, str] | None = None, title: str = "Nodes") -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("NAME", "STATUS", "ROLES", "VERSION", "ADDRESS"):
        table.add_column(column)
    for node in nodes:
        style = "green" if node.is_ready else "red"
        name = node.name if inventory_roles is None or node.name in inventory_roles else f"{node.name} (not in inventory)"
        table.add_row(name, f"[{style}]{node.status_text}[/]", ",".join(node.roles) or "<none>", node.version, node.internal_ip)
    return table


def not_ready_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Nodes not Ready", title_justify="left", title_style="red")
    for column in ("NAME", "STATUS", "REASON", "MESSAGE"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["name"], f"[red]{row['status']}[/]", row.get("reason", ""), escape(row.get("message", "")))
    return table


def _kubeconfig_lines(console: Console, ctx: Context) -> None:
    written = ctx.kubeconfig_written
    if written is not None:
        what = "written to" if written.changed else "unchanged:"
        extra = f" (backup: {written.backup})" if written.backup else ""
        context = ctx.kubeconfig.get("current-context") if ctx.kubeconfig is not None else ""
        console.print(f"kubeconfig {what} {written.path}{extra}, context {context}")
    check = ctx.kubeconfig_check
    if check is not None:
        style = {"ok": "green", "unreachable": "yellow"}.get(check.status, "red")
        console.print(f"[{style}]API check: {escape(check.detail)}[/]")


def up_text(console: Console, ctx: Context, error: ProvisionerError | None) -> None:
    table = Table(title="Hosts", title_justify="left")
    for column in ("HOST", "ROLE", "ACTION", "RESULT", "TIME", "COMMANDS"):
        table.add_column(column)
    for row in _host_rows(ctx):
        style = RESULT_STYLE.get(row["result"], "")
        result = row["result"] + (f": {escape(row['error'])}" if row["error"] else "")
        table.add_row(row["name"], row["role"], row["action"], f"[{style}]{result}[/]", f"{row['seconds']:.1f}s", str(row["commands"]))
    console.print(table)
    for title in ctx.applied_cluster_steps:
        console.print(f"cluster: applied {escape(title)}")
    if isinstance(error, NotReadyError):
        console.print(not_ready_table(error.not_ready))  # type: ignore[arg-type]
    if ctx.nodes:
        console.print(nodes_table(ctx.nodes, {h.name: h.role for h in ctx.inventory.hosts}))
    _kubeconfig_lines(console, ctx)
    for warning in ctx.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")


def up_json(ctx: Context) -> dict[str, Any]:
    written = ctx.kubeconfig_written
    return {
        "cluster": ctx.inventory.cluster.name,
        "hosts": _host_rows(ctx),
        "nodes": [n.as_dict() for n in ctx.nodes or []],
        "cluster_steps": list(ctx.applied_cluster_steps),
        "kubeconfig": None
        if written is None
        else {
            "path": str(written.path),
            "changed": written.changed,
            "backup": str(written.backup) if written.backup else None,
            "check": None if ctx.kubeconfig_check is None else vars(ctx.kubeconfig_check),
        },
        "warnings": list(ctx.warnings),
    }


def plan_text(console: Console, ctx: Context, error: ProvisionerError | None) -> None:
    if not ctx.plans:
        return
    changes = [p for p in ctx.plans.values() if p.action.changes]
    for plan in ctx.plans.values():
        style = "yellow" if plan.action.changes else "green"
        console.print(f"[bold]{plan.host.name}[/] ({plan.host.role}, {plan.host.address}): [{style}]{plan.action.value}[/]")
        for reason in plan.reasons:
            console.print(f"  - {escape(reason)}")
        if plan.action.changes and plan.config_preview:
            for line in plan.config_preview.rstrip().splitlines():
                console.print(f"    [dim]{escape(line)}[/]")
    for step in ctx.cluster_steps:
        console.print(f"[bold]cluster[/]: [yellow]{escape(step.title)}[/]: {escape(step.reason)}")
    if changes or ctx.cluster_steps:
        console.print(f"{len(changes)} of {len(ctx.plans)} hosts would change."
                      + (f" {len(ctx.cluster_steps)} cluster step(s)." if ctx.cluster_steps else ""))
    else:
        console.print("Nothing to do.")


def plan_json(ctx: Context) -> dict[str, Any]:
    return {
        "cluster": ctx.inventory.cluster.name,
        "hosts": [p.as_dict() for p in ctx.plans.values()],
        "cluster_steps": [{"title": s.title, "reason": s.reason} for s in ctx.cluster_steps],
    }


def _status_nodes(ctx: Context) -> list[Node]:
    nodes = {n.name: n for n in ctx.nodes or []}
    ordered = []
    for host in ctx.inventory.hosts:
        ordered.append(nodes.pop(host.name, None) or Node(host.name, "Missing", (), "", ""))
    return ordered + sorted(nodes.values(), key=lambda n: n.name)


def all_ready(ctx: Context) -> bool:
    names = {n.name: n for n in ctx.nodes or []}
    return all(h.name in names and names[h.name].is_ready for h in ctx.inventory.hosts)


def status_text(console: Console, ctx: Context, error: ProvisionerError | None) -> None:
    if ctx.nodes is None:
        return
    table = Table(title=f"Cluster {ctx.inventory.cluster.name}", title_justify="left")
    for column in ("NAME", "ROLE", "STATUS", "VERSION", "ADDRESS"):
        table.add_column(column)
    roles = {h.name: h.role for h in ctx.inventory.hosts}
    for node in _status_nodes(ctx):
        if node.ready == "Missing":
            status = "[red]NotRegistered[/]"
        else:
            status = f"[{'green' if node.is_ready else 'red'}]{node.status_text}[/]"
        role = roles.get(node.name, "not in inventory")
        table.add_row(node.name, role, status, node.version, node.internal_ip)
    console.print(table)


def status_json(ctx: Context) -> dict[str, Any]:
    roles = {h.name: h.role for h in ctx.inventory.hosts}
    nodes = []
    for node in _status_nodes(ctx) if ctx.nodes is not None else []:
        row = node.as_dict()
        row["role"] = roles.get(node.name)
        row["registered"] = node.ready != "Missing"
        nodes.append(row)
    return {"cluster": ctx.inventory.cluster.name, "nodes": nodes, "all_ready": all_ready(ctx)}


def kubeconfig_text(console: Console, ctx: Context, error: ProvisionerError | None) -> None:
    _kubeconfig_lines(console, ctx)
    for warning in ctx.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")


def kubeconfig_json(ctx: Context) -> dict[str, Any]:
    data = up_json(ctx)
    return {"cluster": data["cluster"], "kubeconfig": data["kubeconfig"], "warnings": data["warnings"]}
