"""Recognise an Ansible inventory given where a provisioner inventory is expected, to say which
import command turns it into one. Pure text checks: no parsing beyond a few patterns."""

from __future__ import annotations

import re

_SECTION = re.compile(r"^\[([^\]\s:]+)(?::(vars|children))?\]\s*(?:[#;].*)?$", re.MULTILINE)
_YAML_GROUP = re.compile(r"^([A-Za-z0-9_-]+):\s*$\n(?:\s*#.*\n|\s*\n)*\s+(hosts|children|vars):", re.MULTILINE)
_KUBESPRAY = ("kube_control_plane", "kube-master", "kube_master", "kube_node", "kube-node", "k8s_cluster", "k8s-cluster")
_K3S_ANSIBLE = ("k3s_cluster", "server", "agent", "master", "node")


def ansible_hint(text: str, path: str) -> str | None:
    """One line naming the import command when ``text`` looks like a kubespray or k3s-ansible
    inventory; None otherwise."""
    groups = set(_groups(text))
    if not groups:
        return None
    if groups & set(_KUBESPRAY):
        tool = "kubespray"
    elif groups & set(_K3S_ANSIBLE):
        tool = "k3s-ansible"
    else:
        return f"this is an Ansible inventory, not a provisioner one: convert it with `provisioner import k3s-ansible {path}` or `provisioner import kubespray {path}`"
    return f"this is a {tool} inventory, not a provisioner one: convert it with `provisioner import {tool} {path} --out NEW.yaml`"


def _groups(text: str) -> list[str]:
    if text.lstrip().startswith("{") and '"_meta"' in text:
        return re.findall(r'"([A-Za-z0-9_-]+)"\s*:\s*\{\s*"(?:hosts|children|vars)"', text)
    found = [m.group(1) for m in _SECTION.finditer(text)]
    if found:
        return found
    return [m.group(1) for m in _YAML_GROUP.finditer(text)] + re.findall(r"^\s+(server|agent|kube_control_plane|kube_node):\s*$", text, re.MULTILINE)
