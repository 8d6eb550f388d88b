"""The inventory: one validated model of the cluster, its SSH settings and its hosts.

``load_inventory`` reads the YAML file within bounds (``yamlload``), refuses control characters
in any string, validates it with pydantic -- the ``cluster`` section is one model per distribution,
chosen by ``cluster.distribution`` -- and with the checks that span fields, and raises one
``InventoryError`` listing every problem with file, line and field path. Nothing is contacted
before the inventory is valid.
"""

from __future__ import annotations

import datetime
import difflib
import ipaddress
import os
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictInt,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from provisioner.errors import InventoryError, Problem, is_unsafe_char
from provisioner.flags import flags_to_config
from provisioner.yamlload import DEFAULT_LIMITS, Limits, decode, load_yaml, read_limited

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
_USER = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._@-]{0,63}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_K3S_VERSION = re.compile(r"^v\d+\.\d+\.\d+(-rc\d+)?\+k3s\d+$")
_K3S_CHANNEL = re.compile(r"^(stable|latest|testing|v\d+\.\d+)$")
_KUBEADM_VERSION = re.compile(r"^v?\d+\.\d+(\.\d+)?$")
_FLANNEL_VERSION = re.compile(r"^v\d+\.\d+\.\d+$")
# Characters a URL in the inventory may hold: no whitespace, quotes or shell metacharacters.
_URL_CHARS = re.compile(r"^[A-Za-z0-9._~:/?=%@+,\[\]-]+$")


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
        raise ValueError(f"{_shown(value)} is not an IP address or DNS name")
    return value


def _shown(value: object, limit: int = 60) -> str:
    """``value`` as it appears in a message: quoted, escaped, and cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 2] + "…" + text[0]


def _quoted_version(value: object) -> object:
    """Refuse a version YAML read as a number: ``1.30`` would silently become ``1.3``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError(f"write it as a quoted string (YAML reads {value!r} as a number, so 1.30 would become 1.3)")
    return value


def https_url(value: str, *, allow_private_http: bool = False) -> str:
    """``value`` if it is a plain https URL with a host; ``ValueError`` saying what is wrong.

    Refused: other schemes, whitespace, quotes and shell metacharacters, user names and passwords.
    With ``allow_private_http``, ``http://`` is accepted for an IP address in a private or loopback
    network (a local mirror such as the lab's; apt still checks the repository's signatures).
    """
    bad = sorted({c for c in value if not _URL_CHARS.match(c)})
    if bad:
        shown = "".join(bad)
        raise ValueError(f"{_shown(value)} is not a plain URL: it contains {shown!r} (whitespace, quotes and shell characters are refused)")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as error:
        raise ValueError(f"{_shown(value)} is not a URL ({error})") from None
    host = parts.hostname or ""
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{_shown(value)}: no user name or password in the URL (it would be stored and logged)")
    if not host or not is_address(host):
        raise ValueError(f"{_shown(value)} is not a URL with a host, like https://example.com/path")
    if port == 0:
        raise ValueError(f"{_shown(value)}: port must be 1-65535")
    if parts.scheme == "https":
        return value
    if parts.scheme == "http" and allow_private_http and is_ip(host):
        address = ipaddress.ip_address(host)
        if address.is_private or address.is_loopback:
            return value
    hint = " (plain http is accepted only for a private IP address)" if allow_private_http else ""
    raise ValueError(f"{_shown(value)} must be an https:// URL{hint}")


class Airgap(_Model):
    """Files uploaded instead of downloaded: the k3s binary, the install script, optional images."""

    k3s_binary: Path
    install_script: Path
    images: Path | None = None

    _paths = field_validator("k3s_binary", "install_script", "images", mode="before")(_path)


# A located problem found by a cluster model: the field path below ``cluster`` and the message.
ClusterProblem = tuple[tuple[str | int, ...], str]


