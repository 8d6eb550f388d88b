"""The inventory: one validated model of the cluster, its SSH settings and its hosts.

``load_inventory`` reads the YAML file, validates it with pydantic and with the checks that span
fields, and raises one ``InventoryError`` listing every problem with file, line and field path.
Nothing is contacted before the inventory is valid.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from provisioner.errors import InventoryError, Problem
from provisioner.flags import flags_to_config

HostKeyPolicy = Literal["accept-new", "strict", "off"]
Role = Literal["server", "agent"]

_ROLE_ALIASES = {
    "server": "server",
    "controller": "server",
    "control-plane": "server",
    "master": "server",
    "agent": "agent",
    "worker": "agent",
    "node": "agent",
}
_DNS_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_CLUSTER_NAME = re.compile(r"^[a-z0-9]([-a-z0-9_.]{0,61}[a-z0-9])?$")
_IFACE = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_K3S_VERSION = re.compile(r"^v\d+\.\d+\.\d+(-rc\d+)?\+k3s\d+$")
_K3S_CHANNEL = re.compile(r"^(stable|latest|testing|v\d+\.\d+)$")
_KUBEADM_VERSION = re.compile(r"^v?\d+\.\d+(\.\d+)?$")
_FLANNEL_VERSION = re.compile(r"^v\d+\.\d+\.\d+$")


def is_ip(value: str) -> bool:
    """True for an IPv4 or IPv6 address."""
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


def is_address(value: str) -> bool:
    """True for an IPv4/IPv6 address or a syntactically valid DNS name."""
    if is_ip(value):
        return True
    if len(value) > 253 or not value:
        return False
    labels = value.rstrip(".").split(".")
    if all(label.isdigit() for label in labels):
        return False  # looks like a broken IPv4 address, not a name
    return all(_DNS_LABEL.match(label) for label in labels)


def url_host(address: str) -> str:
    """``address`` as it goes into a URL: IPv6 literals in brackets."""
    return f"[{address}]" if is_ip(address) and ":" in address else address


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _path(value: object, info: ValidationInfo) -> Path | None:
    """Expand ``~`` and make a relative path relative to the inventory file's folder."""
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise ValueError("must be a file path")
    path = Path(os.path.expanduser(os.fspath(value)))
    base = (info.context or {}).get("base_dir")
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    return path


def _address(value: object) -> str:
    if not isinstance(value, str) or not is_address(value):
        raise ValueError(f"{value!r} is not an IP address or DNS name")
    return value


class Airgap(_Model):
    """Files uploaded instead of downloaded: the k3s binary, the install script, optional images."""

    k3s_binary: Path
    install_script: Path
    images: Path | None = None

    _paths = field_validator("k3s_binary", "install_script", "images", mode="before")(_path)


