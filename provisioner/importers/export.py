"""``provisioner export ansible``: a native k3s inventory written back as a k3s-ansible inventory.

Hosts go under ``k3s_cluster`` → ``server``/``agent`` by their node names; cluster-wide settings are
``k3s_cluster`` vars; per-host SSH overrides, node IPs and Flannel interfaces are host vars.
Node names stay the same under k3s-ansible: each role's ``extra_*_args`` carries
``--node-name={{ inventory_hostname }}`` (a host with its own flags gets the literal name). The sudo
password stays in its environment variable: ``ansible_become_password`` is an env lookup.
What k3s-ansible cannot express (a channel, an install-script mirror, scattered air-gap files) is
returned as notes.
"""

from __future__ import annotations

import io
import shlex
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from provisioner.errors import UsageError
from provisioner.importers.ansible import Note
from provisioner.inventory import Host, Inventory, K3sCluster, SSHOptions

DEFAULT_INSTALL_SCRIPT = "https://get.k3s.io"
NODE_NAME_TEMPLATE = "--node-name={{ inventory_hostname }}"
_POLICY = {"strict": "yes", "accept-new": "accept-new", "off": "no"}


def export_k3s_ansible(inventory: Inventory, source: str) -> tuple[str, list[Note]]:
    """The k3s-ansible YAML for ``inventory`` and notes on what it could not carry."""
    cluster = inventory.cluster
    if cluster.distribution != "k3s":
        raise UsageError(
            f"{source}: export ansible writes k3s-ansible inventories; a {cluster.distribution} cluster has no "
            "k3s-ansible form (a kubespray export is not implemented)"
        )
    notes: list[Note] = []
    group_vars = CommentedMap()
    group_vars["cluster_context"] = cluster.name
    if cluster.version is not None:
        group_vars["k3s_version"] = cluster.version
    elif cluster.channel is not None:
        notes.append(Note("cluster.channel", source, "k3s-ansible has no channels and needs k3s_version: set it by hand"))
    if cluster.api_endpoint is not None:
        group_vars["api_endpoint"] = cluster.api_endpoint
    group_vars["extra_server_args"] = _args(cluster.server_args + [NODE_NAME_TEMPLATE])
    group_vars["extra_agent_args"] = _args(cluster.agent_args + [NODE_NAME_TEMPLATE])
    if cluster.install_script_url != DEFAULT_INSTALL_SCRIPT:
        notes.append(
            Note("cluster.install_script_url", source, "k3s-ansible downloads the install script from get.k3s.io; not carried over")
        )
    if cluster.airgap is not None:
        folder = _airgap_dir(inventory)
        if folder is None:
            notes.append(
                Note(
                    "cluster.airgap",
                    source,
                    "k3s-ansible's airgap_dir needs k3s, k3s-install.sh and k3s-airgap-images-* "
                    "in one folder: put them together and set airgap_dir by hand",
                )
            )
        else:
            group_vars["airgap_dir"] = str(folder)
    group_vars.update(_ssh_vars(inventory.ssh, None))

    server_hosts, agent_hosts = CommentedMap(), CommentedMap()
    for host in inventory.hosts:
        variables = CommentedMap()
        variables["ansible_host"] = host.address
        args = cluster.server_args if host.role == "server" else cluster.agent_args
        own = [f"--node-name={host.name}"]
        if host.node_ip is not None:
            own.append(f"--node-ip={host.node_ip}")
        if host.flannel_iface is not None:
            own.append(f"--flannel-iface={host.flannel_iface}")
        if len(own) > 1:
            variables[f"extra_{host.role}_args"] = _args(args + own)
        if host.ssh is not None:
            variables.update(_ssh_overrides(inventory, host))
        (server_hosts if host.role == "server" else agent_hosts)[host.name] = variables

    children = CommentedMap()
    children["server"] = CommentedMap(hosts=server_hosts)
    if agent_hosts:
        children["agent"] = CommentedMap(hosts=agent_hosts)
    k3s_cluster = CommentedMap()
    k3s_cluster["children"] = children
    k3s_cluster["vars"] = group_vars
    data = CommentedMap(k3s_cluster=k3s_cluster)
    data.yaml_set_start_comment(
        f"Written by `provisioner export ansible` from {source}: an inventory for k3s-io/k3s-ansible.\n"
        "Back to the provisioner: provisioner import k3s-ansible THIS_FILE"
    )
    yaml = YAML()
    yaml.width = 4096
    out = io.StringIO()
    out.write("---\n")
    yaml.dump(data, out)
    return out.getvalue(), notes


def _args(flags: list[str]) -> str:
    return " ".join(flag if flag == NODE_NAME_TEMPLATE else shlex.quote(flag) for flag in flags)


def _airgap_dir(inventory: Inventory) -> Path | None:
    """The folder holding the air-gap files under k3s-ansible's names, or None."""
    cluster = inventory.cluster
    airgap = cluster.airgap if isinstance(cluster, K3sCluster) else None
    assert airgap is not None
    folder = airgap.k3s_binary.parent
    ok = (
        airgap.k3s_binary.name in ("k3s", "k3s-arm64", "k3s-armhf")
        and airgap.install_script == folder / "k3s-install.sh"
        and (airgap.images is None or (airgap.images.parent == folder and airgap.images.name.startswith("k3s-airgap-images-")))
    )
    return folder if ok else None


def _ssh_vars(ssh: SSHOptions, base: SSHOptions | None) -> dict[str, Any]:
    """Ansible connection variables for ``ssh``; with ``base``, only those that differ from it."""
    out: dict[str, Any] = {}
    fields = {
        "ansible_user": ssh.user,
        "ansible_port": ssh.port,
        "ansible_ssh_private_key_file": str(ssh.private_key) if ssh.private_key else None,
    }
    if ssh.sudo_password_env is not None:
        fields["ansible_become_password"] = "{{ lookup('env', '%s') }}" % ssh.sudo_password_env
    common = _common_args(ssh)
    fields["ansible_ssh_common_args"] = common or None
    base_fields = _ssh_vars(base, None) if base is not None else {}
    for key, value in fields.items():
        if value is not None and base_fields.get(key) != value:
            out[key] = value
    if base is not None and base_fields.get("ansible_ssh_common_args") and not common:
        out["ansible_ssh_common_args"] = ""
    return out


def _ssh_overrides(inventory: Inventory, host: Host) -> dict[str, Any]:
    return _ssh_vars(inventory.ssh_for(host), inventory.ssh)


def _common_args(ssh: SSHOptions) -> str:
    options = []
    if ssh.host_key_policy is not None:
        options.append(f"StrictHostKeyChecking={_POLICY[ssh.host_key_policy]}")
    if ssh.known_hosts is not None:
        options.append(f"UserKnownHostsFile={ssh.known_hosts}")
    if ssh.proxy_jump is not None:
        options.append(f"ProxyJump={ssh.proxy_jump}")
    if ssh.connect_timeout is not None:
        options.append(f"ConnectTimeout={ssh.connect_timeout}")
    return " ".join(f"-o {shlex.quote(option)}" for option in options)
