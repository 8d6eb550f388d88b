"""Command line: turns flags into options, calls one action of the core, renders its outcome.

Exit codes: 0 success; 1 a host, the cluster or a local file failed; 2 bad inventory or flags, or
a kubeconfig merge refused for entries of another cluster (``--replace``); 70 an unexpected error
(a bug); 130 interrupted (SIGINT), 143 terminated (SIGTERM) — see ``provisioner.entry``.
With ``--output json`` stdout carries only JSON, errors included.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console

from provisioner import __version__, actions, report, runlog
from provisioner.checks import DEFAULT_IMAGE, CheckOptions
from provisioner.entry import json_requested
from provisioner.errors import ProvisionerError, UsageError
from provisioner.inventory import CLUSTER_MODELS, DISTRIBUTIONS, load_inventory
from provisioner.phases import Options
from provisioner.progress import LiveReporter, SilentReporter

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

log = logging.getLogger("provisioner.cli")


#: Entry-point group of extra command groups (``name = "module:group"``), e.g. the test lab's
#: ``provisioner lab``. They are found in the installed metadata, never imported by name here.
PLUGIN_GROUP = "provisioner.commands"


class LazyGroup(click.Group):
    """A group whose body lives in another module, imported only when the command is used."""

    def __init__(self, *args: Any, import_path: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._import_path = import_path

    def _real(self) -> click.Group:
        module_name, attr = self._import_path.split(":")
        group: click.Group = getattr(importlib.import_module(module_name), attr)
        return group

    def list_commands(self, ctx: click.Context) -> list[str]:
        return self._real().list_commands(ctx)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return self._real().get_command(ctx, name)


def _common(command: Callable[..., Any]) -> Callable[..., Any]:
    """Options every command takes (they may also be given before the command name)."""
    command = click.option("--debug", is_flag=True, default=None, help="Show tracebacks and every log line on stderr.")(command)
    command = click.option(
        "--log-file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Write the run log here instead of the state directory.",
    )(command)
    return command


def _inventory_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "-i",
        "--inventory",
        "inventory_path",
        required=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="Inventory file (YAML).",
    )(command)


def _connect_concurrency_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--connect-concurrency",
        type=click.IntRange(1, 512),
        default=32,
        show_default=True,
        help="Hosts connected to and asked for facts at once (these change nothing).",
    )(command)


def _output_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--output",
        "-o",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="text for people, json for scripts.",
    )(command)


def _lock_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--wait-lock``: for every command that changes hosts (they take the cluster lock)."""
    return click.option(
        "--wait-lock",
        "wait_lock",
        type=click.FloatRange(0),
        default=0,
        show_default=True,
        metavar="SECONDS",
        help="When another run holds the cluster's lock, wait up to this long for it (0: fail at once).",
    )(command)


def _kubeconfig_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option("--context", "context_name", default=None, help="Context name (default: the cluster name).")(command)
    command = click.option(
        "--out",
        "kubeconfig_out",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Where to write the kubeconfig (default ./<cluster>.kubeconfig, or with --merge $KUBECONFIG / ~/.kube/config).",
    )(command)
    command = click.option(
        "--replace",
        is_flag=True,
        help="With --merge: overwrite entries of the same names that belong to another server, CA or credentials.",
    )(command)
    command = click.option("--set-current", is_flag=True, help="With --merge: make the cluster's context the current one.")(command)
    command = click.option(
        "--merge",
        is_flag=True,
        help="Merge into your kubeconfig ($KUBECONFIG's files as kubectl reads them, backed up first) instead of writing a new file.",
    )(command)
    return command


def _check_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option(
        "--allow-cordoned",
        "allow_cordoned",
        multiple=True,
        metavar="NODE",
        help="A node that may be cordoned (spec.unschedulable) without failing the check; repeatable.",
    )(command)
    command = click.option(
        "--image", default=DEFAULT_IMAGE, show_default=True, help="With --workload: the nginx image (a mirror's, for air-gapped clusters)."
    )(command)
    command = click.option(
        "--workload", is_flag=True, help="Also run nginx 2 → 4 replicas in a throw-away namespace, check the spread, delete it."
    )(command)
    return command


