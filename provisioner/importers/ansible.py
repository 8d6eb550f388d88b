"""Ansible inventories as data: groups, hosts and variables, resolved the way Ansible resolves them.

``load_ansible_inventory`` reads a YAML inventory, an INI inventory (``ansible_ini``) or the JSON of
``ansible-inventory --list``, then the ``group_vars/`` and ``host_vars/`` folders next to it.
``AnsibleInventory.resolve`` merges one host's variables with Ansible's precedence for these sources
(lowest first): the inventory's ``all`` vars; the inventory's group vars, parents before children
and siblings by ``ansible_group_priority`` then name; ``group_vars/all``; ``group_vars/<group>`` in
the same group order; the inventory's host vars; ``host_vars/<host>``. Every value keeps where it
was set (file, line, group or host), so what the importer does not understand can be named.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from provisioner.errors import InventoryError, Problem
from provisioner.inventory import plain_yaml

_GROUP_KEYS = frozenset({"hosts", "vars", "children"})
_RANGE = re.compile(r"\[([0-9a-zA-Z]+):([0-9a-zA-Z]+)(?::([0-9]+))?\]")
_VARS_EXTENSIONS = ("", ".yml", ".yaml", ".json")


@dataclass(frozen=True)
class Origin:
    """Where a value was set: a file (shown relative to the inventory's folder), a line, a scope."""

    file: str
    line: int | None
    scope: str  # "group server", "host node1"

    @property
    def place(self) -> str:
        return f"{self.file}:{self.line}" if self.line is not None else self.file

    def __str__(self) -> str:
        return f"{self.place}, {self.scope}"


@dataclass(frozen=True)
class Var:
    """One variable as set in one place."""

    name: str
    value: Any
    origin: Origin


@dataclass(frozen=True)
class Note:
    """A line for stderr: a variable (or group) the import did not carry over as is, and why."""

    name: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.name} ({self.where}): {self.message}"


def not_an_inventory(file: str, message: str, line: int | None = None) -> InventoryError:
    """The error (exit 2) for a file that is not an inventory of the kind asked for."""
    return InventoryError([Problem("", message, file, line)])


@dataclass
class Group:
    name: str
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    vars: dict[str, Var] = field(default_factory=dict)


@dataclass
class AnsibleInventory:
    """Groups, hosts and the variables set on each, in file order."""

    path: Path
    kind: str  # "yaml", "ini" or "json"
    groups: dict[str, Group] = field(default_factory=dict)
    host_vars: dict[str, dict[str, Var]] = field(default_factory=dict)
    host_origin: dict[str, Origin] = field(default_factory=dict)
    group_files: dict[str, list[dict[str, Var]]] = field(default_factory=dict)
    host_files: dict[str, list[dict[str, Var]]] = field(default_factory=dict)
    notes: list[Note] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.group("all")

    @property
    def label(self) -> str:
        return self.path.name

    # --- building (used by the parsers) --------------------------------------------------

    def group(self, name: str) -> Group:
        if name not in self.groups:
            self.groups[name] = Group(name)
        return self.groups[name]

    def add_child(self, parent: str, child: str) -> None:
        self.group(child)
        children = self.group(parent).children
        if child not in children:
            children.append(child)

    def add_host(self, name: str, group: str, variables: dict[str, Var], origin: Origin) -> None:
        """Put host ``name`` in ``group``; its variables update those set on it before."""
        members = self.group(group).hosts
        if name not in members:
            members.append(name)
        self.host_vars.setdefault(name, {}).update(variables)
        self.host_origin.setdefault(name, origin)

    # --- reading ---------------------------------------------------------------------------

    @property
    def hosts(self) -> list[str]:
        """Every host, in the order the inventory first names it."""
        return list(self.host_vars)

    def members(self, group: str) -> list[str]:
        """Hosts of ``group`` and of its children (transitively), in inventory order."""
        found: set[str] = set()
        seen: set[str] = set()

        def walk(name: str) -> None:
            if name in seen or name not in self.groups:
                return
            seen.add(name)
            found.update(self.groups[name].hosts)
            for child in self.groups[name].children:
                walk(child)

        if group == "all":
            return self.hosts
        walk(group)
        return [h for h in self.hosts if h in found]

    def parents(self, group: str) -> list[str]:
        return [g.name for g in self.groups.values() if group in g.children]

    def depth(self, group: str, _seen: frozenset[str] = frozenset()) -> int:
        """Distance from ``all``: 0 for all, 1 for its children, one more than the deepest parent."""
        if group == "all" or group in _seen:
            return 0
        parents = [p for p in self.parents(group) if p != "all"]
        return 1 + max((self.depth(p, _seen | {group}) for p in parents), default=0)

    def priority(self, group: str) -> int:
        var = self.groups[group].vars.get("ansible_group_priority")
        try:
            return int(var.value) if var is not None else 1
        except (TypeError, ValueError):
            return 1

    def groups_of(self, host: str) -> list[str]:
        """The host's groups and their ancestors except ``all``, in Ansible's merge order."""
        found: set[str] = set()
        todo = [g.name for g in self.groups.values() if host in g.hosts]
        while todo:
            name = todo.pop()
            if name in found or name == "all":
                continue
            found.add(name)
            todo += self.parents(name)
        return sorted(found, key=lambda g: (self.depth(g), self.priority(g), g))

    def resolve(self, host: str) -> dict[str, Var]:
        """The host's variables after Ansible's precedence (see the module docstring)."""
        ordered = self.groups_of(host)
        out: dict[str, Var] = {}
        out.update(self.groups["all"].vars)
        for group in ordered:
            out.update(self.groups[group].vars)
        for layer in self.group_files.get("all", []):
            out.update(layer)
        for group in ordered:
            for layer in self.group_files.get(group, []):
                out.update(layer)
        out.update(self.host_vars.get(host, {}))
        for layer in self.host_files.get(host, []):
            out.update(layer)
        out.pop("ansible_group_priority", None)
        return out