class Cluster(_Model):
    """Cluster-wide options."""

    name: str
    distribution: Literal["k3s", "kubeadm"] = "k3s"
    version: str | None = None
    channel: str | None = None
    api_endpoint: str | None = None
    server_args: list[str] = Field(default_factory=list)
    agent_args: list[str] = Field(default_factory=list)
    install_script_url: str = "https://get.k3s.io"
    airgap: Airgap | None = None
    # kubeadm only
    pod_network_cidr: str = "10.244.0.0/16"
    service_cidr: str | None = None
    flannel_version: str = "v0.26.1"
    package_repo: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _CLUSTER_NAME.match(value):
            raise ValueError(
                "must be lowercase letters, digits, '-', '_' or '.', starting and ending with a "
                "letter or digit (it names the kubeconfig cluster, user and context)"
            )
        return value

    @field_validator("version", "channel", mode="before")
    @classmethod
    def _not_a_number(cls, value: object) -> object:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise ValueError(
                f"write it as a quoted string (YAML reads {value!r} as a number, "
                "so 1.30 would become 1.3)"
            )
        return value

    @field_validator("api_endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        return None if value is None else _address(value)

    @field_validator("install_script_url", "package_repo")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value

    @field_validator("pod_network_cidr", "service_cidr")
    @classmethod
    def _cidr(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ipaddress.ip_network(value, strict=True)
            except ValueError as error:
                raise ValueError(f"{value!r} is not a network in CIDR form ({error})") from None
        return value


class SSHOptions(_Model):
    """SSH settings for a host. Unset fields fall back to ``~/.ssh/config``, then to defaults."""

    user: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    private_key: Path | None = None
    host_key_policy: HostKeyPolicy | None = None
    known_hosts: Path | None = None
    sudo_password_env: str | None = None
    proxy_jump: str | None = None
    connect_timeout: int | None = Field(default=None, ge=1, le=600)
    dead_peer_timeout: int | None = Field(default=None, ge=3, le=600)  # a silent connection is lost after this
    command_timeout: int | None = Field(default=None, ge=1, le=86400)  # for commands given no limit of their own

    _paths = field_validator("private_key", "known_hosts", mode="before")(_path)

    @field_validator("sudo_password_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError(f"{value!r} is not an environment variable name")
        return value

    @field_validator("proxy_jump")
    @classmethod
    def _jump(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host = value.rsplit("@", 1)[-1]
        if host.startswith("["):
            host = host[1:].split("]", 1)[0]
        elif host.count(":") == 1:
            host, port = host.split(":")
            if not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{value!r}: port must be a number 1-65535")
        if not is_address(host):
            raise ValueError(f"{value!r} is not [user@]host[:port]")
        return value

    def merged(self, override: SSHOptions | None) -> SSHOptions:
        """These options with every field that ``override`` sets replaced by its value."""
        if override is None:
            return self
        return self.model_copy(update=override.model_dump(exclude_none=True))


class Host(_Model):
    """One machine: its node name, how to reach it, its role and per-host settings."""

    name: str
    address: str
    role: Role
    node_ip: str | None = None
    flannel_iface: str | None = None
    ssh: SSHOptions | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NODE_NAME.match(value):
            hint = " (lowercase it)" if _NODE_NAME.match(value.lower()) else ""
            raise ValueError(
                f"{value!r} is not a valid node name: lowercase letters, digits, '-' and '.', "
                f"starting and ending with a letter or digit{hint}"
            )
        return value

    @field_validator("address")
    @classmethod
    def _addr(cls, value: str) -> str:
        return _address(value)

    @field_validator("role", mode="before")
    @classmethod
    def _role(cls, value: object) -> object:
        if isinstance(value, str) and value.lower() in _ROLE_ALIASES:
            return _ROLE_ALIASES[value.lower()]
        return value

    @field_validator("node_ip")
    @classmethod
    def _node_ip(cls, value: str | None) -> str | None:
        if value is not None and not is_ip(value):
            raise ValueError(f"{value!r} is not an IP address")
        return value

    @field_validator("flannel_iface")
    @classmethod
    def _iface(cls, value: str | None) -> str | None:
        if value is not None and not _IFACE.match(value):
            raise ValueError(f"{value!r} is not a network interface name")
        return value


class Inventory(_Model):
    """The whole inventory file."""

    cluster: Cluster
    ssh: SSHOptions = Field(default_factory=SSHOptions)
    hosts: list[Host] = Field(min_length=1)

    @property
    def servers(self) -> list[Host]:
        return [h for h in self.hosts if h.role == "server"]

    @property
    def agents(self) -> list[Host]:
        return [h for h in self.hosts if h.role == "agent"]

    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    def ssh_for(self, host: Host) -> SSHOptions:
        """The SSH options for ``host``: the file's ``ssh`` with the host's own overrides."""
        return self.ssh.merged(host.ssh)

    @property
    def api_address(self) -> str:
        """The address clients use for the API: ``api_endpoint`` or the first server's address."""
        return self.cluster.api_endpoint or self.servers[0].address


# --- loading -------------------------------------------------------------------------------


def load_inventory(path: str | os.PathLike[str], *, check_files: bool = True) -> Inventory:
    """Read, parse and validate an inventory file, or raise ``InventoryError`` listing problems.

    ``check_files`` also checks that key and airgap files exist and are readable.
    """
    file = Path(path)
    shown = str(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        raise InventoryError([Problem("", f"cannot read inventory: {error.strerror}", shown)])
    return parse_inventory(text, shown, base_dir=file.resolve().parent, check_files=check_files)


def parse_inventory(
    text: str, source: str = "<inventory>", *, base_dir: Path | None = None, check_files: bool = True
) -> Inventory:
    """Validate inventory YAML text; see ``load_inventory``."""
    if not re.search(r"^cluster:", text, re.MULTILINE):
        _refuse_ansible_inventory(text, source)
    yaml = YAML(typ="rt")
    try:
        data = yaml.load(text)
    except MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else None
        reason = error.problem or error.context or "invalid YAML"
        raise InventoryError([Problem("", f"YAML syntax error: {reason}", source, line)]) from None
    except YAMLError as error:
        raise InventoryError([Problem("", f"YAML syntax error: {error}", source)]) from None
    if not isinstance(data, dict):
        raise InventoryError([Problem("", "the inventory must be a YAML mapping", source, 1)])

    try:
        inventory = Inventory.model_validate(
            _plain(data), context={"base_dir": base_dir or Path.cwd()}
        )
    except ValidationError as error:
        problems = [_problem_from_pydantic(e, data, source) for e in error.errors()]
        raise InventoryError(_unique(problems)) from None

    problems = semantic_problems(inventory, data, source)
    if check_files:
        problems += file_problems(inventory, data, source)
    if problems:
        raise InventoryError(problems)
    return inventory


def _refuse_ansible_inventory(text: str, source: str) -> None:
    """An Ansible inventory given as ``-i``: one line naming the import command that converts it."""
    from provisioner.importers.sniff import ansible_hint

    hint = ansible_hint(text, source)
    if hint is not None:
        raise InventoryError([Problem("", hint, source)])


def semantic_problems(inventory: Inventory, data: Any, source: str) -> list[Problem]:
    """Checks that span fields: duplicates, roles, version/channel, flags."""
    problems: list[Problem] = []

    def add(path: tuple[Any, ...], message: str) -> None:
        problems.append(Problem(_dotted(path), message, source, _line_of(data, path)))

    seen_names: dict[str, int] = {}
    seen_addresses: dict[tuple[str, int | None], int] = {}
    for index, host in enumerate(inventory.hosts):
        if host.name in seen_names:
            add(("hosts", index, "name"), f"duplicate name {host.name!r} (also hosts[{seen_names[host.name]}])")
        seen_names.setdefault(host.name, index)
        key = (host.address.lower(), inventory.ssh_for(host).port)
        if key in seen_addresses:
            add(
                ("hosts", index, "address"),
                f"duplicate address {host.address!r} (also hosts[{seen_addresses[key]}])",
            )
        seen_addresses.setdefault(key, index)
    if not inventory.servers:
        add(("hosts",), "no host has role server; at least one is needed")

    cluster = inventory.cluster
    if cluster.version is not None and cluster.channel is not None:
        add(("cluster", "channel"), "set either cluster.version or cluster.channel, not both")
    if cluster.distribution == "k3s":
        if cluster.version is not None and not _K3S_VERSION.match(cluster.version):
            add(("cluster", "version"), f"{cluster.version!r} is not a k3s version like v1.31.4+k3s1")
        if cluster.channel is not None and not _K3S_CHANNEL.match(cluster.channel):
            add(("cluster", "channel"), f"{cluster.channel!r} is not a k3s channel (stable, latest, testing or v1.31)")
        if cluster.airgap is not None and cluster.version is None:
            add(("cluster", "version"), "airgap installs need cluster.version: the version of the uploaded binary")
        for field in ("server_args", "agent_args"):
            _, flag_problems = flags_to_config(getattr(cluster, field))
            for message in flag_problems:
                index = int(message[1 : message.index("]")])
                add(("cluster", field, index), message.split("] ", 1)[1])
    else:
        if cluster.version is None:
            add(("cluster", "version"), "kubeadm clusters need cluster.version, e.g. \"1.31\" (newest patch) or \"1.31.4\"")
        if cluster.channel is not None:
            add(("cluster", "channel"), "kubeadm clusters take cluster.version (e.g. \"1.31\"), not a channel")
        if cluster.version is not None and not _KUBEADM_VERSION.match(cluster.version):
            add(("cluster", "version"), f"{cluster.version!r} is not a Kubernetes version like \"1.31\" or \"1.31.4\"")
        if not _FLANNEL_VERSION.match(cluster.flannel_version):
            add(("cluster", "flannel_version"), f"{cluster.flannel_version!r} is not a version like v0.26.1")
        if cluster.airgap is not None:
            add(("cluster", "airgap"), "airgap uploads are supported for k3s only")
        for field in ("server_args", "agent_args"):
            if getattr(cluster, field):
                add(("cluster", field), "k3s flags do not apply to kubeadm clusters")

    for index, host in enumerate(inventory.hosts):
        ssh = inventory.ssh_for(host)
        if ssh.sudo_password_env and ssh.sudo_password_env not in os.environ:
            path = ("hosts", index, "ssh", "sudo_password_env") if host.ssh and host.ssh.sudo_password_env else ("ssh", "sudo_password_env")
            add(path, f"environment variable {ssh.sudo_password_env} is not set")
    return _unique(problems)


def file_problems(inventory: Inventory, data: Any, source: str) -> list[Problem]:
    """Key and airgap files that are missing or unreadable."""
    problems: list[Problem] = []
    checks: list[tuple[tuple[Any, ...], Path | None, bool]] = [
        (("ssh", "private_key"), inventory.ssh.private_key, True),
    ]
    for index, host in enumerate(inventory.hosts):
        if host.ssh is not None:
            checks.append((("hosts", index, "ssh", "private_key"), host.ssh.private_key, True))
    airgap = inventory.cluster.airgap
    if airgap is not None:
        checks += [
            (("cluster", "airgap", "k3s_binary"), airgap.k3s_binary, False),
            (("cluster", "airgap", "install_script"), airgap.install_script, False),
            (("cluster", "airgap", "images"), airgap.images, False),
        ]
    for path, file, is_key in checks:
        if file is None:
            continue
        reason = _unreadable(file)
        if reason is None and is_key:
            reason = _not_a_key(file)
        if reason:
            problems.append(Problem(_dotted(path), f"{file}: {reason}", source, _line_of(data, path)))
    return problems


def _unreadable(file: Path) -> str | None:
    if not file.exists():
        return "no such file"
    if not file.is_file():
        return "not a regular file"
    if not os.access(file, os.R_OK):
        return "not readable"
    return None


def _not_a_key(file: Path) -> str | None:
    head = file.read_bytes()[:100]
    if b"PRIVATE KEY" not in head:
        if head.startswith(b"ssh-") or head.startswith(b"ecdsa-"):
            return "this is a public key; point at the private key"
        return "not an SSH private key"
    return None


def _problem_from_pydantic(error: Any, data: Any, source: str) -> Problem:
    loc = tuple(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _known_fields(loc[:-1]), n=1)
        message = "unknown key" + (f" (did you mean {close[0]!r}?)" if close else "")
    elif kind == "missing":
        message = "missing required field"
    elif kind == "literal_error":
        message = f"must be one of {error['ctx']['expected']}, not {error['input']!r}"
    elif kind == "value_error":
        message = str(error["ctx"]["error"])
    elif kind in ("too_short",) and loc == ("hosts",):
        message = "at least one host is needed"
    else:
        message = error["msg"][:1].lower() + error["msg"][1:]
    return Problem(_dotted(loc), message, source, _line_of(data, loc))


def _known_fields(loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = Inventory
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        annotation = field.annotation
        for candidate in (Cluster, SSHOptions, Host, Airgap):
            if candidate is annotation or candidate in getattr(annotation, "__args__", ()):
                model = candidate
                break
        else:
            return []
    return list(model.model_fields)


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _line_of(data: Any, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the deepest part of ``loc`` present in the round-trip YAML ``data``."""
    line: int | None = None
    node = data
    for part in loc:
        try:
            if isinstance(node, CommentedMap) and part in node:
                line = node.lc.key(part)[0] + 1
                node = node[part]
            elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
                line = node.lc.item(part)[0] + 1
                node = node[part]
            else:
                break
        except (KeyError, IndexError, TypeError, AttributeError):
            break
    return line


def _plain(node: Any) -> Any:
    """Round-trip YAML nodes as plain dicts, lists and scalars for pydantic."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, str):
        return str(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return node


def _unique(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[str, str]] = set()
    out = []
    for problem in problems:
        key = (problem.field, problem.message)
        if key not in seen:
            seen.add(key)
            out.append(problem)
    return out
