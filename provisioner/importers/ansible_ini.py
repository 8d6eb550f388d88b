"""A small parser for Ansible's INI inventory format (ansible-core is too heavy for one format).

What it reads, as Ansible documents it:

- host lines ``name key=value key="quoted value" # comment`` under ``[group]`` (before any section:
  the ``ungrouped`` group); ``name:port`` sets ``ansible_port``; ranges ``node[01:03]``, ``db-[a:c]``;
- ``[group:vars]`` with one ``key=value`` per line (the value is a string: everything after ``=``,
  surrounding quotes removed);
- ``[group:children]`` with one group name per line;
- comments starting with ``#`` or ``;``.

Host-line values are read as Python literals where they are one (``22`` → 22, ``True`` → True),
as Ansible does; everything else stays a string.
"""

from __future__ import annotations

import ast
import re
import shlex
from typing import Any

from provisioner.importers.ansible import (
    AnsibleInventory,
    Origin,
    Var,
    expand_host_pattern,
    not_an_inventory,
)

_SECTION = re.compile(r"^\[([^\]\s]+)\]\s*(?:[#;].*)?$")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HOST_PORT = re.compile(r"^(.*[^:]):(\d+)$")


def parse_ini(inventory: AnsibleInventory, text: str) -> None:
    """Fill ``inventory`` from INI text; raise ``InventoryError`` naming the line that is not INI."""
    label = inventory.label
    group, kind = "ungrouped", "hosts"
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        section = _SECTION.match(line)
        if section:
            group, _, kind = section.group(1).partition(":")
            kind = kind or "hosts"
            if kind not in ("hosts", "vars", "children"):
                raise not_an_inventory(label, f"not an INI inventory: unknown section kind {kind!r} (hosts, vars or children)", number)
            inventory.group(group)
            continue
        if kind == "hosts":
            _host_line(inventory, group, line, number)
        elif kind == "vars":
            name, sep, value = line.partition("=")
            name = name.strip()
            if not sep or not _KEY.match(name):
                raise not_an_inventory(label, f"not an INI inventory: expected key=value in [{group}:vars]", number)
            inventory.group(group).vars[name] = Var(name, _unquote(value.strip()), Origin(label, number, f"group {group}"))
        else:
            words = _split(line, label, number)
            if len(words) != 1:
                raise not_an_inventory(label, f"not an INI inventory: expected one group name per line in [{group}:children]", number)
            inventory.add_child(group, words[0])


def _host_line(inventory: AnsibleInventory, group: str, line: str, number: int) -> None:
    label = inventory.label
    words = _split(line, label, number)
    if not words:
        return
    pattern, assignments = words[0], words[1:]
    if "=" in pattern:
        raise not_an_inventory(label, f"not an INI inventory: a host line starts with the host name, not {pattern!r}", number)
    variables: dict[str, Any] = {}
    port = _HOST_PORT.match(pattern)
    if port and "[" not in pattern and pattern.count(":") == 1:
        pattern = port.group(1)
        variables["ansible_port"] = int(port.group(2))
    for word in assignments:
        name, sep, value = word.partition("=")
        if not sep or not _KEY.match(name):
            raise not_an_inventory(label, f"not an INI inventory: expected key=value after the host name, not {word!r}", number)
        variables[name] = _literal(value)
    for host in expand_host_pattern(pattern):
        origin = Origin(label, number, f"host {host}")
        inventory.add_host(host, group, {k: Var(k, v, origin) for k, v in variables.items()}, Origin(label, number, f"group {group}"))


def _split(line: str, label: str, number: int) -> list[str]:
    lexer = shlex.shlex(line, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        return list(lexer)
    except ValueError as error:
        raise not_an_inventory(label, f"not an INI inventory: {error}", number) from None


def _literal(value: str) -> Any:
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return value
    return parsed if isinstance(parsed, (int, float, bool, list, dict, tuple)) or parsed is None else value


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value
