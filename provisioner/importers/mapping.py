"""What both importers share: the native inventory under construction, each value with its source;
the resolved variables of every host with a record of which ones were read; Ansible's connection
variables mapped to ``ssh``; node names made valid; the final check that the result loads.
"""

from __future__ import annotations

import re
import shlex
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from provisioner.errors import InventoryError, Problem
from provisioner.importers.ansible import AnsibleInventory, Note, TaggedText, Var
from provisioner.inventory import is_address, is_ip, parse_inventory

SUDO_PASSWORD_ENV = "PROVISIONER_SUDO_PASSWORD"
_NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_CLUSTER_NAME = re.compile(r"^[a-z0-9]([-a-z0-9_.]{0,61}[a-z0-9])?$")
_ENV_LOOKUP = re.compile(r"""^\{\{\s*lookup\(\s*['"]env['"]\s*,\s*['"]([A-Za-z_][A-Za-z0-9_]*)['"]\s*\)\s*\}\}$""")

# Variables understood but with nothing to carry over, and why (listed on stderr like the rest).
NOT_NEEDED = {
    "ansible_python_interpreter": "not needed: the provisioner runs no Python on the hosts",
    "ansible_pipelining": "not needed: the provisioner does not run Ansible modules",
    "ansible_ssh_pipelining": "not needed: the provisioner does not run Ansible modules",
}


@dataclass(frozen=True)
class Sourced:
    """A value for the native inventory and the comment saying where it came from."""

    value: Any
    source: str | None = None


def sourced(value: Any, *vars_: Var | None) -> Sourced:
    """``value`` with a comment naming the variables (and their places) it was made from."""
    used = [v for v in vars_ if v is not None]
    if not used:
        return Sourced(value)
    return Sourced(value, "from " + "; ".join(f"{v.origin.place}: {v.name}" for v in used))


@dataclass
class DraftHost:
    name: Sourced
    address: Sourced
    role: Sourced
    node_ip: Sourced | None = None
    flannel_iface: Sourced | None = None
    ssh: dict[str, Sourced] = field(default_factory=dict)


@dataclass
class Draft:
    """The native inventory being built; ``render.render`` turns it into YAML text."""

    tool: str
    source: str
    cluster: dict[str, Sourced] = field(default_factory=dict)
    ssh: dict[str, Sourced] = field(default_factory=dict)
    hosts: list[DraftHost] = field(default_factory=list)


@dataclass(frozen=True)
class ImportResult:
    """The native inventory text and the notes for stderr (one line each)."""

    text: str
    notes: list[Note]


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


class Resolved:
    """Every imported host's variables after precedence, and which variable names were read.

    A mapping reads variables through ``get``/``cluster``; whatever nobody read is listed by
    ``leftovers``, so no variable is ever dropped without a line on stderr.
    """

    def __init__(self, inventory: AnsibleInventory, hosts: list[str], notes: list[Note]) -> None:
        self.inventory = inventory
        self.hosts = hosts
        self.vars = {host: inventory.resolve(host) for host in hosts}
        self.notes = notes
        self.used: set[str] = set()
        self._noted: set[tuple[str, str, str]] = set()

    def note(self, var: Var, message: str) -> None:
        """One line for ``var``'s place, said once however many hosts share it."""
        key = (var.name, str(var.origin), message)
        if key not in self._noted:
            self._noted.add(key)
            self.notes.append(Note(var.name, str(var.origin), message))

    def get(self, host: str, *names: str) -> Var | None:
        """The first of ``names`` set for ``host``; all of them count as read."""
        self.used.update(names)
        for name in names:
            if name in self.vars[host]:
                return self.vars[host][name]
        return None

    def usable(self, var: Var | None, field_name: str) -> Var | None:
        """``var`` unless it is a Jinja template or encrypted (then noted: set ``field_name`` by hand)."""
        if var is None:
            return None
        if is_template(var.value):
            self.note(var, f"is a Jinja template, not evaluated; set {field_name} by hand")
            return None
        if isinstance(var.value, TaggedText):
            self.note(var, f"is tagged {var.value.tag}, not decrypted; set {field_name} by hand")
            return None
        return var

    def cluster(self, name: str, hosts: list[str] | None = None) -> Var | None:
        """A cluster-wide variable: the first host's value, with a note when hosts disagree."""
        hosts = hosts if hosts is not None else self.hosts
        found = [(h, v) for h in hosts if (v := self.get(h, name)) is not None]
        if not found:
            return None
        first_host, first = found[0]
        if any(v.value != first.value for _, v in found):
            for _, var in found:
                if var.value != first.value:
                    self.note(var, f"differs between hosts; the provisioner sets it once for the cluster: used {first_host}'s")
        return first

    def leftovers(self) -> list[Var]:
        """Variables set for some imported host that no mapping read, once per place."""
        seen: set[tuple[str, str]] = set()
        out: list[Var] = []
        for host in self.hosts:
            for var in self.vars[host].values():
                key = (var.name, str(var.origin))
                if var.name not in self.used and key not in seen:
                    seen.add(key)
                    out.append(var)
        return out

    def report_leftovers(self, reasons: dict[str, str]) -> None:
        for var in self.leftovers():
            self.note(var, reasons.get(var.name) or NOT_NEEDED.get(var.name) or "not understood; not carried over")