class ClusterBase(_Model):
    """What every distribution's ``cluster`` section has: its name and the API endpoint.

    Each distribution's model adds its own fields and formats, says which foreign fields get which
    hint (``foreign_hints``) and checks the rules that span its fields in ``problems``.
    """

    name: str
    api_endpoint: str | None = None

    #: Hints for a field that belongs to another distribution, by field name.
    foreign_hints: ClassVar[dict[str, str]] = {}
    #: Hints for a required field that is missing, by field name.
    missing_hints: ClassVar[dict[str, str]] = {}
    #: The version ``vagrant-inventory`` writes when none is given (None: the model's default).
    suggested_version: ClassVar[str | None] = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _CLUSTER_NAME.match(value):
            raise ValueError(
                "must be lowercase letters, digits, '-', '_' or '.', starting and ending with a "
                "letter or digit (it names the kubeconfig cluster, user and context)"
            )
        return value

    @field_validator("api_endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        return None if value is None else _address(value)

    def problems(self) -> list[ClusterProblem]:
        """Rules that span fields of this section; empty when it is consistent."""
        return []

    def server_problems(self, servers: int) -> list[ClusterProblem]:
        """Rules this section must follow for ``servers`` servers (control planes)."""
        return []


class K3sCluster(ClusterBase):
    """``cluster`` for k3s: a version or a channel, k3s flags, the install script or air-gap files."""

    distribution: Literal["k3s"] = "k3s"
    version: str | None = None
    channel: str | None = None
    server_args: list[str] = Field(default_factory=list)
    agent_args: list[str] = Field(default_factory=list)
    install_script_url: str = "https://get.k3s.io"
    airgap: Airgap | None = None
    #: Start the first server with embedded etcd (cluster-init) even while it is the only one, so
    #: servers can be added later; more than one server always gets it.
    embedded_etcd: bool = False

    _not_a_number = field_validator("version", "channel", mode="before")(_quoted_version)

    @field_validator("version")
    @classmethod
    def _version(cls, value: str | None) -> str | None:
        if value is not None and not _K3S_VERSION.match(value):
            raise ValueError(f"{_shown(value)} is not a k3s version like v1.31.4+k3s1")
        return value

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str | None) -> str | None:
        if value is not None and not _K3S_CHANNEL.match(value):
            raise ValueError(f"{_shown(value)} is not a k3s channel (stable, latest, testing or v1.31)")
        return value

    @field_validator("install_script_url")
    @classmethod
    def _script_url(cls, value: str) -> str:
        return https_url(value)

    def problems(self) -> list[ClusterProblem]:
        found: list[ClusterProblem] = []
        if self.version is not None and self.channel is not None:
            found.append((("channel",), "set either cluster.version or cluster.channel, not both"))
        if self.airgap is not None and self.version is None:
            found.append((("version",), "airgap installs need cluster.version: the version of the uploaded binary"))
        for field in ("server_args", "agent_args"):
            _, flag_problems = flags_to_config(getattr(self, field))
            for message in flag_problems:
                index = int(message[1 : message.index("]")])
                found.append(((field, index), message.split("] ", 1)[1]))
        return found