class Session:
    """One CLI invocation: consoles, the run log, and turning errors into lines and exit codes."""

    def __init__(self, action: str, *, debug: bool, log_file: Path | None, output: str = "text") -> None:
        self.debug = debug
        self.output = output
        self.out = Console(highlight=False, soft_wrap=True)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)
        self.log_path = runlog.start(action, log_file, debug=debug)

    def reporter(self) -> SilentReporter:
        return SilentReporter() if self.output == "json" else LiveReporter(self.err)

    def fail(self, error: BaseException, *, printed: bool = False) -> int:
        """Print ``error`` as one red line per problem (and, with ``--output json``, as JSON on stdout
        unless ``printed`` says the outcome already went there); return the exit code."""
        if isinstance(error, ProvisionerError):
            log.error("%s", error)
            kind, lines, code = type(error).__name__, error.lines(), error.exit_code
            prefix = "error:"
        else:
            log.error("unexpected error\n%s", traceback.format_exc())
            kind, lines, code = "internal", [f"{error!r} (details in the log)"], 70
            prefix = "internal error:"
        if self.output == "json":
            if not printed:
                self.emit({"ok": False, "error": {"type": kind, "lines": lines}, "exit_code": code})
            for line in lines:
                click.echo(f"{prefix} {line}", err=True)
        else:
            for line in lines:
                self.err.print(f"[red]{prefix}[/] {report.escape(line)}")
        if self.debug:
            click.echo("".join(traceback.format_exception(error)), err=True)
        return code

    def emit(self, data: dict[str, Any]) -> None:
        """``data`` as plain JSON on stdout (never styled, whatever the terminal says), with the log."""
        data.setdefault("log", str(self.log_path))
        click.echo(json.dumps(data, indent=2))

    def finish(self, code: int) -> None:
        if self.output != "json":
            self.err.print(f"[dim]log: {self.log_path}[/]")
        log.info("exit code %d", code)
        runlog.stop()
        sys.exit(code)


def _run(action: str, ctx: click.Context, debug: bool | None, log_file: Path | None, output: str, body: Callable[[Session], int]) -> None:
    root = ctx.find_root().params
    debug = bool(debug if debug is not None else root.get("debug"))
    log_file = log_file or root.get("log_file")
    session = Session(action, debug=debug, log_file=log_file, output=output)
    try:
        code = body(session)
    except Exception as error:  # noqa: BLE001 - every failure ends as one line and an exit code
        code = session.fail(error)
    session.finish(code)