# --- names ---------------------------------------------------------------------------------


def node_name(host: str, notes: list[Note], where: str) -> str:
    """``host`` as a Kubernetes node name: lower-cased, other characters as '-', with a note."""
    if _NODE_NAME.match(host):
        return host
    candidate = re.sub(r"[^a-z0-9.-]+", "-", host.lower()).strip("-.")
    if not _NODE_NAME.match(candidate):
        raise InventoryError([Problem("", f"host {host!r} cannot be made a Kubernetes node name; rename it", where)])
    notes.append(Note(host, where, f"not a valid Kubernetes node name (lowercase letters, digits, '-', '.'): written as {candidate}"))
    return candidate


def cluster_name(wanted: str | None, var: Var | None, default: str, resolved: Resolved) -> Sourced:
    """``--name``, else the variable's value when it is a valid cluster name, else ``default``."""
    if wanted:
        return Sourced(wanted, "from --name")
    if var is not None and resolved.usable(var, "cluster.name") is not None:
        if isinstance(var.value, str) and _CLUSTER_NAME.match(var.value):
            return sourced(var.value, var)
        resolved.note(var, f"is not a valid cluster name (lowercase letters, digits, '-', '_', '.'); used {default!r}")
    return Sourced(default)


def folder_name(inventory: AnsibleInventory, fallback: str) -> str:
    """The inventory folder's name when it is a valid cluster name (kubespray: inventory/<cluster>/)."""
    name = inventory.path.resolve().parent.name.lower()
    return name if _CLUSTER_NAME.match(name) and name not in ("inventory", "sample") else fallback


# --- connection variables ----------------------------------------------------------------

CONNECTION_VARS = (
    "ansible_host",
    "ansible_ssh_host",
    "ansible_port",
    "ansible_ssh_port",
    "ansible_user",
    "ansible_ssh_user",
    "ansible_ssh_private_key_file",
    "ansible_private_key_file",
    "ansible_become_password",
    "ansible_become_pass",
    "ansible_sudo_pass",
    "ansible_sudo_password",
    "ansible_ssh_common_args",
    "ansible_ssh_extra_args",
    "ansible_ssh_timeout",
    "ansible_timeout",
    "ansible_password",
    "ansible_ssh_pass",
    "ansible_become",
    "ansible_become_method",
    "ansible_become_user",
    "ansible_connection",
)
_POLICY = {"yes": "strict", "accept-new": "accept-new", "no": "off", "off": "off"}


