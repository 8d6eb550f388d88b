"""``provisioner import kubespray``: a kubespray inventory (kubernetes-sigs/kubespray) as a native,
``distribution: kubeadm`` one.

``kube_control_plane`` (older: ``kube-master``, ``kube_master``) → servers; ``kube_node`` → agents
(a host in both is a server: kubespray lets such control-plane nodes run workloads, kubeadm keeps
its control-plane taint — noted); ``etcd`` is noted only (kubeadm runs etcd on the control plane);
a ``bastion`` host becomes ``ssh.proxy_jump``. ``kube_version`` → ``version`` ("1.31.4");
``ip`` → ``node_ip``; ``access_ip`` → the address when ``ansible_host`` is unset;
``kube_pods_subnet``/``kube_service_addresses`` → the CIDRs; ``flannel_interface`` →
``flannel_iface``; ``apiserver_loadbalancer_domain_name`` or ``loadbalancer_apiserver.address`` →
``api_endpoint``.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from provisioner.importers.ansible import AnsibleInventory, Note, Var, load_ansible_inventory, not_an_inventory
from provisioner.importers.mapping import (
    Draft,
    DraftHost,
    ImportResult,
    Resolved,
    Sourced,
    check_ip,
    cluster_name,
    distinct_passwords,
    folder_name,
    host_address,
    host_ssh,
    node_name,
    sourced,
    split_ssh,
    validate,
)
from provisioner.importers.render import render
from provisioner.inventory import is_address

CONTROL_PLANE_GROUPS = ("kube_control_plane", "kube-master", "kube_master", "kube-controlplane")
NODE_GROUPS = ("kube_node", "kube-node")
_VERSION = re.compile(r"^v?(\d+\.\d+(\.\d+)?)$")
_IFACE = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")

UNSUPPORTED = {
    "cluster_name": "kubespray's cluster DNS domain; the provisioner keeps kubeadm's cluster.local",
    "etcd_member_name": "kubeadm names etcd members after the control-plane nodes",
    "container_manager": "the provisioner installs containerd",
    "kube_proxy_mode": "kube-proxy runs with kubeadm's defaults (iptables)",
    "dns_mode": "CoreDNS as kubeadm installs it",
    "kube_network_node_prefix": "Flannel's default /24 per node",
    "loadbalancer_apiserver_localhost": "nodes reach the API through api_endpoint or the control plane's address",
}


def import_kubespray(path: Path, *, name: str | None = None, version: str | None = None) -> ImportResult:
    """Read the kubespray inventory at ``path``; return the native YAML and the notes.

    Raises ``InventoryError`` (exit 2) when it is not a kubespray inventory or the result would not
    load (e.g. no ``kube_version`` and no ``version`` given).
    """
    inventory = load_ansible_inventory(path)
    notes = list(inventory.notes)
    cp_group = next((g for g in CONTROL_PLANE_GROUPS if inventory.members(g)), None)
    if cp_group is None:
        hint = " (it has a 'server' group: try `provisioner import k3s-ansible`)" if inventory.members("server") else ""
        raise not_an_inventory(inventory.label, f"not a kubespray inventory: no hosts in a 'kube_control_plane' group{hint}")
    servers = inventory.members(cp_group)
    node_group = next((g for g in NODE_GROUPS if inventory.members(g)), "kube_node")
    nodes = inventory.members(node_group)
    agents = [h for h in nodes if h not in servers]
    bastions = inventory.members("bastion")
    _note_groups(inventory, servers, agents, bastions, nodes, cp_group, notes)

    resolved = Resolved(inventory, servers + agents, notes)
    draft = Draft("kubespray", inventory.label)
    draft.cluster["name"] = cluster_name(name, None, folder_name(inventory, "kubespray"), resolved)
    draft.cluster["distribution"] = Sourced("kubeadm")
    _version(resolved, draft, version)
    _network(resolved, draft)
    _api_endpoint(resolved, draft)

    passwords = distinct_passwords(resolved)
    per_host_ssh: dict[str, dict[str, Sourced]] = {}
    for host in servers + agents:
        role = "server" if host in servers else "agent"
        where = str(inventory.host_origin[host])
        draft_name = Sourced(node_name(host, notes, where), f"host in group {cp_group if role == 'server' else node_group}")
        if any(h.name.value == draft_name.value for h in draft.hosts):
            raise not_an_inventory(inventory.label, f"two hosts would both be node {draft_name.value!r}; rename one")
        ip = check_ip(resolved, resolved.usable(resolved.get(host, "ip"), "the host's node_ip"))
        access_ip = resolved.usable(resolved.get(host, "access_ip"), "the host's address")
        address = host_address(resolved, host, fallback=access_ip)
        if access_ip is not None and address.value != access_ip.value:
            resolved.note(access_ip, "not used: the address comes from ansible_host")
        draft_host = DraftHost(name=draft_name, address=address, role=Sourced(role))
        if ip is not None:
            draft_host.node_ip = sourced(str(ip.value), ip)
        iface = resolved.usable(resolved.get(host, "flannel_interface"), "the host's flannel_iface")
        if iface is not None and _IFACE.match(str(iface.value)):
            draft_host.flannel_iface = sourced(str(iface.value), iface)
        elif iface is not None:
            resolved.note(iface, f"{iface.value!r} is not a network interface name; not carried over")
        draft.hosts.append(draft_host)
        per_host_ssh[draft_name.value] = host_ssh(resolved, host, passwords)
    split_ssh(draft, per_host_ssh)
    if bastions:
        _bastion(inventory, bastions[0], draft, notes)
    if len(servers) > 1:
        notes.append(
            Note(
                cp_group,
                inventory.label,
                f"{len(servers)} control-plane hosts: the provisioner's kubeadm supports one "
                "control plane for now, so `up` refuses this inventory until all but one are agents",
            )
        )
    resolved.report_leftovers(UNSUPPORTED)

    text = render(draft)
    validate(text, inventory.label)
    return ImportResult(text, notes)


def _note_groups(
    inventory: AnsibleInventory,
    servers: list[str],
    agents: list[str],
    bastions: list[str],
    nodes: list[str],
    cp_group: str,
    notes: list[Note],
) -> None:
    label = inventory.label
    for host in servers:
        if host in nodes:
            notes.append(
                Note(
                    host,
                    str(inventory.host_origin[host]),
                    f"in {cp_group} and kube_node: imported as a server; kubespray let "
                    "it run workloads, kubeadm keeps the control-plane taint (remove it with kubectl taint if wanted)",
                )
            )
    etcd = inventory.members("etcd")
    if etcd:
        notes.append(Note("etcd", label, "group noted only: kubeadm runs etcd on the control-plane host"))
    for group in ("calico_rr", "calico-rr"):
        if inventory.members(group):
            notes.append(Note(group, label, "route reflectors are a Calico feature; the provisioner installs Flannel"))
    imported = set(servers) | set(agents) | set(bastions)
    for host in inventory.hosts:
        if host not in imported:
            notes.append(Note(host, str(inventory.host_origin[host]), f"in neither {cp_group} nor kube_node; not imported"))


def _version(resolved: Resolved, draft: Draft, wanted: str | None) -> None:
    var = resolved.cluster("kube_version")
    if wanted:
        draft.cluster["version"] = Sourced(wanted.lstrip("v"), "from --version")
        return
    if resolved.usable(var, "cluster.version") is None:
        raise not_an_inventory(
            resolved.inventory.label,
            "kube_version is not set in the inventory or its group_vars "
            "(kubespray takes its release's default): pass --version, e.g. --version 1.31.4",
        )
    assert var is not None
    match = _VERSION.match(str(var.value))
    if not match:
        raise not_an_inventory(var.origin.file, f"kube_version {var.value!r} is not a version like 1.31.4; pass --version", var.origin.line)
    draft.cluster["version"] = sourced(match.group(1), var)


def _network(resolved: Resolved, draft: Draft) -> None:
    plugin = resolved.cluster("kube_network_plugin")
    if plugin is not None and plugin.value != "flannel":
        resolved.note(plugin, f"the provisioner installs Flannel, not {plugin.value}; pods get new addresses on the new cluster")
    for name, field in (("kube_pods_subnet", "pod_network_cidr"), ("kube_service_addresses", "service_cidr")):
        var = resolved.usable(resolved.cluster(name), f"cluster.{field}")
        if var is None:
            continue
        try:
            ipaddress.ip_network(str(var.value), strict=True)
        except ValueError:
            resolved.note(var, f"{var.value!r} is not a network in CIDR form; not carried over")
            continue
        draft.cluster[field] = sourced(str(var.value), var)


def _api_endpoint(resolved: Resolved, draft: Draft) -> None:
    domain = resolved.usable(resolved.cluster("apiserver_loadbalancer_domain_name"), "cluster.api_endpoint")
    balancer = resolved.usable(resolved.cluster("loadbalancer_apiserver"), "cluster.api_endpoint")
    address: str | None = None
    if domain is not None:
        address = str(domain.value)
    elif balancer is not None and isinstance(balancer.value, dict) and balancer.value.get("address"):
        address = str(balancer.value["address"])
    if balancer is not None and isinstance(balancer.value, dict) and str(balancer.value.get("port", 6443)) != "6443":
        resolved.note(balancer, "the load balancer must listen on 6443, the port the provisioner uses")
    source = domain or balancer
    if address is None or source is None:
        return
    if not is_address(address):
        resolved.note(source, f"{address!r} is not an IP address or DNS name; not carried over")
        return
    draft.cluster["api_endpoint"] = sourced(address, *(v for v in (domain, balancer) if v is not None))


def _bastion(inventory: AnsibleInventory, bastion: str, draft: Draft, notes: list[Note]) -> None:
    """The kubespray bastion as ``ssh.proxy_jump``: ``[user@]address[:port]``."""
    variables = inventory.resolve(bastion)
    host = variables.get("ansible_host") or variables.get("ansible_ssh_host")
    user = variables.get("ansible_user") or variables.get("ansible_ssh_user")
    port = variables.get("ansible_port") or variables.get("ansible_ssh_port")
    address = str(host.value) if host is not None else bastion
    jump = (f"{user.value}@" if user is not None else "") + address + (f":{port.value}" if port is not None else "")
    used: list[Var | None] = [host, user, port]
    if "proxy_jump" not in draft.ssh:
        draft.ssh["proxy_jump"] = sourced(jump, *used)
    for var in variables.values():
        if var not in used and var.origin.scope in (f"host {bastion}", "group bastion"):
            notes.append(Note(var.name, str(var.origin), f"set on the bastion {bastion}; only its address, user and port are used"))
