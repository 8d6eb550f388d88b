"""``provisioner import k3s-ansible``: a k3s-ansible inventory (k3s-io/k3s-ansible) as a native one.

Groups ``server`` and ``agent`` (older releases: ``master`` and ``node``) give the roles, the first
server first. ``k3s_version`` → ``cluster.version``; ``api_endpoint`` kept (its sample template,
the first server, is the provisioner's default); ``extra_server_args``/``extra_agent_args`` and
``server_config_yaml``/``agent_config_yaml`` → ``server_args``/``agent_args``, with ``--node-ip``,
``--flannel-iface`` and ``--node-name`` moved onto the host; ``airgap_dir`` → ``cluster.airgap``;
``cluster_context`` → ``cluster.name``; ``token`` dropped (the provisioner reads the real one).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from provisioner.flags import MANAGED, flags_to_config
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
    host_address,
    host_ssh,
    node_name,
    sourced,
    split_ssh,
    validate,
)
from provisioner.importers.render import render
from provisioner.inventory import is_address, is_ip

_K3S_VERSION = re.compile(r"^v\d+\.\d+\.\d+(-rc\d+)?\+k3s\d+$")
_FIRST_SERVER_TEMPLATE = re.compile(r"""groups\[\s*['"](server|master)['"]\s*\]\s*\[\s*0\s*\]""")
_INVENTORY_HOSTNAME = re.compile(r"\{\{\s*inventory_hostname\s*\}\}")
_HOST_FLAGS = {"node-ip": "node_ip", "flannel-iface": "flannel_iface", "node-name": "name"}
SERVER_GROUPS = ("server", "master")
AGENT_GROUPS = ("agent", "node")

# k3s-ansible variables with no counterpart here, and what to do instead.
UNSUPPORTED = {
    "api_port": "the API port is 6443 here",
    "extra_install_envs": "install-script environment variables are not supported",
    "extra_service_envs": "service environment variables are not supported",
    "k3s_server_location": "the provisioner relies on the default data dir /var/lib/rancher/k3s",
    "systemd_dir": "the install script's systemd directory is used",
    "user_kubectl": "the provisioner writes the kubeconfig on this machine (provisioner kubeconfig)",
    "kubeconfig": "use `provisioner kubeconfig --out PATH` (or --merge)",
    "manage_firewall": "the provisioner does not manage firewalls",
    "extra_manifests": "apply manifests with kubectl after `up`",
    "registries_config_yaml": "private registries are not configured by the provisioner",
    "k3s_wait_ready": "`up` always waits until every node is Ready",
    "k3s_server_wait_etcd_voters": "servers join one at a time and each is checked before the next",
    "use_external_database": "only embedded etcd (several servers) or the default datastore are supported",
    "k3s_become": "the provisioner uses sudo whenever the SSH user is not root",
}


def import_k3s_ansible(path: Path, *, name: str | None = None) -> ImportResult:
    """Read the k3s-ansible inventory at ``path``; return the native YAML and the notes.

    Raises ``InventoryError`` (exit 2) when it is not a k3s-ansible inventory or the result would
    not load.
    """
    inventory = load_ansible_inventory(path)
    notes = list(inventory.notes)
    server_group = next((g for g in SERVER_GROUPS if inventory.members(g)), None)
    if server_group is None:
        hint = " (it has kube_control_plane: try `provisioner import kubespray`)" if inventory.members("kube_control_plane") else ""
        raise not_an_inventory(inventory.label, f"not a k3s-ansible inventory: no hosts in a 'server' group{hint}")
    servers = inventory.members(server_group)
    agent_group = next((g for g in AGENT_GROUPS if inventory.members(g)), "agent")
    agents = [h for h in inventory.members(agent_group) if h not in servers]
    _note_left_out(inventory, servers + agents, notes)

    resolved = Resolved(inventory, servers + agents, notes)
    draft = Draft("k3s-ansible", inventory.label)
    draft.cluster["name"] = cluster_name(name, resolved.cluster("cluster_context"), "k3s-ansible", resolved)
    draft.cluster["distribution"] = Sourced("k3s")
    _version(resolved, draft)
    _api_endpoint(resolved, draft, servers)

    passwords = distinct_passwords(resolved)
    per_host_ssh: dict[str, dict[str, Sourced]] = {}
    role_flags: dict[str, list[tuple[str, list[str], list[Var]]]] = {"server": [], "agent": []}
    names: dict[str, str] = {}
    for host in servers + agents:
        role = "server" if host in servers else "agent"
        where = str(inventory.host_origin[host])
        flags, flag_vars = _host_flags(resolved, host, role)
        moved, flags = _take_host_flags(resolved, flags, flag_vars)
        draft_name = Sourced(node_name(host, notes, where), f"host in group {server_group if role == 'server' else agent_group}")
        given = moved.pop("name", None)
        if given is not None and given.value != host:
            draft_name = Sourced(node_name(str(given.value), notes, given.source or where), given.source)
        elif given is None and is_ip(host):
            notes.append(
                Note(
                    host,
                    where,
                    "named by its address: k3s-ansible let k3s name the node after the machine's "
                    "hostname, the provisioner names it after the inventory; on an existing cluster, rename the host "
                    "to its current node name before `up`",
                )
            )
        if draft_name.value in names.values():
            raise not_an_inventory(inventory.label, f"two hosts would both be node {draft_name.value!r}; rename one")
        names[host] = draft_name.value
        draft_host = DraftHost(
            name=draft_name,
            address=host_address(resolved, host),
            role=Sourced(role),
            node_ip=moved.get("node_ip"),
            flannel_iface=moved.get("flannel_iface"),
        )
        draft.hosts.append(draft_host)
        per_host_ssh[draft_name.value] = host_ssh(resolved, host, passwords)
        role_flags[role].append((host, flags, flag_vars))
        if (var := resolved.get(host, "token", "agent_token")) is not None:
            resolved.note(var, "dropped: the provisioner reads the join token from the first server")
    if not agents:
        for name in ("extra_agent_args", "agent_config_yaml"):
            if (var := resolved.cluster(name)) is not None:
                resolved.note(var, "there are no agents; not carried over")
    for role, field in (("server", "server_args"), ("agent", "agent_args")):
        chosen = _agreed_flags(resolved, role_flags[role])
        if chosen is not None:
            draft.cluster[field] = chosen
    _airgap(resolved, draft)
    split_ssh(draft, per_host_ssh)
    resolved.report_leftovers(UNSUPPORTED)

    text = render(draft)
    validate(text, inventory.label)
    return ImportResult(text, notes)


def _note_left_out(inventory: AnsibleInventory, imported: list[str], notes: list[Note]) -> None:
    for host in inventory.hosts:
        if host not in imported:
            notes.append(Note(host, str(inventory.host_origin[host]), "in neither the server nor the agent group; not imported"))


def _version(resolved: Resolved, draft: Draft) -> None:
    var = resolved.usable(resolved.cluster("k3s_version"), "cluster.version")
    if var is None:
        return
    value = str(var.value)
    if _K3S_VERSION.match(value):
        draft.cluster["version"] = sourced(value, var)
    elif re.match(r"^v\d+\.\d+$", value) or value in ("stable", "latest", "testing"):
        draft.cluster["channel"] = sourced(value, var)
    else:
        resolved.note(var, f"{value!r} is not a k3s version like v1.31.4+k3s1; set cluster.version by hand")


def _api_endpoint(resolved: Resolved, draft: Draft, servers: list[str]) -> None:
    var = resolved.cluster("api_endpoint")
    if var is None:
        return
    value = var.value
    if isinstance(value, str) and "{{" in value and _FIRST_SERVER_TEMPLATE.search(value):
        resolved.note(var, "names the first server, which is the provisioner's default API address: left out")
        return
    if resolved.usable(var, "cluster.api_endpoint") is None:
        return
    if not is_address(str(value)):
        resolved.note(var, f"{value!r} is not an IP address or DNS name; not carried over")
        return
    draft.cluster["api_endpoint"] = sourced(str(value), var)


def split_flags(text: str) -> list[str]:
    """A k3s argument string as flags: ``--a b --c=d -e`` → ``--a=b``, ``--c=d``, ``--e``."""
    words = shlex.split(text)
    out: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        if word.startswith("-") and not word.startswith("--") and len(word) > 2:
            word = "-" + word  # k3s takes single-dash long flags too
        if word.startswith("--") and "=" not in word and index + 1 < len(words) and not words[index + 1].startswith("-"):
            out.append(f"{word}={words[index + 1]}")
            index += 2
            continue
        out.append(word)
        index += 1
    return out


def _config_flags(resolved: Resolved, var: Var) -> list[str]:
    """``server_config_yaml``'s entries as flags (``disable: [traefik]`` → ``--disable=traefik``)."""
    try:
        data = YAML(typ="safe").load(str(var.value))
    except YAMLError:
        resolved.note(var, "is not valid YAML; not carried over")
        return []
    if data is None:
        return []
    if not isinstance(data, dict):
        resolved.note(var, "is not a mapping of k3s config keys; not carried over")
        return []
    flags: list[str] = []
    for key, value in data.items():
        items = value if isinstance(value, list) else [value]
        for item in items:
            if item is True:
                flags.append(f"--{key}")
            elif item is False or item is None:
                resolved.note(var, f"{key}: {item!r} is the default; left out")
            elif isinstance(item, (str, int, float)):
                flags.append(f"--{key}={item}")
            else:
                resolved.note(var, f"{key} is not a plain value; not carried over")
    return flags


def _host_flags(resolved: Resolved, host: str, role: str) -> tuple[list[str], list[Var]]:
    """The host's k3s flags from ``extra_<role>_args`` and ``<role>_config_yaml``, and those variables."""
    flags: list[str] = []
    used: list[Var] = []
    resolved.get(host, "extra_server_args", "extra_agent_args", "server_config_yaml", "agent_config_yaml")
    var = resolved.get(host, f"extra_{role}_args")
    if var is not None and isinstance(var.value, str):  # the one magic variable worth knowing here
        var = Var(var.name, _INVENTORY_HOSTNAME.sub(host, var.value), var.origin)
    if (var := resolved.usable(var, f"cluster.{role}_args")) is not None:
        try:
            flags += split_flags(str(var.value))
            used.append(var)
        except ValueError:
            resolved.note(var, "cannot be split into arguments (unbalanced quotes); not carried over")
    if (var := resolved.usable(resolved.get(host, f"{role}_config_yaml"), f"cluster.{role}_args")) is not None:
        flags += _config_flags(resolved, var)
        used.append(var)
    return flags, used


def _take_host_flags(resolved: Resolved, flags: list[str], flag_vars: list[Var]) -> tuple[dict[str, Sourced], list[str]]:
    """Move --node-ip/--flannel-iface/--node-name onto the host; drop flags the provisioner manages."""
    moved: dict[str, Sourced] = {}
    kept: list[str] = []
    where = flag_vars[0] if flag_vars else None
    for flag in flags:
        name, _, value = flag[2:].partition("=") if flag.startswith("--") else (flag, "", "")
        if name in _HOST_FLAGS and value:
            moved[_HOST_FLAGS[name]] = sourced(value, where)
        elif name in MANAGED and where is not None:
            resolved.note(where, f"--{name} left out: {MANAGED[name]}")
        else:
            kept.append(flag)
    if "node_ip" in moved and where is not None and check_ip(resolved, Var(where.name, moved["node_ip"].value, where.origin)) is None:
        moved.pop("node_ip")
    if "name" in moved:
        moved["name"] = Sourced(moved["name"].value, (moved["name"].source or "") + " (--node-name)")
    return moved, kept


def _agreed_flags(resolved: Resolved, entries: list[tuple[str, list[str], list[Var]]]) -> Sourced | None:
    """The flags all hosts of a role share; a note for hosts that differ or flags that are refused."""
    with_flags = [(h, f, v) for h, f, v in entries if f or v]
    if not with_flags:
        return None
    host, flags, variables = with_flags[0]
    for other_host, other_flags, other_vars in entries:
        if other_flags != flags and other_vars:
            resolved.note(
                other_vars[0], f"gives {other_host} other k3s flags than {host}; the provisioner sets them once per role: used {host}'s"
            )
    config_ok: list[str] = []
    for flag in flags:
        _, problems = flags_to_config(config_ok + [flag])
        if problems:
            resolved.note(variables[0], f"{flag!r} left out: {problems[0].split('] ', 1)[-1]}")
        else:
            config_ok.append(flag)
    return sourced(config_ok, *variables)


def _airgap(resolved: Resolved, draft: Draft) -> None:
    var = resolved.usable(resolved.cluster("airgap_dir"), "cluster.airgap")
    if var is None:
        return
    folder = Path(str(var.value)).expanduser()
    if not folder.is_absolute():
        folder = resolved.inventory.path.resolve().parent / folder
    binary = next((folder / n for n in ("k3s", "k3s-arm64", "k3s-armhf") if (folder / n).is_file()), None)
    script = folder / "k3s-install.sh"
    images = sorted(p for p in folder.glob("k3s-airgap-images-*.tar*") if p.is_file()) if folder.is_dir() else []
    if binary is None or not script.is_file():
        missing = ", ".join(n for n, ok in (("k3s", binary is not None), ("k3s-install.sh", script.is_file())) if not ok)
        resolved.note(var, f"{folder} has no {missing}; air-gap files not carried over (add cluster.airgap by hand)")
        return
    if "version" not in draft.cluster:
        resolved.note(var, "air-gap installs need k3s_version (the version of the binary); set cluster.version by hand")
    airgap = {"k3s_binary": str(binary), "install_script": str(script)}
    if images:
        airgap["images"] = str(images[0])
        for extra in images[1:]:
            resolved.note(var, f"{extra.name}: one images archive is uploaded; used {images[0].name}")
    draft.cluster["airgap"] = sourced(airgap, var)