def host_address(resolved: Resolved, host: str, fallback: Var | None = None) -> Sourced:
    """``ansible_host`` (or ``fallback``, e.g. kubespray's ``access_ip``), else the inventory name."""
    var = resolved.usable(resolved.get(host, "ansible_host", "ansible_ssh_host"), "the host's address")
    for candidate in (var, fallback):
        if candidate is not None:
            value = str(candidate.value)
            if is_address(value):
                return sourced(value, candidate)
            resolved.note(candidate, f"{value!r} is not an IP address or DNS name; not used as the address")
    return Sourced(host, "the inventory name")


def host_ssh(resolved: Resolved, host: str, distinct_password: bool) -> dict[str, Sourced]:
    """The SSH settings one host's connection variables give (every one read, odd ones noted)."""
    out: dict[str, Sourced] = {}
    r = resolved
    if (var := r.usable(r.get(host, "ansible_user", "ansible_ssh_user"), "ssh.user")) is not None:
        out["user"] = sourced(str(var.value), var)
    if (var := r.usable(r.get(host, "ansible_port", "ansible_ssh_port"), "ssh.port")) is not None:
        if str(var.value).isdigit() and 0 < int(var.value) < 65536:
            out["port"] = sourced(int(var.value), var)
        else:
            r.note(var, "is not a port number; not carried over")
    if (var := r.usable(r.get(host, "ansible_ssh_private_key_file", "ansible_private_key_file"), "ssh.private_key")) is not None:
        out["private_key"] = sourced(_local_path(r, str(var.value)), var)
    if (var := r.usable(r.get(host, "ansible_ssh_timeout", "ansible_timeout"), "ssh.connect_timeout")) is not None:
        if str(var.value).isdigit() and 0 < int(var.value) <= 600:
            out["connect_timeout"] = sourced(int(var.value), var)
        else:
            r.note(var, "is not a timeout of 1-600 seconds; not carried over")
    for name in ("ansible_ssh_common_args", "ansible_ssh_extra_args"):
        if (var := r.usable(r.get(host, name), "the ssh settings")) is not None:
            for key, value in _ssh_args(r, var).items():
                if key in ("private_key", "known_hosts"):
                    value = _local_path(r, value)
                out.setdefault(key, sourced(value, var))
    password = r.get(host, "ansible_become_password", "ansible_become_pass", "ansible_sudo_pass", "ansible_sudo_password")
    if password is not None:
        env = _ENV_LOOKUP.match(password.value) if isinstance(password.value, str) else None
        if env:
            out["sudo_password_env"] = sourced(env.group(1), password)
        else:
            name = SUDO_PASSWORD_ENV
            if distinct_password:
                name += "_" + re.sub(r"[^A-Z0-9]", "_", host.upper())
            out["sudo_password_env"] = Sourced(
                name, f"from {password.origin.place}: {password.name} (the password itself is not written here)"
            )
            r.note(
                password,
                f"the password is never written into the inventory: export {name}=<the password> before `up` (ssh.sudo_password_env)",
            )
    if (var := r.get(host, "ansible_password", "ansible_ssh_pass")) is not None:
        r.note(var, "SSH password logins are not supported: use a key (ssh.private_key or your agent); the password is not written")
    if (var := r.get(host, "ansible_become")) is not None and str(var.value).lower() in ("false", "no", "0"):
        r.note(var, "the provisioner uses sudo whenever the SSH user is not root")
    if (var := r.get(host, "ansible_become_method")) is not None and var.value != "sudo":
        r.note(var, "only sudo is supported for privilege escalation")
    if (var := r.get(host, "ansible_become_user")) is not None and var.value != "root":
        r.note(var, "the provisioner becomes root; other users are not supported")
    if (var := r.get(host, "ansible_connection")) is not None and var.value not in ("ssh", "paramiko", "smart"):
        r.note(var, f"connection {var.value!r} is not supported: the provisioner connects over SSH")
    return out


def _local_path(resolved: Resolved, value: str) -> str:
    """A relative path made absolute from the Ansible inventory's folder; ``~`` kept."""
    if value.startswith("~") or value.startswith("/"):
        return value
    return str((resolved.inventory.path.resolve().parent / value).resolve())


