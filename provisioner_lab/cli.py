"""TEST DOUBLE: `provisioner lab up|down|status` (not product code).

Registered as the ``lab`` entry point of group ``provisioner.commands`` (pyproject.toml); the
product CLI finds it in the installed metadata and imports it only when someone types
``provisioner lab``. Product code never imports provisioner_lab.
"""

from __future__ import annotations

from pathlib import Path

import click

from provisioner_lab.lab import BOOT_CONCURRENCY, DISTRIBUTIONS, USERS, Lab, status_json
from provisioner_lab.system import LabError


def _echo(msg: str) -> None:
    click.echo(msg, err=True)


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def _make_lab(name: str) -> Lab:
    try:
        return Lab(name, echo=_echo)
    except ValueError as exc:
        raise _fail(exc) from exc


@click.group("lab")
def lab() -> None:
    """On-machine test lab: Debian hosts as systemd-nspawn containers on br-lab (testing only)."""


@lab.command("up")
@click.option("--servers", type=click.IntRange(min=0), default=1, show_default=True, help="Server hosts.")
@click.option("--agents", type=click.IntRange(min=0), default=2, show_default=True, help="Agent hosts.")
@click.option("--name", default="lab", show_default=True, help="Lab name (prefix of the host names).")
@click.option(
    "--inventory",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Inventory to write [default: ./<name>.yaml]; known_hosts and ssh_config go next to it.",
)
@click.option(
    "--user",
    type=click.Choice(USERS),
    default="root",
    show_default=True,
    help="SSH user written into the inventory (lab: sudo with a password).",
)
@click.option(
    "--distribution",
    type=click.Choice(DISTRIBUTIONS),
    default=None,
    help="Distribution the inventory asks for: k3s (stand-in, air-gap files) or kubeadm "
    "(stand-in packages from the lab's local apt repository) [default: the lab's "
    "own; k3s for a new lab].",
)
@click.option("--boot-concurrency", type=click.IntRange(min=1), default=BOOT_CONCURRENCY, show_default=True, help="Hosts booting at once.")
@click.option(
    "--raise-limits",
    is_flag=True,
    help="Raise fs.inotify.max_user_instances/max_user_watches when too low for the hosts (otherwise lab up refuses and names the sysctl).",
)
def up(
    servers: int,
    agents: int,
    name: str,
    inventory: Path | None,
    user: str,
    distribution: str | None,
    boot_concurrency: int,
    raise_limits: bool,
) -> None:
    """Boot (or grow) a lab and write its inventory, known_hosts and ssh_config."""
    lab_ = _make_lab(name)
    try:
        hosts = lab_.up(
            servers=servers,
            agents=agents,
            inventory=inventory,
            user=user,
            distribution=distribution,
            boot_concurrency=boot_concurrency,
            raise_limits=raise_limits,
        )
    except LabError as exc:
        raise _fail(exc) from exc
    for h in hosts:
        how = f"booted in {h.boot_seconds:.1f} s ({h.system_state})" if h.started else "already running"
        click.echo(f"{h.name:<20} {h.role:<7} {h.address:<15} {how}")
    st = lab_.state()
    assert st is not None
    click.echo(f"inventory:   {st.inventory}")
    click.echo(f"known_hosts: {st.known_hosts}")
    click.echo(f"ssh:         ssh -F {st.ssh_config} {hosts[0].name if hosts else ''}".rstrip())
    if user != "root":
        click.echo(f'sudo:        export PROVISIONER_SUDO_PASSWORD="$(cat {lab_.sudo_password_file})"')
    if st.package_repo:
        click.echo(f"packages:    {st.package_repo} (stand-in kubelet/kubeadm/kubectl)")


@lab.command("down")
@click.option("--name", default="lab", show_default=True, help="Lab to remove.")
def down(name: str) -> None:
    """Stop and remove a lab's hosts (the cached base image stays)."""
    lab_ = _make_lab(name)
    try:
        removed = lab_.down()
    except LabError as exc:
        raise _fail(exc) from exc
    click.echo(f"lab {name} removed" if removed else f"lab {name} is not there; nothing to do")


@lab.command("status")
@click.option("--name", default=None, help="Only this lab [default: every lab].")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def status(name: str | None, output: str) -> None:
    """Hosts of every lab (or one): role, address, running, reachable over ssh."""
    try:
        labs = [_make_lab(name)] if name else Lab.all(echo=_echo)
        labs = [lab_ for lab_ in labs if lab_.exists()]
        if output == "json":
            click.echo(status_json(labs))
            return
        if not labs:
            click.echo(f"lab {name} is not there" if name else "no lab is up")
            return
        for lab_ in labs:
            click.echo(f"lab {lab_.name} ({lab_.dir})")
            for h in lab_.status():
                run = "running" if h["running"] else "stopped"
                ssh = {True: "ssh ok", False: "ssh unreachable", None: "-"}[h["ssh"]]  # type: ignore[index]
                click.echo(f"  {h['name']:<20} {h['role']:<7} {h['address']:<15} {run:<8} {ssh}")
    except (LabError, PermissionError) as exc:
        raise _fail(exc) from exc