class Shell(click.Group):
    """The root group: with ``--output json`` a usage error is JSON on stdout too (same exit code).
    Plug-in commands are looked up in the installed metadata only when a name is not built in or
    the commands are listed (scanning the metadata costs a run's start-up ~50 ms)."""

    _plugins_added = False

    def _add_plugins(self) -> None:
        if not self._plugins_added:
            self._plugins_added = True
            add_plugin_commands(self)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is None:
            self._add_plugins()
            found = super().get_command(ctx, cmd_name)
        return found

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugins()
        return super().list_commands(ctx)

    def main(
        self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None, standalone_mode: bool = True, **extra: Any
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        if not standalone_mode or not json_requested(argv):
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            return super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as error:
            code, lines = error.exit_code, [error.format_message()]
        except click.Abort:
            code, lines = 1, ["aborted"]
        click.echo(json.dumps({"ok": False, "error": {"type": "UsageError", "lines": lines}, "exit_code": code}, indent=2))
        for line in lines:
            click.echo(f"error: {line}", err=True)
        sys.exit(code)


@click.group(cls=Shell, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="provisioner")
@click.option("--debug", is_flag=True, help="Show tracebacks and every log line on stderr.")
@click.option("--log-file", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write the run log here.")
def main(debug: bool, log_file: Path | None) -> None:
    """Turn machines reachable over SSH into a Kubernetes cluster (k3s or kubeadm), and keep it that way."""


def _drain_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option("--force", is_flag=True, help="Drain also deletes pods no controller manages (they are gone for good).")(command)
    command = click.option(
        "--delete-emptydir-data", is_flag=True, help="Drain also evicts pods with emptyDir volumes (their data is lost)."
    )(command)
    command = click.option(
        "--drain-timeout",
        type=click.FloatRange(1),
        default=300,
        show_default=True,
        help="Seconds a drain may wait for evictions (PodDisruptionBudgets) before giving up.",
    )(command)
    return command


def _rollout_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option("--no-drain", is_flag=True, help="Rolling upgrade: cordon but do not drain.")(command)
    command = click.option(
        "--max-unavailable",
        type=click.IntRange(1, 256),
        default=1,
        show_default=True,
        help="Rolling upgrade: agents upgraded at once (servers always one at a time).",
    )(command)
    return command


def _even_servers_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--allow-even-servers",
        is_flag=True,
        help="Allow an even number of servers (etcd tolerates no more failures than with one server fewer).",
    )(command)


@main.command()
@_inventory_option
@click.option("--concurrency", type=click.IntRange(1, 256), default=10, show_default=True, help="Hosts changed at once.")
@_connect_concurrency_option
@click.option(
    "--timeout", type=click.FloatRange(1), default=300, show_default=True, help="Seconds to wait for the API and for Ready nodes."
)
@_lock_option
@_rollout_options
@_drain_options
@_kubeconfig_options
@_even_servers_option
@click.option("--check", "run_check", is_flag=True, help="After the Ready wait, run the checks of `provisioner check`.")
@_check_options
@_output_option
@_common
@click.pass_context
def up(
    ctx: click.Context,
    inventory_path: Path,
    concurrency: int,
    connect_concurrency: int,
    timeout: float,
    wait_lock: float,
    max_unavailable: int,
    no_drain: bool,
    drain_timeout: float,
    delete_emptydir_data: bool,
    force: bool,
    merge: bool,
    set_current: bool,
    replace: bool,
    kubeconfig_out: Path | None,
    context_name: str | None,
    allow_even_servers: bool,
    run_check: bool,
    workload: bool,
    image: str,
    allow_cordoned: tuple[str, ...],
    output: str,
    debug: bool | None,
    log_file: Path | None,
) -> None:
    """Build the cluster, or converge it: only new or broken hosts are touched. A new version in
    the inventory is rolled out one host at a time (cordon, drain, upgrade, Ready, uncordon)."""

    def body(session: Session) -> int:
        inventory = load_inventory(inventory_path)
        check = CheckOptions(workload=workload, image=image, allow_cordoned=allow_cordoned) if run_check or workload else None
        options = Options(
            concurrency=concurrency,
            connect_concurrency=connect_concurrency,
            timeout=timeout,
            merge=merge,
            set_current=set_current,
            replace=replace,
            kubeconfig_out=kubeconfig_out,
            context_name=context_name,
            inventory_path=inventory_path,
            wait_lock=wait_lock,
            max_unavailable=max_unavailable,
            no_drain=no_drain,
            drain_timeout=drain_timeout,
            delete_emptydir_data=delete_emptydir_data,
            force=force,
            check=check,
            allow_even_servers=allow_even_servers,
        )
        outcome = actions.up(inventory, options, reporter=session.reporter())
        return _finish(session, outcome, report.up_text, report.up_json)

    _run("up", ctx, debug, log_file, output, body)


@main.command()
@_inventory_option
@_connect_concurrency_option
@_rollout_options
@_even_servers_option
@_output_option
@_common
@click.pass_context
def plan(
    ctx: click.Context,
    inventory_path: Path,
    connect_concurrency: int,
    max_unavailable: int,
    no_drain: bool,
    allow_even_servers: bool,
    output: str,
    debug: bool | None,
    log_file: Path | None,
) -> None:
    """Show what `up` would do on each host, changing nothing (with the order of a rolling upgrade)."""

    def body(session: Session) -> int:
        inventory = load_inventory(inventory_path)
        outcome = actions.plan(
            inventory,
            Options(
                connect_concurrency=connect_concurrency,
                max_unavailable=max_unavailable,
                no_drain=no_drain,
                allow_even_servers=allow_even_servers,
            ),
            reporter=session.reporter(),
        )
        return _finish(session, outcome, report.plan_text, report.plan_json)

    _run("plan", ctx, debug, log_file, output, body)


@main.command()
@_inventory_option
@_output_option
@_common
@click.pass_context
def status(ctx: click.Context, inventory_path: Path, output: str, debug: bool | None, log_file: Path | None) -> None:
    """Nodes with role, Ready, version and address. Exit 1 when an inventory node is not Ready."""

    def body(session: Session) -> int:
        inventory = load_inventory(inventory_path)
        outcome = actions.status(inventory, reporter=SilentReporter())
        return _finish(session, outcome, report.status_text, report.status_json, code_if_ok=0 if report.all_ready(outcome.summary) else 1)

    _run("status", ctx, debug, log_file, output, body)


@main.command()
@_inventory_option
@_kubeconfig_options
@_output_option
@_common
@click.pass_context
def kubeconfig(
    ctx: click.Context,
    inventory_path: Path,
    merge: bool,
    set_current: bool,
    replace: bool,
    kubeconfig_out: Path | None,
    context_name: str | None,
    output: str,
    debug: bool | None,
    log_file: Path | None,
) -> None:
    """Fetch the admin kubeconfig, point it at the API endpoint, write or merge it."""

    def body(session: Session) -> int:
        inventory = load_inventory(inventory_path)
        options = Options(merge=merge, set_current=set_current, replace=replace, kubeconfig_out=kubeconfig_out, context_name=context_name)
        outcome = actions.kubeconfig(inventory, options, reporter=SilentReporter())
        return _finish(session, outcome, report.kubeconfig_text, report.kubeconfig_json)

    _run("kubeconfig", ctx, debug, log_file, output, body)


@main.command()
@_inventory_option
@click.argument("nodes", nargs=-1, required=True)
@click.option("--dry-run", is_flag=True, help="Print the steps and change nothing.")
@_drain_options
@click.option("--unreachable-ok", is_flag=True, help="Exit 0 even when a removed host could not be uninstalled (unreachable).")
@click.option("--timeout", type=click.FloatRange(1), default=300, show_default=True, help="Seconds an uninstall may take.")
@_lock_option
@_output_option
@_common
@click.pass_context
def remove(
    ctx: click.Context,
    inventory_path: Path,
    nodes: tuple[str, ...],
    dry_run: bool,
    drain_timeout: float,
    delete_emptydir_data: bool,
    force: bool,
    unreachable_ok: bool,
    timeout: float,
    wait_lock: float,
    output: str,
    debug: bool | None,
    log_file: Path | None,
) -> None:
    """Remove NODE... from the cluster: cordon, drain (PodDisruptionBudgets honoured), delete the
    Node object, uninstall the host. Then drop it from the inventory."""

    def body(session: Session) -> int:
        inventory = load_inventory(inventory_path)
        options = Options(
            timeout=timeout,
            targets=nodes,
            drain_timeout=drain_timeout,
            delete_emptydir_data=delete_emptydir_data,
            force=force,
            unreachable_ok=unreachable_ok,
            inventory_path=inventory_path,
            wait_lock=wait_lock,
        )
        outcome = actions.remove(inventory, options, dry_run=dry_run, reporter=session.reporter())
        return _finish(session, outcome, report.remove_text, report.remove_json)

    _run("remove", ctx, debug, log_file, output, body)


@main.command()
@_inventory_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (for scripts).")
@click.option("--context", "context_name", default=None, help="The context name the kubeconfig entries have (default: the cluster name).")
@click.option(
    "--out",
    "kubeconfig_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The kubeconfig file `up` wrote (default ./<cluster>.kubeconfig); $KUBECONFIG / ~/.kube/config are cleaned too.",
)
@click.option("--timeout", type=click.FloatRange(1), default=300, show_default=True, help="Seconds an uninstall may take.")
@_lock_option
@_output_option
@_common
@click.pass_context
def reset(
    ctx: click.Context,
    inventory_path: Path,
    yes: bool,
    context_name: str | None,
    kubeconfig_out: Path | None,
    timeout: float,
    wait_lock: float,
    output: str,
    debug: bool | None,
    log_file: Path | None,
) -> None:
    """Tear the cluster down: uninstall every host (agents first) and take the cluster out of the kubeconfig."""

    def body(session: Session) -> int:
        inventory = load_inventory(inventory_path)
        if not yes:
            if not stdin_is_terminal():
                raise UsageError("reset deletes the cluster and all its data; stdin is not a terminal, so pass --yes")
            names = ", ".join(h.name for h in inventory.hosts)
            if not click.confirm(f"Delete cluster {inventory.cluster.name} and uninstall {names}?", err=True):
                raise UsageError("reset not confirmed; nothing was changed")
        options = Options(
            timeout=timeout, context_name=context_name, kubeconfig_out=kubeconfig_out, inventory_path=inventory_path, wait_lock=wait_lock
        )
        outcome = actions.reset(inventory, options, reporter=session.reporter())
        return _finish(session, outcome, report.reset_text, report.reset_json)

    _run("reset", ctx, debug, log_file, output, body)


def stdin_is_terminal() -> bool:
    """Whether a person can answer a question (reset's confirmation)."""
    return sys.stdin.isatty()


@main.command()
@_inventory_option
@_check_options
@click.option(
    "--kubeconfig",
    "kubeconfig_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The kubeconfig to test the API through (default ./<cluster>.kubeconfig, as `up` writes it).",
)
@click.option("--context", "context_name", default=None, help="Its context (default: the cluster name).")
@click.option("--concurrency", type=click.IntRange(1, 256), default=10, show_default=True, help="Hosts read at once.")
@click.option(
    "--timeout",
    type=click.FloatRange(1),
    default=300,
    show_default=True,
    help="Seconds the workload may take to have 4 available replicas.",
)
@_output_option
@_common
@click.pass_context
def check(
    ctx: click.Context,
    inventory_path: Path,
    workload: bool,
    image: str,
    allow_cordoned: tuple[str, ...],
    kubeconfig_path: Path | None,
    context_name: str | None,
    concurrency: int,
    timeout: float,
    output: str,
    debug: bool | None,
    log_file: Path | None,
) -> None:
    """Health of the running cluster: nodes, API, system pods, clocks, headroom. Exit 1 when a check fails."""

    def body(session: Session) -> int:
        inventory = load_inventory(inventory_path)
        options = Options(
            concurrency=concurrency,
            timeout=timeout,
            context_name=context_name,
            check=CheckOptions(workload=workload, image=image, allow_cordoned=allow_cordoned, kubeconfig=kubeconfig_path),
        )
        outcome = actions.check(inventory, options, reporter=session.reporter())
        return _finish(session, outcome, report.check_text, report.check_json)

    _run("check", ctx, debug, log_file, output, body)


def _finish(
    session: Session, outcome: actions.Outcome, text: Callable[..., None], as_json: Callable[..., dict[str, Any]], code_if_ok: int = 0
) -> int:
    """Render the outcome (summary even on failure), then the error; return the exit code."""
    error = outcome.error
    if session.output == "json":
        data = as_json(outcome.summary)
        data["ok"] = outcome.ok
        data["errors"] = error.lines() if error else []
        data["error"] = {"type": type(error).__name__, "lines": error.lines()} if error else None
        data["exit_code"] = error.exit_code if error else code_if_ok
        session.emit(data)
        return session.fail(error, printed=True) if error else code_if_ok
    text(session.out, outcome.summary, error)
    return session.fail(error) if error else code_if_ok


@main.command("vagrant-inventory")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("inventories/vagrant.yaml"),
    show_default=True,
    help="Inventory to write; the host keys go next to it (.known_hosts).",
)
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder of the Vagrantfile.",
)
@click.option(
    "--network",
    default=lambda: os.environ.get("NETWORK", "192.168.56"),
    show_default="$NETWORK or 192.168.56",
    help="The private network, as in the Vagrantfile (prefix like 192.168.56 or a CIDR).",
)
@click.option("--name", "cluster_name", default="vagrant", show_default=True, help="Cluster name.")
@click.option("--distribution", type=click.Choice(DISTRIBUTIONS), default="k3s", show_default=True)
@click.option("--version", "version", default=None, help='k3s version (default: channel stable) or kubeadm minor/version (default "1.31").')
@click.option("--server", "servers", multiple=True, help="Machines that are servers (default: those named controller*).")
@_output_option
@_common
@click.pass_context
def vagrant_inventory(
    ctx: click.Context,
    out: Path,
    folder: Path,
    network: str,
    cluster_name: str,
    distribution: str,
    version: str | None,
    servers: tuple[str, ...],
    output: str,
    debug: bool | None,
    log_file: Path | None,
) -> None:
    """Write an inventory for the running Vagrant lab (private addresses, interfaces, host keys)."""

    def body(session: Session) -> int:
        from provisioner import vagrant

        wanted = version or CLUSTER_MODELS[distribution].suggested_version
        inventory, known_hosts, machines = vagrant.write_inventory(
            folder,
            out,
            network=network,
            cluster_name=cluster_name,
            distribution=distribution,
            version=wanted,
            servers=servers,
        )
        if session.output == "json":
            session.emit(
                {
                    "ok": True,
                    "inventory": str(inventory),
                    "known_hosts": str(known_hosts),
                    "machines": [m.name for m in machines],
                    "error": None,
                    "exit_code": 0,
                }
            )
            return 0
        session.out.print(f"inventory: {inventory} ({len(machines)} machines)\nknown_hosts: {known_hosts}")
        session.out.print(f"next: provisioner up -i {inventory}")
        return 0

    _run("vagrant-inventory", ctx, debug, log_file, output, body)


