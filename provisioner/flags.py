"""k3s command-line flags as config-file entries.

``cluster.server_args`` / ``agent_args`` are written as flags (``--disable=traefik``). They are
rendered into ``/etc/rancher/k3s/config.yaml`` rather than passed on the command line, so the whole
configuration of a host is one file with one hash: a rerun compares that hash and leaves the host
alone when nothing changed. k3s reads each flag from the config file under its name without dashes;
repeatable flags are YAML lists.
"""

from __future__ import annotations

import re

# Flags k3s accepts several times; in config.yaml they are lists.
REPEATABLE = frozenset(
    {
        "tls-san",
        "node-label",
        "node-taint",
        "disable",
        "kubelet-arg",
        "kube-apiserver-arg",
        "kube-controller-manager-arg",
        "kube-scheduler-arg",
        "kube-proxy-arg",
        "kube-cloud-controller-manager-arg",
        "etcd-arg",
        "node-external-ip",
        "cluster-cidr",
        "service-cidr",
        "etcd-snapshot-schedule-cron",
    }
)

# Keys the provisioner writes itself, with the inventory field that controls each.
MANAGED = {
    "token": "the join token is managed by the provisioner",
    "token-file": "the join token is managed by the provisioner",
    "server": "the server URL comes from cluster.api_endpoint or the first server",
    "node-name": "the node name comes from hosts[].name",
    "node-ip": "set hosts[].node_ip instead",
    "flannel-iface": "set hosts[].flannel_iface instead",
    "write-kubeconfig-mode": "the provisioner always writes the kubeconfig 0600",
    "cluster-init": "set by the provisioner with more than one server, or set cluster.embedded_etcd: true",
    "data-dir": "the provisioner relies on the default data dir /var/lib/rancher/k3s",
}

_FLAG = re.compile(r"^--([a-z0-9][a-z0-9-]*)(?:=(.*))?$", re.DOTALL)

ConfigValue = str | bool | list[str]


def flags_to_config(args: list[str]) -> tuple[dict[str, ConfigValue], list[str]]:
    """Turn ``["--disable=traefik", "--flag"]`` into config entries; return (entries, problems).

    ``--name=value`` gives ``name: value`` (a list for repeatable flags), a bare ``--name`` gives
    ``name: true``. Values must be joined with ``=``: a separate word is ambiguous and refused.
    """
    config: dict[str, ConfigValue] = {}
    problems: list[str] = []
    for index, arg in enumerate(args):
        match = _FLAG.match(arg) if isinstance(arg, str) else None
        if not match:
            problems.append(f"[{index}] {arg!r} is not a flag; write flags as --name or --name=value")
            continue
        name, value = match.group(1), match.group(2)
        if name in MANAGED:
            problems.append(f"[{index}] --{name} cannot be set here: {MANAGED[name]}")
            continue
        if value is None:
            if name in REPEATABLE:
                problems.append(f"[{index}] --{name} needs a value: --{name}=VALUE")
                continue
            config[name] = True
        elif name in REPEATABLE:
            existing = config.setdefault(name, [])
            assert isinstance(existing, list)
            existing.append(value)
        elif name in config:
            problems.append(f"[{index}] --{name} is given twice and cannot be repeated")
        else:
            config[name] = value
    return config, problems
