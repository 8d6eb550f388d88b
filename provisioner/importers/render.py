"""The native inventory as YAML text, each imported value followed by a comment naming its source."""

from __future__ import annotations

import io
import json
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from provisioner.importers.mapping import Draft, Sourced

_CLUSTER_ORDER = (
    "name",
    "distribution",
    "version",
    "channel",
    "api_endpoint",
    "server_args",
    "agent_args",
    "airgap",
    "pod_network_cidr",
    "service_cidr",
)
_SSH_ORDER = (
    "user",
    "port",
    "private_key",
    "host_key_policy",
    "known_hosts",
    "sudo_password_env",
    "proxy_jump",
    "connect_timeout",
)


def scalar(value: Any) -> str:
    """``value`` as a YAML scalar: plain when YAML reads it back as the same value, else quoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    try:
        back = YAML(typ="safe").load(io.StringIO(f"k: {text}\n")) if text and "#" not in text else None
    except YAMLError:
        back = None
    if isinstance(back, dict) and back.get("k") == text:
        return text
    return json.dumps(text)  # a JSON string is a valid YAML double-quoted scalar


def _comment(item: Sourced) -> str:
    return f"  # {item.source}" if item.source else ""


def _field(lines: list[str], indent: str, key: str, item: Sourced) -> None:
    value = item.value
    if isinstance(value, list):
        if not value:
            lines.append(f"{indent}{key}: []{_comment(item)}")
            return
        lines.append(f"{indent}{key}:{_comment(item)}")
        lines += [f"{indent}  - {scalar(v)}" for v in value]
    elif isinstance(value, dict):
        lines.append(f"{indent}{key}:{_comment(item)}")
        lines += [f"{indent}  {k}: {scalar(v)}" for k, v in value.items() if v is not None]
    else:
        lines.append(f"{indent}{key}: {scalar(value)}{_comment(item)}")


def _ordered(fields: dict[str, Sourced], order: tuple[str, ...]) -> list[tuple[str, Sourced]]:
    rank = {k: i for i, k in enumerate(order)}
    return sorted(fields.items(), key=lambda kv: rank.get(kv[0], len(order)))


def render(draft: Draft) -> str:
    """The YAML text of ``draft``; comments say where each value came from."""
    lines = [
        f"# Imported by `provisioner import {draft.tool}` from {draft.source}.",
        "# Comments name the Ansible variable (and its file:line) each value came from.",
        "cluster:",
    ]
    for key, item in _ordered(draft.cluster, _CLUSTER_ORDER):
        _field(lines, "  ", key, item)
    if draft.ssh:
        lines.append("ssh:")
        for key, item in _ordered(draft.ssh, _SSH_ORDER):
            _field(lines, "  ", key, item)
    lines.append("hosts:")
    for host in draft.hosts:
        lines.append(f"  - name: {scalar(host.name.value)}{_comment(host.name)}")
        _field(lines, "    ", "address", host.address)
        _field(lines, "    ", "role", host.role)
        if host.node_ip is not None:
            _field(lines, "    ", "node_ip", host.node_ip)
        if host.flannel_iface is not None:
            _field(lines, "    ", "flannel_iface", host.flannel_iface)
        if host.ssh:
            lines.append("    ssh:")
            for key, item in _ordered(host.ssh, _SSH_ORDER):
                _field(lines, "      ", key, item)
    return "\n".join(lines) + "\n"
