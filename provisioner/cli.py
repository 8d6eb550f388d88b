"""Command line: turns flags into options, calls one action of the core, renders its outcome."""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from provisioner import __version__, actions, report, runlog
from provisioner.errors import ProvisionerError
from provisioner.inventory import CLUSTER_MODELS, DISTRIBUTIONS, load_inventory
from provisioner.phases import Options
from provisioner.progress import LiveReporter, SilentReporter

log = logging.getLogger("provisioner.cli")


class LazyGroup(click.Group):
    """A group whose body lives in another module, imported only when the command is used.

    The lab (``provisioner.lab``) is a test double and must never be imported by product code:
    it is loaded here only when someone types ``provisioner lab ...``.
    """

    def __init__(self, *args: Any, import_path: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._import_path = import_path

    def _real(self) -> click.Group:
        module_name, attr = self._import_path.split(":")
        return getattr(importlib.import_module(module_name), attr)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return self._real().list_commands(ctx)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return self._real().get_command(ctx, name)


def _common(command: Callable[..., Any]) -> Callable[..., Any]:
    """Options every command takes (they may also be given before the command name)."""
    command = click.option("--debug", is_flag=True, default=None, help="Show tracebacks and every log line on stderr.")(command)
    command = click.option(
        "--log-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
        help="Write the run log here instead of the state directory.",
    )(command)
    return command


def _inventory_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "-i", "--inventory", "inventory_path", required=True,
        type=click.Path(dir_okay=False, path_type=Path), help="Inventory file (YAML).",
    )(command)


def _output_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--output", "-o", type=click.Choice(["text", "json"]), default="text", show_default=True,
        help="text for people, json for scripts.",
    )(command)


def _kubeconfig_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option("--context", "context_name", default=None, help="Context name (default: the cluster name).")(command)
    command = click.option(
        "--out", "kubeconfig_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
        help="Where to write the kubeconfig (default ./<cluster>.kubeconfig, or with --merge $KUBECONFIG / ~/.kube/config).",
    )(command)
    command = click.option("--set-current", is_flag=True, help="With --merge: make the cluster's context the current one.")(command)
    command = click.option("--merge", is_flag=True, help="Merge into an existing kubeconfig (backed up first) instead of writing a new file.")(command)
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

    def fail(self, error: BaseException) -> int:
        """Print ``error`` as one red line per problem; return the exit code."""
        if isinstance(error, ProvisionerError):
            log.error("%s", error)
            for line in error.lines():
                self.err.print(f"[red]error:[/] {report.escape(line)}")
            code = error.exit_code
        else:
            log.error("unexpected error\n%s", traceback.format_exc())
            self.err.print(f"[red]internal error:[/] {report.escape(repr(error))} (details in the log)")
            code = 70
        if self.debug:
            self.err.print(report.escape("".join(traceback.format_exception(error))))
        return code

    def finish(self, code: int) -> None:
        if self.output != "json":
            self.err.print(f"[dim]log: {self.log_path}[/]")
        log.info("exit code %d", code)
        runlog.stop()
        sys.exit(code)


def _run(action: str, ctx: click.Context, debug: bool | None, log_file: Path | None, output: str,
         body: Callable[[Session], int]) -> None:
    root = ctx.find_root().params
    debug = bool(debug if debug is not None else root.get("debug"))
    log_file = log_file or root.get("log_file")
    session = Session(action, debug=debug, log_file=log_file, output=output)
    try:
        code = body(session)
    except Exception as error:  # noqa: BLE001 - every failure ends as one line and an exit code
        code = session.fail(error)
    session.finish(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="provisioner")