# --- loading ---------------------------------------------------------------------------------


def load_ansible_inventory(path: Path) -> AnsibleInventory:
    """Read an Ansible inventory in any of the three forms, plus its group_vars/host_vars folders.

    Raises ``InventoryError`` (exit 2) when the file cannot be read or is not an Ansible inventory.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise not_an_inventory(str(path), f"cannot read the inventory: {reason}") from None
    kind = sniff_format(path, text)
    inventory = AnsibleInventory(path=path, kind=kind)
    if kind == "json":
        parse_json(inventory, text)
    elif kind == "ini":
        from provisioner.importers.ansible_ini import parse_ini

        parse_ini(inventory, text)
    else:
        parse_yaml(inventory, text)
    if not inventory.hosts:
        raise not_an_inventory(inventory.label, "no hosts: not an Ansible inventory, or an empty one")
    load_vars_folders(inventory, path.resolve().parent)
    return inventory


def sniff_format(path: Path, text: str) -> str:
    """``json``, ``ini`` or ``yaml``: by extension, else by the first line that is not a comment."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "json"
    if suffix in (".yml", ".yaml"):
        return "yaml"
    if suffix in (".ini", ".cfg"):
        return "ini"
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped[0] in "#;" or stripped == "---":
            continue
        if stripped.startswith("{"):
            return "json"
        if re.match(r"^\[[^\]\s]+\]\s*([#;].*)?$", stripped):
            return "ini"
        return "yaml" if re.match(r"^[^\s=]+:(\s|$)", stripped) else "ini"
    return "yaml"


def expand_host_pattern(pattern: str) -> list[str]:
    """``node[01:03]`` → node01, node02, node03; ``db-[a:c]`` → db-a, db-b, db-c; stride ``[1:9:2]``."""
    match = _RANGE.search(pattern)
    if match is None:
        return [pattern]
    start, end, stride = match.group(1), match.group(2), int(match.group(3) or 1)
    head, tail = pattern[: match.start()], pattern[match.end() :]
    if start.isdigit() and end.isdigit():
        width = len(start) if start.startswith("0") and len(start) > 1 else 0
        items = [str(n).zfill(width) for n in range(int(start), int(end) + 1, max(stride, 1))]
    elif len(start) == 1 and len(end) == 1 and start.isalpha() and end.isalpha():
        items = [chr(c) for c in range(ord(start), ord(end) + 1, max(stride, 1))]
    else:
        return [pattern]
    return [name for item in items for name in expand_host_pattern(head + item + tail)]


