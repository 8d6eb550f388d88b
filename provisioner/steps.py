"""The plan as data: what a run will do to each host, step by step, before anything changes.

A distribution turns facts and the cluster state into a ``HostPlan`` per host and a
``ClusterPlan``; ``plan`` prints them and ``up`` hands exactly them to ``provisioner.executor``.

A ``Step`` says what it changes (``name``), why (``reason``, from the facts) and how: a tuple of
operations, run in order on one host:

- ``Upload``: a file written as root over SFTP (content, or a local file read at execution);
- ``Command``: shell text run with sudo, with a timeout, an optional clean-up command run when it
  fails, the systemd unit whose journal explains a failure, and an optional check of its output
  that turns a failure into a typed error (kubeadm's preflight ``[ERROR`` lines);
- ``Wait``: a command polled until it prints what is expected, bounded in time;
- ``ReadValue``: a command whose output gives named values (a join token, a CA hash, the
  installed kubeadm version) that later steps use through ``Placeholder`` s.

Secrets appear in step data only as placeholders (``<join token of the first server>``); the
executor fills them in uploads at execution time from the values produced so far. Commands never
carry secrets: what a host needs secretly reaches it in a 0600 file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from provisioner.errors import ProvisionerError

if TYPE_CHECKING:
    from provisioner.inventory import Host


class Action(str, Enum):
    """What a run does to one host."""

    INSTALL = "install"  # the first server of a new cluster
    JOIN = "join"  # a host that is not part of the cluster yet
    UPGRADE = "upgrade"  # installed, but another version (or binary) is wanted
    RECONFIGURE = "reconfigure"  # installed, but its configuration differs
    RESTART = "restart"  # installed and configured, but its service is down or its node not Ready
    NOTHING = "nothing"

    @property
    def changes(self) -> bool:
        return self is not Action.NOTHING


@dataclass(frozen=True)
class Placeholder:
    """A value known only during the run (a join token, a CA hash), written as ``text`` in the
    plan and replaced by the executor when it uploads a file."""

    key: str
    text: str
    secret: bool = True

    def __str__(self) -> str:
        return self.text


# --- operations -----------------------------------------------------------------------------

#: Turns the output of a failed command into a typed error, or None when it has nothing to say.
OutputCheck = Callable[[str, str], "ProvisionerError | None"]  # (host name, redacted output)


@dataclass(frozen=True)
class Upload:
    """Write a file owned by root with ``mode`` (atomic). ``content`` may hold the ``fills``'
    placeholder texts; ``local_file`` (air-gap artefacts) is read when the step runs."""

    path: str
    content: str | bytes = ""
    mode: int = 0o644
    fills: tuple[Placeholder, ...] = ()
    local_file: Path | None = None
    #: Shown in full by ``plan`` (rendered configs); other files only by path.
    show: bool = False

    def describe(self) -> dict[str, object]:
        source = str(self.local_file) if self.local_file else f"{len(self.content)} bytes"
        return {"upload": self.path, "mode": f"{self.mode:04o}", "from": source, "placeholders": [p.text for p in self.fills]}


@dataclass(frozen=True)
class Command:
    """Run ``text`` as root; fail the step when it exits non-zero or runs past ``timeout``."""

    text: str
    timeout: float
    #: Run when the command fails after doing part of its work, so that a rerun starts clean.
    cleanup: str | None = None
    #: Its journal (last lines, secrets masked) explains a failure.
    journal_unit: str | None = None
    #: Extra words for the error line (where to look).
    hint: str = ""
    check_output: OutputCheck | None = field(default=None, compare=False)
    #: Disk space it takes, estimated: (directory, bytes) — packages, a downloaded binary.
    #: Checked against the host's free space before anything changes (``provisioner.space``).
    space: tuple[tuple[str, int], ...] = ()

    def describe(self) -> dict[str, object]:
        out: dict[str, object] = {"run": self.text, "timeout": self.timeout}
        if self.cleanup:
            out["on_failure"] = self.cleanup
        return out


@dataclass(frozen=True)
class Wait:
    """Poll ``command`` until its output is ``expect``; after ``timeout`` seconds the step fails
    with "<what> did not become ready within …" and the last line of ``journal_unit``."""

    command: str
    expect: str
    timeout: float
    what: str
    interval: float = 2.0
    journal_unit: str | None = None

    def describe(self) -> dict[str, object]:
        return {"wait": self.command, "until": self.expect, "timeout": self.timeout}


#: Turns a command's output into the values of ``ReadValue.produces`` (in order), or None when
#: the output does not hold them (yet).
ValueParser = Callable[[str], "tuple[str, ...] | None"]


@dataclass(frozen=True)
class ReadValue:
    """Run ``command`` and keep values from its output for later steps. With ``retry_for`` the
    command is repeated until the parser finds the values (a file that appears after a start)."""

    command: str
    produces: tuple[Placeholder, ...]
    parse: ValueParser = field(compare=False)
    failure: str
    timeout: float = 60.0
    retry_for: float = 0.0
    interval: float = 1.0

    def describe(self) -> dict[str, object]:
        return {"read": self.command, "gives": [p.text for p in self.produces]}


Operation = Upload | Command | Wait | ReadValue


def describe(op: Operation) -> dict[str, object]:
    return op.describe()


# --- steps and plans --------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One change on one host: what it changes, why, and the operations that change it."""

    name: str
    reason: str
    operations: tuple[Operation, ...] = ()

    @property
    def placeholders_used(self) -> frozenset[Placeholder]:
        return frozenset(p for op in self.operations if isinstance(op, Upload) for p in op.fills)

    @property
    def placeholders_produced(self) -> frozenset[Placeholder]:
        return frozenset(p for op in self.operations if isinstance(op, ReadValue) for p in op.produces)

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "reason": self.reason, "operations": [op.describe() for op in self.operations]}


