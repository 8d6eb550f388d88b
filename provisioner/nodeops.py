"""Steps that act on a Node through the API (cordon, drain, uncordon, delete, wait for a version).

They run ``kubectl`` as admin on a server over SSH (the real client, as for the Ready wait), so
the drain goes through the eviction API and honours PodDisruptionBudgets. Each function returns
a planned ``Step``; ``remove`` and the rolling upgrade put them in their plans, and the phases
run them with the one executor.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from provisioner.distros.base import Distribution
from provisioner.steps import Command, Step, Wait

#: One ``kubectl drain`` attempt lasts at most this long; between attempts the blocking PDBs are
#: read and shown, until ``--drain-timeout`` is over.
DRAIN_ATTEMPT_SECONDS = 30.0


@dataclass(frozen=True)
class DrainOptions:
    """What ``kubectl drain`` may do (the flags of ``remove`` and ``up``)."""

    timeout: float = 300.0
    delete_emptydir_data: bool = False
    force: bool = False


def cordon(dist: Distribution, name: str, reason: str) -> Step:
    """Marks the node unschedulable (already done: kubectl says "already cordoned", exit 0)."""
    return Step(f"cordon {name}", reason, (Command(dist.kubectl(f"cordon {shlex.quote(name)}"), 60),))


def uncordon(dist: Distribution, name: str, reason: str) -> Step:
    """Makes the node schedulable again (already done: exit 0 as well)."""
    return Step(f"uncordon {name}", reason, (Command(dist.kubectl(f"uncordon {shlex.quote(name)}"), 60),))


def drain(dist: Distribution, name: str, options: DrainOptions, reason: str) -> Step:
    """Evicts the node's pods (DaemonSet pods stay; emptyDir data and bare pods only when the
    flags allow). One attempt; the drain phase repeats it until ``options.timeout``."""
    attempt = min(DRAIN_ATTEMPT_SECONDS, options.timeout)
    flags = ["--ignore-daemonsets"]
    if options.delete_emptydir_data:
        flags.append("--delete-emptydir-data")
    if options.force:
        flags.append("--force")
    flags.append(f"--timeout={int(attempt)}s")
    text = dist.kubectl(f"drain {shlex.quote(name)} {' '.join(flags)}")
    return Step(f"drain {name}", reason, (Command(text, attempt + 30),))


def delete_node(dist: Distribution, name: str, reason: str) -> Step:
    return Step(f"delete the Node object {name}", reason, (Command(dist.delete_node_command(name), 90),))


def budgets_command(dist: Distribution) -> str:
    return dist.kubectl("get pdb -A -o json")


def pods_on_node_command(dist: Distribution, name: str) -> str:
    return dist.kubectl(f"get pods -A --field-selector spec.nodeName={shlex.quote(name)} -o json")


def wait_ready_on_version(dist: Distribution, name: str, version: str | None, timeout: float) -> Step:
    """Polls the node until it is Ready and its kubelet reports ``version`` (a version, or a
    prefix ending in "." such as "v1.32." for any patch release; None: any version) — a host
    counts as upgraded when its node says so, not when a file on disk is new."""
    jsonpath = '{.status.nodeInfo.kubeletVersion} {.status.conditions[?(@.type=="Ready")].status}'
    query = dist.kubectl(f"get node {shlex.quote(name)} -o jsonpath={shlex.quote(jsonpath)}")
    pattern = "*" if not version else shlex.quote(version) + ("*" if version.endswith(".") else "")
    command = f'v=$({query} 2>/dev/null); case "$v" in {pattern}" True") echo ready;; *) echo "$v";; esac'
    on = f" on {version}{'x' if version.endswith('.') else ''}" if version else ""
    what = f"node {name} Ready{on}"
    return Step(
        f"wait until {name} is Ready{on}", "the next host is touched only once this one is back", (Wait(command, "ready", timeout, what),)
    )