def plain(node: Any) -> Any:
    """Round-trip YAML nodes as plain dicts, lists and scalars; a tagged scalar (``!vault``,
    ``!unsafe``) keeps its text and is marked with its tag."""
    return plain_yaml(node, _tagged)


def _tagged(node: Any) -> Any:
    tag = getattr(node, "tag", None)
    if tag is not None and hasattr(node, "value"):
        return TaggedText(str(getattr(tag, "value", tag)), str(node.value))
    return node
    if isinstance(node, str):
        return str(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    tag = getattr(node, "tag", None)
    if tag is not None and hasattr(node, "value"):  # !vault, !unsafe: keep the text, mark the tag
        return TaggedText(str(getattr(tag, "value", tag)), str(node.value))
    return node


@dataclass(frozen=True)
class TaggedText:
    """A YAML scalar with a tag this importer does not evaluate (``!vault``, ``!unsafe``)."""

    tag: str
    text: str


def _yaml() -> YAML:
    return YAML(typ="rt")


def _line(mapping: Any, key: Any) -> int | None:
    try:
        return int(mapping.lc.key(key)[0]) + 1
    except (AttributeError, KeyError, TypeError):
        return None


def _vars_from_mapping(mapping: Any, file: str, scope: str) -> dict[str, Var]:
    return {str(name): Var(str(name), plain(value), Origin(file, _line(mapping, name), scope)) for name, value in mapping.items()}


def parse_yaml(inventory: AnsibleInventory, text: str) -> None:
    """Fill ``inventory`` from an Ansible YAML inventory (groups with hosts, vars and children)."""
    label = inventory.label
    try:
        data = _yaml().load(text)
    except MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        raise not_an_inventory(label, f"not YAML: {error.problem or error.context}", mark.line + 1 if mark else None) from None
    except YAMLError as error:
        raise not_an_inventory(label, f"not YAML: {error}") from None
    if not isinstance(data, CommentedMap):
        raise not_an_inventory(label, "not an Ansible inventory: the top level must map group names to groups")
    if "cluster" in data and isinstance(data.get("hosts"), list):
        raise not_an_inventory(label, "this is already a provisioner inventory, not an Ansible one", 1)

    def group(name: str, body: Any, parent: str | None, line: int | None) -> None:
        inventory.group(name)
        if parent is not None:
            inventory.add_child(parent, name)
        if body is None:
            return
        if not isinstance(body, CommentedMap) or not set(map(str, body)) <= _GROUP_KEYS:
            extra = sorted(set(map(str, body)) - _GROUP_KEYS) if isinstance(body, CommentedMap) else []
            what = f"has {', '.join(extra)}" if extra else "is not a mapping"
            raise not_an_inventory(
                label,
                f"not an Ansible inventory: group {name!r} {what} (a group holds only hosts, vars and children)",
                line,
            )
        hosts = body.get("hosts")
        if hosts is not None:
            if not isinstance(hosts, CommentedMap):
                raise not_an_inventory(
                    label, f"not an Ansible inventory: {name}.hosts must map host names to their vars", _line(body, "hosts")
                )
            for pattern, host_body in hosts.items():
                host_line = _line(hosts, pattern)
                if host_body is not None and not isinstance(host_body, CommentedMap):
                    raise not_an_inventory(
                        label, f"not an Ansible inventory: host {pattern!r} must map variable names to values", host_line
                    )
                for host in expand_host_pattern(str(pattern)):
                    variables = _vars_from_mapping(host_body, label, f"host {host}") if host_body else {}
                    inventory.add_host(host, name, variables, Origin(label, host_line, f"group {name}"))
        variables = body.get("vars")
        if variables is not None:
            if not isinstance(variables, CommentedMap):
                raise not_an_inventory(label, f"not an Ansible inventory: {name}.vars must be a mapping", _line(body, "vars"))
            inventory.group(name).vars.update(_vars_from_mapping(variables, label, f"group {name}"))
        children = body.get("children")
        if children is not None:
            if not isinstance(children, CommentedMap):
                raise not_an_inventory(
                    label, f"not an Ansible inventory: {name}.children must map group names to groups", _line(body, "children")
                )
            for child, child_body in children.items():
                group(str(child), child_body, name, _line(children, child))

    for name, body in data.items():
        group(str(name), body, None, _line(data, name))


def parse_json(inventory: AnsibleInventory, text: str) -> None:
    """Fill ``inventory`` from the JSON of ``ansible-inventory --list`` (with or without --export)."""
    label = inventory.label
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise not_an_inventory(label, f"not JSON: {error.msg}", error.lineno) from None
    if not isinstance(data, dict):
        raise not_an_inventory(label, "not the JSON of ansible-inventory --list: the top level must be an object")
    meta = data.get("_meta", {})
    hostvars = meta.get("hostvars", {}) if isinstance(meta, dict) else {}
    if not isinstance(hostvars, dict):
        raise not_an_inventory(label, "not the JSON of ansible-inventory --list: _meta.hostvars must be an object")
    for name, body in data.items():
        if name == "_meta":
            continue
        if not isinstance(body, dict) or not set(body) <= _GROUP_KEYS:
            raise not_an_inventory(
                label, f"not the JSON of ansible-inventory --list: group {name!r} holds more than hosts, vars and children"
            )
        inventory.group(name)
        for child in body.get("children") or []:
            inventory.add_child(name, str(child))
        for host in body.get("hosts") or []:
            inventory.add_host(str(host), name, {}, Origin(label, None, f"group {name}"))
        for var, value in (body.get("vars") or {}).items():
            inventory.group(name).vars[var] = Var(var, value, Origin(label, None, f"group {name}"))
    for host, variables in hostvars.items():
        if not isinstance(variables, dict):
            raise not_an_inventory(label, f"not the JSON of ansible-inventory --list: hostvars of {host!r} must be an object")
        if host not in inventory.host_vars:
            inventory.add_host(host, "ungrouped", {}, Origin(label, None, "_meta.hostvars"))
        inventory.host_vars[host].update({var: Var(var, value, Origin(label, None, f"host {host}")) for var, value in variables.items()})


def load_vars_folders(inventory: AnsibleInventory, base: Path) -> None:
    """Read ``group_vars/`` and ``host_vars/`` next to the inventory, for the groups and hosts it has.

    For a name N: the file ``N``, ``N.yml``, ``N.yaml`` or ``N.json``, and every such file under the
    folder ``N/`` (sorted, recursively), in that order, later files overriding earlier ones.
    """
    for folder, names, target, scope in (
        ("group_vars", list(inventory.groups), inventory.group_files, "group"),
        ("host_vars", inventory.hosts, inventory.host_files, "host"),
    ):
        root = base / folder
        if not root.is_dir():
            continue
        for name in names:
            for file in _vars_files(root, name):
                layer = _load_vars_file(inventory, file, base, f"{scope} {name}")
                if layer:
                    target.setdefault(name, []).append(layer)


def _vars_files(root: Path, name: str) -> list[Path]:
    files = [root / (name + ext) for ext in _VARS_EXTENSIONS if (root / (name + ext)).is_file()]
    folder = root / name
    if folder.is_dir():
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for filename in sorted(filenames):
                path = Path(dirpath) / filename
                if not filename.startswith(".") and not filename.endswith("~") and path.suffix in _VARS_EXTENSIONS:
                    files.append(path)
    return files


def _load_vars_file(inventory: AnsibleInventory, file: Path, base: Path, scope: str) -> dict[str, Var]:
    shown = os.path.relpath(file, base)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        inventory.notes.append(Note(shown, scope, "cannot be read; its variables are not imported"))
        return {}
    if text.startswith("$ANSIBLE_VAULT"):
        inventory.notes.append(Note(shown, scope, "is encrypted with ansible-vault; decrypt it to import its variables"))
        return {}
    try:
        data = _yaml().load(text)
    except YAMLError as error:
        inventory.notes.append(Note(shown, scope, f"is not valid YAML ({str(error).splitlines()[0]}); skipped"))
        return {}
    if data is None:
        return {}
    if not isinstance(data, CommentedMap):
        inventory.notes.append(Note(shown, scope, "does not map variable names to values; skipped"))
        return {}
    return _vars_from_mapping(data, shown, scope)