@click.option("--debug", is_flag=True, help="Show tracebacks and every log line on stderr.")
@click.option("--log-file", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write the run log here.")
def main(debug: bool, log_file: Path | None) -> None:
    """Turn machines reachable over SSH into a Kubernetes cluster (k3s or kubeadm), and keep it that way."""


@main.command()
@_inventory_option
@click.option("--concurrency", type=click.IntRange(1, 256), default=10, show_default=True, help="Hosts worked on at once.")
@click.option("--timeout", type=click.FloatRange(1), default=300, show_default=True, help="Seconds to wait for the API and for Ready nodes.")
@_kubeconfig_options
@_output_option
@_common
@click.pass_context
def up(ctx: click.Context, inventory_path: Path, concurrency: int, timeout: float, merge: bool, set_current: bool,
       kubeconfig_out: Path | None, context_name: str | None, output: str, debug: bool | None, log_file: Path | None) -> None:
    """Build the cluster, or converge it: only new or broken hosts are touched."""

    def body(session: Session) -> int:
        inventory = load_inventory(inventory_path)
        options = Options(concurrency=concurrency, timeout=timeout, merge=merge, set_current=set_current,
                          kubeconfig_out=kubeconfig_out, context_name=context_name)
        outcome = actions.up(inventory, options, reporter=session.reporter())
        return _finish(session, outcome, report.up_text, report.up_json)

    _run("up", ctx, debug, log_file, output, body)


@main.command()
@_inventory_option
@_output_option
@_common
@click.pass_context
def plan(ctx: click.Context, inventory_path: Path, output: str, debug: bool | None, log_file: Path | None) -> None:
    """Show what `up` would do on each host, changing nothing."""

    def body(session: Session) -> int:
        inventory = load_inventory(inventory_path)
        outcome = actions.plan(inventory, reporter=session.reporter())
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
        code = _finish(session, outcome, report.status_text, report.status_json)
        if code == 0 and not report.all_ready(outcome.context):
            code = 1
        return code

    _run("status", ctx, debug, log_file, output, body)


@main.command()
@_inventory_option
@_kubeconfig_options
@_output_option
@_common
@click.pass_context
def kubeconfig(ctx: click.Context, inventory_path: Path, merge: bool, set_current: bool, kubeconfig_out: Path | None,
               context_name: str | None, output: str, debug: bool | None, log_file: Path | None) -> None:
    """Fetch the admin kubeconfig, point it at the API endpoint, write or merge it."""

    def body(session: Session) -> int:
        inventory = load_inventory(inventory_path)
        options = Options(merge=merge, set_current=set_current, kubeconfig_out=kubeconfig_out, context_name=context_name)
        outcome = actions.kubeconfig(inventory, options, reporter=SilentReporter())
        return _finish(session, outcome, report.kubeconfig_text, report.kubeconfig_json)

    _run("kubeconfig", ctx, debug, log_file, output, body)


def _finish(session: Session, outcome: actions.Outcome, text: Callable[..., None], as_json: Callable[..., dict[str, Any]]) -> int:
    """Render the outcome (summary even on failure), then the error; return the exit code."""
    if session.output == "json":
        data = as_json(outcome.context)
        data["ok"] = outcome.ok
        data["errors"] = outcome.error.lines() if outcome.error else []
        data["log"] = str(session.log_path)
        session.out.print_json(json.dumps(data))
        return outcome.error.exit_code if outcome.error else 0
    text(session.out, outcome.context, outcome.error)
    return session.fail(outcome.error) if outcome.error else 0


@main.command("vagrant-inventory")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("inventories/vagrant.yaml"),
              show_default=True, help="Inventory to write; the host keys go next to it (.known_hosts).")
@click.option("--dir", "folder", type=click.Path(file_okay=False, exists=True, path_type=Path), default=Path("."),
              show_default=True, help="Folder of the Vagrantfile.")
@click.option("--network", default=lambda: os.environ.get("NETWORK", "192.168.56"), show_default="$NETWORK or 192.168.56",
              help="The private network, as in the Vagrantfile (prefix like 192.168.56 or a CIDR).")
@click.option("--name", "cluster_name", default="vagrant", show_default=True, help="Cluster name.")
@click.option("--distribution", type=click.Choice(DISTRIBUTIONS), default="k3s", show_default=True)
@click.option("--version", "version", default=None, help='k3s version (default: channel stable) or kubeadm minor/version (default "1.31").')
@click.option("--server", "servers", multiple=True, help="Machines that are servers (default: those named controller*).")
@_common
@click.pass_context
def vagrant_inventory(ctx: click.Context, out: Path, folder: Path, network: str, cluster_name: str, distribution: str,
                      version: str | None, servers: tuple[str, ...], debug: bool | None, log_file: Path | None) -> None:
    """Write an inventory for the running Vagrant lab (private addresses, interfaces, host keys)."""

    def body(session: Session) -> int:
        from provisioner import vagrant

        wanted = version or CLUSTER_MODELS[distribution].suggested_version
        inventory, known_hosts, machines = vagrant.write_inventory(
            folder, out, network=network, cluster_name=cluster_name, distribution=distribution,
            version=wanted, servers=servers,
        )
        session.out.print(f"inventory: {inventory} ({len(machines)} machines)\nknown_hosts: {known_hosts}")
        session.out.print(f"next: provisioner up -i {inventory}")
        return 0

    _run("vagrant-inventory", ctx, debug, log_file, "text", body)


main.add_command(
    LazyGroup(
        "lab",
        import_path="provisioner.lab.cli:lab",
        help="On-machine test lab: systemd-nspawn hosts and a k3s stand-in (testing only).",
    )
)