# --- import / export: other tools' inventories ----------------------------------------------


def _out_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option("--force", is_flag=True, help="Overwrite --out if it exists.")(command)
    command = click.option(
        "--out",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Write the inventory here (atomically) instead of to stdout.",
    )(command)
    return command


def _emit(session: Session, text: str, notes: list[Any], out: Path | None, force: bool) -> int:
    """The inventory to ``out`` or stdout; each note as one warning line on stderr (json: one object)."""
    from provisioner.importers.output import write_inventory

    if out is not None:
        write_inventory(out, text, force=force)
    if session.output == "json":
        session.out.print_json(
            json.dumps(
                {
                    "ok": True,
                    "out": str(out) if out else None,
                    "inventory": None if out else text,
                    "warnings": [str(n) for n in notes],
                }
            )
        )
        return 0
    for note in notes:
        session.err.print(f"[yellow]warning:[/] {report.escape(str(note))}")
    if out is None:
        click.echo(text, nl=False)
    else:
        session.err.print(f"wrote {report.escape(str(out))} ({len(notes)} warning(s)); next: provisioner plan -i {report.escape(str(out))}")
    return 0


@main.group("import")
def import_() -> None:
    """Write a provisioner inventory from a k3s-ansible or kubespray inventory."""


@import_.command("k3s-ansible")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", "cluster_name", default=None, help="Cluster name (default: cluster_context, else k3s-ansible).")
@_out_options
@_output_option
@_common
@click.pass_context
def import_k3s_ansible(
    ctx: click.Context,
    file: Path,
    cluster_name: str | None,
    out: Path | None,
    force: bool,
    output: str,
    debug: bool | None,
    log_file: Path | None,
) -> None:
    """FILE: a k3s-ansible inventory (YAML, INI or ansible-inventory --list JSON)."""

    def body(session: Session) -> int:
        from provisioner.importers.k3s_ansible import import_k3s_ansible as convert

        result = convert(file, name=cluster_name)
        return _emit(session, result.text, result.notes, out, force)

    _run("import", ctx, debug, log_file, output, body)