class KubeadmCluster(ClusterBase):
    """``cluster`` for kubeadm: a Kubernetes version, the pod/service networks, Flannel, a mirror."""

    distribution: Literal["kubeadm"]
    version: str
    pod_network_cidr: str = "10.244.0.0/16"
    service_cidr: str | None = None
    flannel_version: str = "v0.26.1"
    package_repo: str | None = None

    foreign_hints: ClassVar[dict[str, str]] = {
        "channel": 'kubeadm clusters take cluster.version (e.g. "1.31"), not a channel',
        "server_args": "k3s flags do not apply to kubeadm clusters",
        "agent_args": "k3s flags do not apply to kubeadm clusters",
        "airgap": "airgap uploads are supported for k3s only",
        "embedded_etcd": "kubeadm control planes always run stacked etcd",
    }
    missing_hints: ClassVar[dict[str, str]] = {
        "version": 'kubeadm clusters need cluster.version, e.g. "1.31" (newest patch) or "1.31.4"',
    }
    suggested_version: ClassVar[str | None] = "1.31"

    _not_a_number = field_validator("version", mode="before")(_quoted_version)

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not _KUBEADM_VERSION.match(value):
            raise ValueError(f'{_shown(value)} is not a Kubernetes version like "1.31" or "1.31.4"')
        return value

    @field_validator("flannel_version")
    @classmethod
    def _flannel(cls, value: str) -> str:
        if not _FLANNEL_VERSION.match(value):
            raise ValueError(f"{_shown(value)} is not a version like v0.26.1")
        return value

    @field_validator("package_repo")
    @classmethod
    def _repo(cls, value: str | None) -> str | None:
        return None if value is None else https_url(value, allow_private_http=True)

    def server_problems(self, servers: int) -> list[ClusterProblem]:
        """Several control planes need one stable address in front of them: kubeadm's
        controlPlaneEndpoint, which workers, kubeconfigs and joining control planes use
        (kubeadm refuses a control-plane join into a cluster without one)."""
        if servers > 1 and self.api_endpoint is None:
            return [
                (
                    ("api_endpoint",),
                    f"kubeadm with {servers} control planes needs cluster.api_endpoint: a virtual IP, load balancer or DNS "
                    "name in front of their API servers (port 6443), used as kubeadm's controlPlaneEndpoint",
                )
            ]
        return []

    @field_validator("pod_network_cidr", "service_cidr")
    @classmethod
    def _cidr(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ipaddress.ip_network(value, strict=True)
            except ValueError as error:
                raise ValueError(f"{_shown(value)} is not a network in CIDR form ({error})") from None
        return value


ClusterT = TypeVar("ClusterT", bound=ClusterBase)

#: The ``cluster`` model of each distribution, by the value of ``cluster.distribution``.
CLUSTER_MODELS: dict[str, type[ClusterBase]] = {"k3s": K3sCluster, "kubeadm": KubeadmCluster}
DISTRIBUTIONS: tuple[str, ...] = tuple(CLUSTER_MODELS)


def _distribution_of(value: object) -> str | None:
    """The discriminator: ``cluster.distribution``, k3s when absent (older inventories)."""
    if isinstance(value, dict):
        distribution = value.get("distribution", "k3s")
        return distribution if isinstance(distribution, str) else None
    return getattr(value, "distribution", None)


Cluster = Annotated[
    Annotated[K3sCluster, Tag("k3s")] | Annotated[KubeadmCluster, Tag("kubeadm")],
    Discriminator(
        _distribution_of,
        custom_error_type="distribution",
        custom_error_message="unknown distribution",
    ),
]


class SSHOptions(_Model):
    """SSH settings for a host. Unset fields fall back to ``~/.ssh/config``, then to defaults."""

    user: str | None = None
    port: StrictInt | None = Field(default=None, ge=1, le=65535)
    private_key: Path | None = None
    host_key_policy: HostKeyPolicy | None = None
    known_hosts: Path | None = None
    sudo_password_env: str | None = None
    proxy_jump: str | None = None
    connect_timeout: StrictInt | None = Field(default=None, ge=1, le=600)
    dead_peer_timeout: StrictInt | None = Field(default=None, ge=3, le=600)  # a silent connection is lost after this
    command_timeout: StrictInt | None = Field(default=None, ge=1, le=86400)  # for commands given no limit of their own

    _paths = field_validator("private_key", "known_hosts", mode="before")(_path)

    @field_validator("user")
    @classmethod
    def _user(cls, value: str | None) -> str | None:
        if value is not None and not _USER.match(value):
            raise ValueError(f"{_shown(value)} is not a user name (letters, digits, '.', '_', '-', '@')")
        return value

    @field_validator("sudo_password_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError(f"{_shown(value)} is not an environment variable name")
        return value

    @field_validator("proxy_jump")
    @classmethod
    def _jump(cls, value: str | None) -> str | None:
        if value is None:
            return None
        user, _, host = value.rpartition("@")
        if user and not _USER.match(user):
            raise ValueError(f"{_shown(value)}: {_shown(user)} is not a user name")
        if host.startswith("["):
            host = host[1:].split("]", 1)[0]
        elif host.count(":") == 1:
            host, port = host.split(":")
            if not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{_shown(value)}: port must be a number 1-65535")
        if not is_address(host):
            raise ValueError(f"{_shown(value)} is not [user@]host[:port]")
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
                f"{_shown(value)} is not a valid node name: lowercase letters, digits, '-' and '.', "
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
            raise ValueError(f"{_shown(value)} is not an IP address")
        return value

    @field_validator("flannel_iface")
    @classmethod
    def _iface(cls, value: str | None) -> str | None:
        if value is not None and not _IFACE.match(value):
            raise ValueError(f"{_shown(value)} is not a network interface name")
        return value


class Inventory(_Model):
    """The whole inventory file."""

    cluster: Cluster  # K3sCluster | KubeadmCluster, by cluster.distribution
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

    def cluster_as(self, model: type[ClusterT]) -> ClusterT:
        """``cluster`` typed as one distribution's model (a distribution narrows it once, up front).

        ``TypeError`` if the inventory is for another distribution: a programming error, since the
        distribution is chosen from ``cluster.distribution`` itself.
        """
        if not isinstance(self.cluster, model):
            raise TypeError(f"the inventory is for {self.cluster.distribution}, not {model.__name__}")
        return self.cluster


# --- loading -------------------------------------------------------------------------------


def load_inventory(path: str | os.PathLike[str], *, check_files: bool = True, limits: Limits = DEFAULT_LIMITS) -> Inventory:
    """Read, parse and validate an inventory file, or raise ``InventoryError`` listing problems.

    ``check_files`` also checks that key and airgap files exist and are readable, and that
    ``known_hosts`` is (or can be created as) a file.
    """
    file = Path(path)
    shown = str(path)
    text = decode(read_limited(file, shown, limits), shown, limits)
    return parse_inventory(text, shown, base_dir=file.resolve().parent, check_files=check_files, limits=limits)


def parse_inventory(
    text: str | bytes,
    source: str = "<inventory>",
    *,
    base_dir: Path | None = None,
    check_files: bool = True,
    limits: Limits = DEFAULT_LIMITS,
) -> Inventory:
    """Validate inventory YAML text (or bytes); see ``load_inventory``."""
    if isinstance(text, bytes):
        text = decode(text, source, limits)
    ini = _ini_groups(text)
    if ini is not None:
        raise InventoryError([_ansible_problem(source, ini[0], ini[1], ini=True)])
    data = load_yaml(text, source, limits)
    return _validate(data, source, base_dir=base_dir, check_files=check_files)


def _validate(data: Any, source: str, *, base_dir: Path | None, check_files: bool) -> Inventory:
    """Turn loaded YAML nodes into an ``Inventory`` or raise ``InventoryError``."""
    if not isinstance(data, dict):
        raise InventoryError([Problem("", "the inventory must be a YAML mapping", source, 1)])
    foreign = _foreign_format(data, source)
    if foreign is not None:
        raise InventoryError([foreign])

    plain = plain_yaml(data)
    unsafe = unsafe_text_problems(plain, data, source)
    try:
        inventory = Inventory.model_validate(plain, context={"base_dir": base_dir or Path.cwd()})
    except ValidationError as error:
        reported = {p.field for p in unsafe}
        problems = [_problem_from_pydantic(e, data, source) for e in error.errors()]
        problems = [p for p in problems if p.field not in reported]
        raise InventoryError(_unique(unsafe + problems)) from None
    if unsafe:
        raise InventoryError(unsafe)

    problems = semantic_problems(inventory, data, source)
    if check_files:
        problems += file_problems(inventory, data, source)
    if problems:
        raise InventoryError(problems)
    return inventory


def unsafe_text_problems(plain: Any, data: Any, source: str) -> list[Problem]:
    """Strings (values and keys) holding control characters: refused before anything uses them.

    A newline or an escape sequence in a name, an address or a flag could reach a shell on a host
    or a terminal; the message shows the string escaped, never raw.
    """
    problems: list[Problem] = []

    def visit(node: Any, loc: tuple[Any, ...]) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if _has_unsafe(key):
                    problems.append(
                        Problem(_dotted((*loc, key)), "this key contains a control character; remove it", source, _line_of(data, loc))
                    )
                    continue
                visit(value, (*loc, key))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                visit(value, (*loc, index))
        elif isinstance(node, str) and _has_unsafe(node):
            char = next(c for c in node if is_unsafe_char(c))
            problems.append(
                Problem(
                    _dotted(loc),
                    f"{_shown(node)} contains the control character {char!r}; remove it",
                    source,
                    _line_of(data, loc),
                )
            )

    visit(plain, ())
    return problems


def _has_unsafe(text: str) -> bool:
    return any(is_unsafe_char(c) for c in text)


def semantic_problems(inventory: Inventory, data: Any, source: str) -> list[Problem]:
    """Checks that span fields: duplicates, roles, the distribution's own rules, sudo variables."""
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

    for path, message in inventory.cluster.problems() + inventory.cluster.server_problems(len(inventory.servers)):
        add(("cluster", *path), message)

    for index, host in enumerate(inventory.hosts):
        ssh = inventory.ssh_for(host)
        if ssh.sudo_password_env and ssh.sudo_password_env not in os.environ:
            path = ("hosts", index, "ssh", "sudo_password_env") if host.ssh and host.ssh.sudo_password_env else ("ssh", "sudo_password_env")
            add(path, f"environment variable {ssh.sudo_password_env} is not set")
    return _unique(problems)


def file_problems(inventory: Inventory, data: Any, source: str) -> list[Problem]:
    """Key and airgap files that are missing or unreadable; known_hosts that cannot be a file."""
    problems: list[Problem] = []
    checks: list[tuple[tuple[Any, ...], Path | None, bool]] = [
        (("ssh", "private_key"), inventory.ssh.private_key, True),
    ]
    known_hosts: list[tuple[tuple[Any, ...], Path | None]] = [(("ssh", "known_hosts"), inventory.ssh.known_hosts)]
    for index, host in enumerate(inventory.hosts):
        if host.ssh is not None:
            checks.append((("hosts", index, "ssh", "private_key"), host.ssh.private_key, True))
            known_hosts.append((("hosts", index, "ssh", "known_hosts"), host.ssh.known_hosts))
    airgap = getattr(inventory.cluster, "airgap", None)
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
    for path, file in known_hosts:
        reason = None if file is None else known_hosts_problem(file)
        if reason:
            problems.append(Problem(_dotted(path), f"{file}: {reason}", source, _line_of(data, path)))
    return problems


def known_hosts_problem(file: Path) -> str | None:
    """Why ``file`` cannot serve as known_hosts, or None.

    It must be a readable regular file, or not exist yet with its nearest existing folder a
    writable directory (new host keys are recorded there, creating missing folders 0700).
    """
    if file.is_dir():
        return "is a directory; known_hosts must be a file"
    if file.exists():
        if not file.is_file():
            return "not a regular file"
        if not os.access(file, os.R_OK):
            return "not readable"
        return None
    parent = file.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"cannot be created: {parent} is a file, not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot be created: {parent} is not writable"
    return None


def _unreadable(file: Path) -> str | None:
    if not file.exists():
        return "no such file"
    if not file.is_file():
        return "not a regular file"
    if not os.access(file, os.R_OK):
        return "not readable"
    return None


def _not_a_key(file: Path) -> str | None:
    with file.open("rb") as handle:
        head = handle.read(100)
    if b"PRIVATE KEY" not in head:
        if head.startswith((b"ssh-", b"ecdsa-")):
            return "this is a public key; point at the private key"
        return "not an SSH private key"
    return None


# --- other tools' inventories ------------------------------------------------------------------

_K3S_ANSIBLE_GROUPS = frozenset({"k3s_cluster"})
_K3S_ANSIBLE_MEMBERS = frozenset({"server", "agent", "master", "node"})
_KUBESPRAY_GROUPS = frozenset({"kube_control_plane", "kube_node", "kube-master", "kube-node", "k8s_cluster", "k8s-cluster", "calico_rr"})
_INI_SECTION = re.compile(r"^\[([A-Za-z0-9_.-]+)(?::(?:children|vars))?\][ \t]*$", re.MULTILINE)


def _ini_groups(text: str | None) -> tuple[int, set[str]] | None:
    """(line of the first section, group names) when ``text`` is an Ansible INI inventory.

    A line ``[group]`` or ``[group:children]`` at the start of a line cannot open a YAML mapping,
    so a file with one is never a valid inventory of ours.
    """
    if not text:
        return None
    sections = list(_INI_SECTION.finditer(text))
    if not sections:
        return None
    line = text.count("\n", 0, sections[0].start()) + 1
    return line, {m.group(1) for m in sections}


def _ansible_groups(data: dict[Any, Any]) -> set[str]:
    """Group names of an Ansible YAML inventory: top-level keys and ``children`` below them."""
    groups: set[str] = set()
    pending = [data]
    while pending and len(groups) < 1000:
        node = pending.pop()
        for key, value in node.items():
            groups.add(str(key))
            if isinstance(value, dict) and isinstance(value.get("children"), dict):
                pending.append(value["children"])
    return groups


def _foreign_format(data: dict[Any, Any], source: str) -> Problem | None:
    """One line for an inventory written for k3s-ansible or kubespray, or None."""
    if "cluster" in data or "hosts" in data:
        return None
    groups = _ansible_groups(data)
    ansible = "all" in data or bool(groups & (_K3S_ANSIBLE_GROUPS | _KUBESPRAY_GROUPS))
    if not ansible:
        return None
    first = next(iter(data))
    line = _line_of(data, (first,)) or 1
    return _ansible_problem(source, line, groups, ini=False)


def _ansible_problem(source: str, line: int, groups: set[str], *, ini: bool) -> Problem:
    kind = "an Ansible INI inventory" if ini else "an Ansible inventory"
    quoted = shlex.quote(source)
    if groups & _KUBESPRAY_GROUPS:
        found = ", ".join(sorted(groups & _KUBESPRAY_GROUPS))
        message = f"this is {kind} for kubespray (groups {found}); convert it with `provisioner import kubespray {quoted}`"
    elif groups & (_K3S_ANSIBLE_GROUPS | _K3S_ANSIBLE_MEMBERS):
        found = ", ".join(sorted(groups & (_K3S_ANSIBLE_GROUPS | _K3S_ANSIBLE_MEMBERS)))
        message = f"this is {kind} for k3s-ansible (groups {found}); convert it with `provisioner import k3s-ansible {quoted}`"
    else:
        message = (
            f"this is {kind}, not a provisioner inventory (cluster, ssh, hosts); convert it with "
            f"`provisioner import k3s-ansible {quoted}` or `provisioner import kubespray {quoted}`"
        )
    return Problem("", message, source, line)


# --- pydantic errors as problems -----------------------------------------------------------------


def _problem_from_pydantic(error: Any, data: Any, source: str) -> Problem:
    loc, model = _located(tuple(error["loc"]), data)
    kind = error["type"]
    given = error.get("input")
    if kind == "extra_forbidden":
        message = _unknown_key_message(str(loc[-1]), loc[:-1], model)
    elif kind == "missing":
        hints = model.missing_hints if model is not None and loc[:-1] == ("cluster",) else {}
        message = hints.get(str(loc[-1]), "missing required field")
    elif kind == "distribution":
        if isinstance(given, dict):
            loc = (*loc, "distribution")
            shown = " or ".join(repr(d) for d in DISTRIBUTIONS)
            message = f"must be one of {shown}, not {_shown(given.get('distribution'))}"
        else:
            message = "must be a mapping with name, distribution, version, …"
    elif kind == "literal_error":
        message = f"must be one of {error['ctx']['expected']}, not {_shown(given)}"
    elif kind == "value_error":
        message = str(error["ctx"]["error"])
    elif kind in ("too_short",) and loc == ("hosts",):
        message = "at least one host is needed"
    elif kind == "string_type" and isinstance(given, (bool, int, float)):
        word = "true/false" if isinstance(given, bool) else "a number"
        message = f"must be a string; YAML reads {given!r} as {word}: write it in quotes"
    elif kind == "string_type" and isinstance(given, (datetime.date, datetime.datetime)):
        message = f"must be a string; YAML reads {given.isoformat()} as a date: write it in quotes"
    elif kind == "string_type" and given is None:
        message = "must be a string; YAML reads an empty value (or null, ~) as nothing"
    elif kind == "int_type" and isinstance(given, bool):
        message = f"must be a number, not {str(given).lower()}"
    elif kind == "int_type" and isinstance(given, str):
        message = f"must be a number, not the string {_shown(given)}: write it without quotes"
    else:
        message = error["msg"][:1].lower() + error["msg"][1:]
    return Problem(_dotted(loc), message, source, _line_of(data, loc))


def _located(loc: tuple[Any, ...], data: Any) -> tuple[tuple[Any, ...], type[ClusterBase] | None]:
    """``loc`` without pydantic's union tag after ``cluster``, and the cluster model it names."""
    if len(loc) >= 2 and loc[0] == "cluster" and loc[1] in CLUSTER_MODELS:
        return (loc[0], *loc[2:]), CLUSTER_MODELS[loc[1]]
    cluster = data.get("cluster") if isinstance(data, dict) else None
    return loc, CLUSTER_MODELS.get(str(_distribution_of(cluster))) if isinstance(cluster, dict) else None


def _unknown_key_message(key: str, parent: tuple[Any, ...], model: type[ClusterBase] | None) -> str:
    if parent == ("cluster",) and model is not None:
        if key in model.foreign_hints:
            return model.foreign_hints[key]
        owners = [name for name, other in CLUSTER_MODELS.items() if other is not model and key in other.model_fields]
        if owners:
            this = next(name for name, other in CLUSTER_MODELS.items() if other is model)
            return f"only for distribution {' or '.join(owners)} (this cluster's distribution is {this})"
    close = difflib.get_close_matches(key, _known_fields(parent, model), n=1)
    return "unknown key" + (f" (did you mean {close[0]!r}?)" if close else "")


def _known_fields(loc: tuple[Any, ...], cluster_model: type[ClusterBase] | None) -> list[str]:
    model: type[BaseModel] | None = Inventory
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        if model is Inventory and part == "cluster":
            model = cluster_model
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        annotation = field.annotation
        for candidate in (SSHOptions, Host, Airgap):
            if candidate is annotation or candidate in getattr(annotation, "__args__", ()):
                model = candidate
                break
        else:
            return []
    return list(model.model_fields) if model is not None else []


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = str(part)
            if _has_unsafe(text) or len(text) > 60:
                text = _shown(text)
            out += ("." if out else "") + text
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


def plain_yaml(node: Any, other: Callable[[Any], Any] | None = None) -> Any:
    """Round-trip YAML nodes as plain dicts, lists and scalars (for pydantic, or an importer).

    ``other`` converts any other node (e.g. a tagged scalar); without it such a node is kept."""
    if isinstance(node, dict):
        return {str(k): plain_yaml(v, other) for k, v in node.items()}
    if isinstance(node, list):
        return [plain_yaml(v, other) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, str):
        return str(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return other(node) if other is not None else node
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
