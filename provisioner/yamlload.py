"""Loading YAML that may be hostile: bounded size, depth, aliases and expanded size.

A file a user was handed (or that an attacker wrote) must not hang the tool, exhaust memory or
crash it with a traceback. ``load_yaml`` checks, in this order and before building any object:
the size of the bytes, that they are UTF-8, and then -- walking ruamel.yaml's event stream, which
is iterative -- the nesting depth, the number of aliases, the size of the document once every
alias is expanded, recursive aliases and tags. Only a document within those bounds is composed
(ruamel's composer recurses, so depth must be bounded first) and returned as round-trip
``CommentedMap``/``CommentedSeq`` nodes that remember their line numbers.

Every refusal is an ``InventoryError`` with one ``Problem`` naming the file and line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    DocumentStartEvent,
    NodeEvent,
    ScalarEvent,
)
from ruamel.yaml.reader import ReaderError

from provisioner.errors import InventoryError, Problem

_STANDARD_TAGS = frozenset(f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "map", "seq"))


@dataclass(frozen=True)
class Limits:
    """Bounds on a YAML document. An inventory is a few kilobytes, five levels deep."""

    max_bytes: int = 1 << 20
    max_depth: int = 32
    max_aliases: int = 1000
    max_nodes: int = 100_000  # scalars and collections, every alias expanded


DEFAULT_LIMITS = Limits()


def read_yaml_file(path: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS) -> Any:
    """Read and load the YAML file at ``path`` within ``limits``; see ``load_yaml``."""
    shown = os.fspath(path)
    return load_yaml(read_limited(path, shown, limits), shown, limits)


def read_limited(path: str | os.PathLike[str], source: str, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """The bytes of ``path``, never read past ``max_bytes`` + 1, so a huge file (or /dev/zero) costs nothing."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(limits.max_bytes + 1)
    except OSError as error:
        reason = error.strerror or str(error)
        raise InventoryError([Problem("", f"cannot read inventory: {reason}", source)]) from None
    if len(data) > limits.max_bytes:
        raise _refuse(source, None, _too_big(limits))
    return data


def load_yaml(data: bytes | str, source: str, limits: Limits = DEFAULT_LIMITS) -> Any:
    """The YAML document in ``data`` as round-trip nodes, or ``InventoryError`` if it is out of bounds."""
    text = decode(data, source, limits) if isinstance(data, bytes) else data
    if len(text.encode("utf-8", "surrogatepass")) > limits.max_bytes:
        raise _refuse(source, None, _too_big(limits))
    yaml = YAML(typ="rt")
    try:
        check_events(yaml, text, source, limits)
        return yaml.load(text)
    except MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else None
        reason = error.problem or error.context or "invalid YAML"
        raise _refuse(source, line, f"YAML syntax error: {reason}") from None
    except ReaderError as error:  # a raw control character, anywhere (comments too)
        line = text.count("\n", 0, error.position) + 1
        code = error.character if isinstance(error.character, int) else ord(str(error.character)[:1] or "\0")
        raise _refuse(source, line, f"control character U+{code:04X} in the file; YAML does not allow it raw") from None
    except YAMLError as error:
        raise _refuse(source, None, f"YAML syntax error: {error}") from None
    except ValueError as error:
        if "integer string conversion" in str(error):  # longer than int_max_str_digits
            raise _refuse(source, None, "a number in the YAML has too many digits") from None
        raise _refuse(source, None, f"YAML value cannot be read: {error}") from None
    except (OverflowError, RecursionError) as error:
        raise _refuse(source, None, f"YAML value cannot be read: {type(error).__name__}") from None


def decode(data: bytes, source: str, limits: Limits = DEFAULT_LIMITS) -> str:
    """``data`` as text: at most ``max_bytes``, UTF-8 (a leading byte order mark is dropped)."""
    if len(data) > limits.max_bytes:
        raise _refuse(source, None, _too_big(limits))
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise _refuse(source, 1, "not UTF-8 text (it starts with a UTF-16 byte order mark); save it as UTF-8")
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        byte = data[error.start]
        raise _refuse(source, line, f"not UTF-8 text (byte 0x{byte:02x} at column {column}); save the file as UTF-8") from None


def check_events(yaml: YAML, text: str, source: str, limits: Limits) -> None:
    """Walk the event stream once and refuse what is out of bounds, before anything is composed.

    The expanded size of each anchored node is remembered, so an alias adds the size of what it
    stands for: a "billion laughs" document is refused after a few hundred events, never expanded.
    """
    depth = 0
    aliases = 0
    documents = 0
    total = 0
    sizes: dict[str, int] = {}
    open_anchors: set[str] = set()
    stack: list[list[Any]] = []  # [expanded size so far, anchor] of each open collection

    def finish(size: int, anchor: str | None, line: int) -> None:
        nonlocal total
        if anchor is not None:
            sizes[anchor] = size
            open_anchors.discard(anchor)
        if stack:
            stack[-1][0] += size
        total += size if not stack else 0
        expanded = total + sum(frame[0] for frame in stack)
        if expanded > limits.max_nodes:
            raise _refuse(
                source,
                line,
                f"YAML expands to more than {limits.max_nodes} values once its aliases are expanded; refused (an alias bomb?)",
            )

    for event in yaml.parse(text):
        line = event.start_mark.line + 1 if event.start_mark is not None else 1
        if isinstance(event, DocumentStartEvent):
            documents += 1
            if documents > 1:
                raise _refuse(source, line, "more than one YAML document; an inventory is one document")
        if isinstance(event, NodeEvent) and not isinstance(event, AliasEvent):
            tag = getattr(event, "tag", None)
            if tag is not None and str(tag) not in _STANDARD_TAGS and str(tag) != "!":
                raise _refuse(source, line, f"YAML tag {_shown(str(tag))} is not allowed in an inventory")
        if isinstance(event, CollectionStartEvent):
            depth += 1
            if depth > limits.max_depth:
                raise _refuse(source, line, f"YAML nested deeper than {limits.max_depth} levels; refused")
            if event.anchor is not None:
                open_anchors.add(event.anchor)
            stack.append([1, event.anchor])
        elif isinstance(event, CollectionEndEvent):
            depth -= 1
            size, anchor = stack.pop()
            finish(size, anchor, line)
        elif isinstance(event, ScalarEvent):
            finish(1, event.anchor, line)
        elif isinstance(event, AliasEvent):
            aliases += 1
            if aliases > limits.max_aliases:
                raise _refuse(source, line, f"more than {limits.max_aliases} YAML aliases; refused")
            if event.anchor in open_anchors:
                raise _refuse(source, line, f"YAML alias *{_shown(event.anchor)} refers to itself")
            finish(sizes.get(event.anchor, 1), None, line)


def _too_big(limits: Limits) -> str:
    return f"larger than {limits.max_bytes // 1024} KiB; an inventory is a small text file"


def _shown(value: str, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 2] + "…" + text[0]


def _refuse(source: str, line: int | None, message: str) -> InventoryError:
    return InventoryError([Problem("", message, source, line)])


__all__ = ["DEFAULT_LIMITS", "Limits", "decode", "load_yaml", "read_limited", "read_yaml_file"]
