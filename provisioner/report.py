"""Rendering outcomes for people (rich tables) and for scripts (JSON-ready dicts)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape as _escape
from rich.table import Table

from provisioner.disruption import Blocker, DrainBlocked
from provisioner.errors import NotReadyError, ProvisionerError
from provisioner.nodes import Node
from provisioner.steps import Command, ReadValue, Step, Upload, Wait
from provisioner.summary import RunSummary

RESULT_STYLE = {"changed": "yellow", "unchanged": "green", "failed": "red"}


def escape(text: str) -> str:
    return _escape(text)


def _host_rows(summary: RunSummary) -> list[dict[str, Any]]:
    rows = []
    for host in summary.hosts:
        outcome = summary.outcomes.get(host.name)
        counts = summary.counts.get(host.name)
        rows.append(
            {
                "name": host.name,
                "address": host.address,
                "role": host.role,
                "action": outcome.action.value if outcome else "nothing",
                "result": outcome.result.value if outcome else "unchanged",
                "seconds": round(outcome.seconds, 2) if outcome else 0.0,
                "error": outcome.error if outcome else "",
                "commands": counts.commands if counts else 0,
                "uploads": counts.uploads if counts else 0,
                "steps": [r.as_dict() for r in outcome.steps] if outcome else [],
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


def _kubeconfig_lines(console: Console, summary: RunSummary) -> None:
    fetched = summary.kubeconfig
    if fetched is not None:
        written = fetched.written
        what = "written to" if written.changed else "unchanged:"
        extra = f" (backup: {written.backup})" if written.backup else ""
        console.print(f"kubeconfig {what} {written.path}{extra}, context {fetched.context}")
        check = fetched.check
        if check is not None:
            style = {"ok": "green", "unreachable": "yellow"}.get(check.status, "red")
            console.print(f"[{style}]API check: {escape(check.detail)}[/]")


def up_text(console: Console, summary: RunSummary, error: ProvisionerError | None) -> None:
    table = Table(title="Hosts", title_justify="left")
    for column in ("HOST", "ROLE", "ACTION", "RESULT", "TIME", "COMMANDS"):
        table.add_column(column)
    for row in _host_rows(summary):
        style = RESULT_STYLE.get(row["result"], "")
        result = row["result"] + (f": {escape(row['error'])}" if row["error"] else "")
        table.add_row(row["name"], row["role"], row["action"], f"[{style}]{result}[/]", f"{row['seconds']:.1f}s", str(row["commands"]))
    console.print(table)
    for title in summary.applied_addons:
        console.print(f"cluster: applied {escape(title)}")
    if isinstance(error, NotReadyError):
        console.print(not_ready_table(error.not_ready))  # type: ignore[arg-type]
    if summary.nodes:
        console.print(nodes_table(list(summary.nodes), summary.roles))
    _kubeconfig_lines(console, summary)
    if summary.upgraded:
        console.print(f"rolling upgrade: {escape(', '.join(summary.upgraded))} upgraded, in this order")
    if summary.blockers:
        console.print(blockers_table(list(summary.blockers)))
    if summary.checks:
        console.print(checks_table(summary))
    for warning in summary.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")


def up_json(summary: RunSummary) -> dict[str, Any]:
    fetched = summary.kubeconfig
    return {
        "cluster": summary.cluster_name,
        "hosts": _host_rows(summary),
        "nodes": [n.as_dict() for n in summary.nodes or []],
        "cluster_steps": list(summary.applied_addons),
        "cluster_step_records": [r.as_dict() for r in summary.cluster_steps],
        "kubeconfig": None
        if fetched is None
        else {
            "path": str(fetched.written.path),
            "changed": fetched.written.changed,
            "backup": str(fetched.written.backup) if fetched.written.backup else None,
            "check": None if fetched.check is None else vars(fetched.check),
        },
        "warnings": list(summary.warnings),
        "upgraded": list(summary.upgraded),
        "blockers": [b.as_dict() for b in summary.blockers],
        **({"checks": [c.as_dict() for c in summary.checks]} if summary.checks else {}),
    }


def _step_lines(console: Console, number: int, step: Step) -> None:
    """One planned step: its name and the operations it will run (placeholders, no secrets)."""
    console.print(f"    {number}. {escape(step.name)}")
    for op in step.operations:
        if isinstance(op, Upload):
            source = f" from {op.local_file}" if op.local_file else ""
            console.print(f"       [dim]upload {escape(op.path)} ({op.mode:04o}){escape(source)}[/]")
            if op.show and isinstance(op.content, str):
                for line in op.content.rstrip().splitlines():
                    console.print(f"         [dim]{escape(line)}[/]")
        elif isinstance(op, Command):
            console.print(f"       [dim]run: {escape(op.text)}[/]")
        elif isinstance(op, Wait):
            console.print(f"       [dim]wait until `{escape(op.command)}` prints {escape(op.expect)}[/]")
        elif isinstance(op, ReadValue):
            gives = ", ".join(p.text for p in op.produces)
            console.print(f"       [dim]read {escape(gives)}: {escape(op.command)}[/]")


def plan_text(console: Console, summary: RunSummary, error: ProvisionerError | None) -> None:
    plan = summary.plan
    if plan is None:
        return
    changes = [p for p in plan.hosts.values() if p.action.changes]
    for host_plan in plan.hosts.values():
        host = host_plan.host
        style = "yellow" if host_plan.action.changes else "green"
        console.print(f"[bold]{host.name}[/] ({host.role}, {host.address}): [{style}]{host_plan.action.value}[/]")
        for reason in host_plan.reasons:
            console.print(f"  - {escape(reason)}")
        for number, step in enumerate(host_plan.steps, 1):
            _step_lines(console, number, step)
    cluster_steps = plan.cluster.steps
    for step in cluster_steps:
        console.print(f"[bold]cluster[/]: [yellow]{escape(step.name)}[/]: {escape(step.reason)}")
        for op in step.operations:
            if isinstance(op, Command):
                console.print(f"       [dim]run: {escape(op.text)}[/]")
            elif isinstance(op, ReadValue):
                console.print(f"       [dim]read {escape(', '.join(p.text for p in op.produces))}: {escape(op.command)}[/]")
    if plan.rollout:
        console.print(
            "[bold]rolling upgrade[/], one wave after the other (cordon → drain → upgrade → Ready on the new version → uncordon):"
        )
        for number, wave in enumerate(plan.rollout, 1):
            drained = "" if all(h.drain is not None for h in wave) else " (no drain)"
            console.print(f"  {number}. {escape(', '.join(h.host.name for h in wave))}{drained}")
    if changes or cluster_steps:
        console.print(
            f"{len(changes)} of {len(plan.hosts)} hosts would change."
            + (f" {len(cluster_steps)} cluster step(s)." if cluster_steps else "")
        )
    else:
        console.print("Nothing to do.")


def plan_json(summary: RunSummary) -> dict[str, Any]:
    plan = summary.plan
    return {
        "cluster": summary.cluster_name,
        "hosts": [p.as_dict() for p in plan.hosts.values()] if plan else [],
        "cluster_steps": [{"title": s.name, **s.as_dict()} for s in plan.cluster.addons] if plan else [],
        "join_secret": plan.cluster.join_secret.as_dict() if plan and plan.cluster.join_secret else None,
        "stale_nodes": [s.as_dict() for s in plan.cluster.stale_nodes] if plan else [],
        "rollout": [[h.as_dict() for h in wave] for wave in plan.rollout] if plan else [],
        "warnings": list(summary.warnings),
    }


def _status_nodes(summary: RunSummary) -> list[Node]:
    nodes = {n.name: n for n in summary.nodes or []}
    ordered = []
    for host in summary.inventory_hosts:
        found = nodes.pop(host.name) if host.name in nodes else None
        ordered.append(found or Node(host.name, "Missing", (), "", ""))
    return ordered + sorted(nodes.values(), key=lambda n: n.name)


def all_ready(summary: RunSummary) -> bool:
    names = {n.name: n for n in summary.nodes or []}
    return all(h.name in names and names[h.name].is_ready for h in summary.inventory_hosts)


def status_text(console: Console, summary: RunSummary, error: ProvisionerError | None) -> None:
    if summary.nodes is None:
        return
    table = Table(title=f"Cluster {summary.cluster_name}", title_justify="left")
    for column in ("NAME", "ROLE", "STATUS", "VERSION", "ADDRESS"):
        table.add_column(column)
    roles = summary.roles
    for node in _status_nodes(summary):
        if node.ready == "Missing":
            status = "[red]NotRegistered[/]"
        else:
            status = f"[{'green' if node.is_ready else 'red'}]{node.status_text}[/]"
        role = roles.get(node.name, "not in inventory")
        table.add_row(node.name, role, status, node.version, node.internal_ip)
    console.print(table)


def status_json(summary: RunSummary) -> dict[str, Any]:
    roles = summary.roles
    nodes = []
    for node in _status_nodes(summary) if summary.nodes is not None else []:
        row = node.as_dict()
        row["role"] = roles.get(node.name)
        row["registered"] = node.ready != "Missing"
        nodes.append(row)
    return {"cluster": summary.cluster_name, "nodes": nodes, "all_ready": all_ready(summary)}


def kubeconfig_text(console: Console, summary: RunSummary, error: ProvisionerError | None) -> None:
    _kubeconfig_lines(console, summary)
    for warning in summary.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")


def kubeconfig_json(summary: RunSummary) -> dict[str, Any]:
    data = up_json(summary)
    return {"cluster": data["cluster"], "kubeconfig": data["kubeconfig"], "warnings": data["warnings"]}


# --- remove and reset -------------------------------------------------------------------------


def blockers_table(blockers: list[Blocker]) -> Table:
    table = Table(title="Drain blocked by PodDisruptionBudgets", title_justify="left", title_style="red")
    for column in ("PDB", "NAMESPACE", "DISRUPTIONS ALLOWED", "MIN AVAILABLE", "PODS ON THE NODE"):
        table.add_column(column)
    for b in blockers:
        table.add_row(
            b.budget.name, b.budget.namespace, str(b.budget.disruptions_allowed), b.budget.min_available or "-", escape(", ".join(b.pods))
        )
    return table


def remove_text(console: Console, summary: RunSummary, error: ProvisionerError | None) -> None:
    removal = summary.removal
    if removal is None:
        return
    ran = bool(summary.cluster_steps) or any(o.steps for o in summary.outcomes.values())
    for node in removal.nodes:
        where = f"{node.host.address}" if node.host else "not in the inventory"
        console.print(f"[bold]{node.name}[/] ({node.role}, {where}): [yellow]remove[/]")
        number = 0
        for step in node.api_steps:
            number += 1
            _step_lines(console, number, step)
            console.print(f"       [dim](on {escape(removal.api_host.name)})[/]")
        for step in node.uninstall:
            number += 1
            _step_lines(console, number, step)
        if node.skipped:
            console.print(f"    [yellow]uninstall skipped: {escape(node.skipped)}[/]")
    blockers = error.blockers if isinstance(error, DrainBlocked) else list(summary.blockers)
    if blockers and error is not None:
        console.print(blockers_table(blockers))
    if error is None and ran:
        hosts = [n.name for n in removal.nodes if n.host is not None]
        console.print(f"[green]removed {escape(', '.join(n.name for n in removal.nodes))}[/]")
        if hosts:
            console.print(
                f"next: delete {escape(', '.join(hosts))} from the inventory, or a later `up` joins "
                f"{'it' if len(hosts) == 1 else 'them'} again"
            )
    elif error is None:
        console.print("dry run: nothing was changed")
    for warning in summary.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")


def checks_table(summary: RunSummary) -> Table:
    """One row per check: name, ok or failed, and why."""
    table = Table(title=f"Checks of {summary.cluster_name}", title_justify="left")
    for column in ("CHECK", "RESULT", "DETAIL"):
        table.add_column(column)
    for row in summary.checks:
        style = "green" if row.ok else "red"
        table.add_row(escape(row.name), f"[{style}]{row.status.value}[/]", escape(row.detail))
    return table


def check_text(console: Console, summary: RunSummary, error: ProvisionerError | None) -> None:
    if summary.checks:
        console.print(checks_table(summary))
        failed = sum(1 for row in summary.checks if not row.ok)
        console.print(
            f"[red]{failed} of {len(summary.checks)} checks failed.[/]" if failed else f"[green]All {len(summary.checks)} checks passed.[/]"
        )
    for warning in summary.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")


def remove_json(summary: RunSummary) -> dict[str, Any]:
    removal = summary.removal
    return {
        "cluster": summary.cluster_name,
        "removal": removal.as_dict() if removal else None,
        "hosts": _host_rows(summary),
        "api_step_records": [r.as_dict() for r in summary.cluster_steps],
        "unreachable": dict(summary.unreachable),
        "blockers": [b.as_dict() for b in summary.blockers],
        "warnings": list(summary.warnings),
    }


def reset_text(console: Console, summary: RunSummary, error: ProvisionerError | None) -> None:
    table = Table(title="Hosts", title_justify="left")
    for column in ("HOST", "ROLE", "RESULT", "TIME"):
        table.add_column(column)
    for row in _host_rows(summary):
        style = RESULT_STYLE.get(row["result"], "")
        result = "uninstalled" if row["result"] == "changed" and not row["error"] else row["result"]
        result += f": {escape(row['error'])}" if row["error"] else ""
        table.add_row(row["name"], row["role"], f"[{style}]{result}[/]", f"{row['seconds']:.1f}s")
    console.print(table)
    for path, backup in summary.kubeconfig_cleaned:
        console.print(f"kubeconfig: {escape(str(path))}: the cluster's entries removed (backup: {escape(str(backup))})")


def reset_json(summary: RunSummary) -> dict[str, Any]:
    return {
        "cluster": summary.cluster_name,
        "hosts": _host_rows(summary),
        "kubeconfig_cleaned": [{"path": str(p), "backup": str(b) if b else None} for p, b in summary.kubeconfig_cleaned],
        "warnings": list(summary.warnings),
    }


def check_json(summary: RunSummary) -> dict[str, Any]:
    return {
        "cluster": summary.cluster_name,
        "checks": [row.as_dict() for row in summary.checks],
        "failed": [row.name for row in summary.checks if not row.ok],
        "nodes": [n.as_dict() for n in summary.nodes or []],
        "warnings": list(summary.warnings),
    }