def _ssh_args(resolved: Resolved, var: Var) -> dict[str, Any]:
    """``-o Key=Value``, ``-J``, ``-p``, ``-l``, ``-i`` from ssh arguments; the rest noted."""
    try:
        words = shlex.split(str(var.value))
    except ValueError:
        resolved.note(var, "cannot be split into arguments; not carried over")
        return {}
    options: list[tuple[str, str]] = []
    index = 0
    while index < len(words):
        word = words[index]
        short = {"-J": "ProxyJump", "-p": "Port", "-l": "User", "-i": "IdentityFile"}
        if word in ("-o", *short) and index + 1 < len(words):
            value = words[index + 1]
            if word == "-o":
                key, _, val = value.partition("=")
                options.append((key.strip(), val.strip()))
            else:
                options.append((short[word], value))
            index += 2
            continue
        if word.startswith("-o") and len(word) > 2:
            key, _, val = word[2:].partition("=")
            options.append((key.strip(), val.strip()))
        else:
            resolved.note(var, f"ssh argument {word!r} is not carried over")
        index += 1
    out: dict[str, Any] = {}
    for key, value in options:
        lower = key.lower()
        if lower == "stricthostkeychecking" and value.lower() in _POLICY:
            out["host_key_policy"] = _POLICY[value.lower()]
        elif lower == "userknownhostsfile":
            if value != "/dev/null":
                out["known_hosts"] = value
        elif lower == "proxyjump":
            out["proxy_jump"] = value
        elif lower == "connecttimeout" and value.isdigit():
            out["connect_timeout"] = int(value)
        elif lower == "port" and value.isdigit():
            out["port"] = int(value)
        elif lower == "user":
            out["user"] = value
        elif lower == "identityfile":
            out["private_key"] = value
        else:
            resolved.note(var, f"ssh option {key} is not carried over (put it in ~/.ssh/config)")
    return out


def split_ssh(draft: Draft, per_host: dict[str, dict[str, Sourced]]) -> None:
    """A setting every host has goes to the file's ``ssh`` with its most common value (the first
    host's on a tie); hosts with another value, or where not every host has it, keep their own."""
    hosts = list(per_host)
    keys = sorted({k for values in per_host.values() for k in values})
    for key in keys:
        values = [per_host[h].get(key) for h in hosts]
        if any(v is None for v in values):
            continue  # a host without it falls back to defaults: the others keep theirs
        counts = Counter(repr(v.value) for v in values if v is not None)
        common = max(counts, key=lambda r: (counts[r], -[repr(v.value) for v in values if v].index(r)))
        draft.ssh[key] = next(v for v in values if v is not None and repr(v.value) == common)
        for host in hosts:
            if repr(per_host[host][key].value) == common:
                per_host[host].pop(key)
    for draft_host in draft.hosts:
        draft_host.ssh = per_host.get(draft_host.name.value, {})


def distinct_passwords(resolved: Resolved) -> bool:
    """True when hosts are given different sudo passwords (compared here, never shown)."""
    values = Counter(
        repr(v.value)
        for h in resolved.hosts
        if (v := resolved.vars[h].get("ansible_become_password") or resolved.vars[h].get("ansible_become_pass")) is not None
    )
    return len(values) > 1


def check_ip(resolved: Resolved, var: Var | None) -> Var | None:
    if var is not None and not is_ip(str(var.value)):
        resolved.note(var, f"{var.value!r} is not an IP address; not used as the node IP")
        return None
    return var


# --- the end ---------------------------------------------------------------------------------


def validate(text: str, source: str) -> None:
    """Raise ``InventoryError`` when the written inventory would not load.

    Key and air-gap files and the sudo password variable are checked by ``up`` on the machine
    that runs it, not here.
    """
    try:
        parse_inventory(text, source, check_files=False)
    except InventoryError as error:
        problems = [p for p in error.problems if not p.message.startswith("environment variable ")]
        if problems:
            raise InventoryError(
                [Problem(p.field, f"the imported inventory would not load: {p.message}", p.file, p.line) for p in problems]
            ) from None