@import_.command("kubespray")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", "cluster_name", default=None, help="Cluster name (default: the inventory's folder name).")
@click.option("--version", "version", default=None, help="Kubernetes version when kube_version is not set, e.g. 1.31.4.")
@_out_options
@_output_option
@_common
@click.pass_context
def import_kubespray(
    ctx: click.Context,
    file: Path,
    cluster_name: str | None,
    version: str | None,
    out: Path | None,
    force: bool,
    output: str,
    debug: bool | None,
    log_file: Path | None,
) -> None:
    """FILE: a kubespray inventory (INI, YAML or ansible-inventory --list JSON); group_vars/ next to it are read."""

    def body(session: Session) -> int:
        from provisioner.importers.kubespray import import_kubespray as convert

        result = convert(file, name=cluster_name, version=version)
        return _emit(session, result.text, result.notes, out, force)

    _run("import", ctx, debug, log_file, output, body)


@main.group("export")
def export() -> None:
    """Write the inventory back in another tool's format (no lock-in)."""


@export.command("ansible")
@_inventory_option
@_out_options
@_output_option
@_common
@click.pass_context
def export_ansible(
    ctx: click.Context, inventory_path: Path, out: Path | None, force: bool, output: str, debug: bool | None, log_file: Path | None
) -> None:
    """A k3s-ansible inventory (YAML) for a k3s inventory."""

    def body(session: Session) -> int:
        from provisioner.importers.export import export_k3s_ansible

        text, notes = export_k3s_ansible(load_inventory(inventory_path, check_files=False), str(inventory_path))
        return _emit(session, text, notes, out, force)

    _run("export", ctx, debug, log_file, output, body)


def add_plugin_commands(group: click.Group, entry_points: Iterable[EntryPoint] | None = None) -> None:
    """Add one lazily loaded group per entry point of ``PLUGIN_GROUP`` (built-in names win).

    The product package names no plug-in: the test lab registers ``lab`` from its own package,
    so ``provisioner lab ...`` works when it is installed and nothing imports it otherwise."""
    from importlib import metadata

    found = entry_points if entry_points is not None else metadata.entry_points(group=PLUGIN_GROUP)
    for ep in sorted(found, key=lambda e: e.name):
        if ep.name in group.commands:
            continue
        group.add_command(LazyGroup(ep.name, import_path=ep.value, help=f"Commands from {ep.module} (a plug-in, loaded when used)."))