@dataclass(frozen=True)
class HostPlan:
    """The decision for one host, why, and the steps that carry it out (in order)."""

    host: Host
    action: Action
    init_server: Host
    reasons: tuple[str, ...] = ()
    steps: tuple[Step, ...] = ()

    @property
    def needs(self) -> frozenset[Placeholder]:
        """Values this plan needs that it does not produce itself (e.g. the join token)."""
        used = frozenset().union(*(s.placeholders_used for s in self.steps))
        made = frozenset().union(*(s.placeholders_produced for s in self.steps))
        return used - made

    @property
    def preview(self) -> str:
        """The rendered configuration files ``plan`` shows in full (placeholders, no secrets)."""
        parts = [op.content for s in self.steps for op in s.operations if isinstance(op, Upload) and op.show]
        return "".join(p if isinstance(p, str) else "" for p in parts)

    def as_dict(self) -> dict[str, object]:
        return {
            "host": self.host.name,
            "address": self.host.address,
            "role": self.host.role,
            "action": self.action.value,
            "reasons": list(self.reasons),
            "steps": [s.name for s in self.steps],
            "plan": [s.as_dict() for s in self.steps],
            "config": self.preview,
        }


@dataclass(frozen=True)
class ClusterPlan:
    """Cluster-wide steps, all run on the first server, in this order: add-ons once its API
    answers, then reading the join secret, then deleting stale Node objects of joining hosts."""

    addons: tuple[Step, ...] = ()
    join_secret: Step | None = None
    stale_nodes: tuple[Step, ...] = ()
    #: Said when the stale-node steps run (e.g. a Ready node at another address is deleted).
    warnings: tuple[str, ...] = ()

    @property
    def steps(self) -> tuple[Step, ...]:
        return self.addons + ((self.join_secret,) if self.join_secret else ()) + self.stale_nodes

    def as_list(self) -> list[dict[str, object]]:
        return [s.as_dict() for s in self.steps]


@dataclass(frozen=True)
class RolloutHost:
    """One host of a rolling upgrade: the API steps (run on the first server) around its own
    upgrade steps (its ``HostPlan``): cordon, drain (None with ``--no-drain``), then after the
    upgrade a wait until its node is Ready on the new version, and uncordon."""

    host: Host
    cordon: Step
    drain: Step | None
    wait: Step
    uncordon: Step

    def as_dict(self) -> dict[str, object]:
        return {
            "host": self.host.name,
            "role": self.host.role,
            "before": [s.as_dict() for s in (self.cordon, self.drain) if s is not None],
            "after": [self.wait.as_dict(), self.uncordon.as_dict()],
        }


@dataclass(frozen=True)
class RunPlan:
    """Everything ``up`` will do: one plan per host and the cluster-wide steps."""

    hosts: dict[str, HostPlan]
    cluster: ClusterPlan
    #: Hosts upgraded one wave after the other (each wave: one server, or a batch of agents).
    rollout: tuple[tuple[RolloutHost, ...], ...] = ()

    @property
    def rolled(self) -> frozenset[str]:
        """Hosts whose steps the rolling upgrade runs (the join phases leave them alone)."""
        return frozenset(h.host.name for wave in self.rollout for h in wave)
