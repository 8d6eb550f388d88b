"""Kubeconfigs: rewrite the one a server wrote, write it safely, merge it, check it works.

The server's admin kubeconfig points at 127.0.0.1 and names everything ``default`` (k3s) or
``kubernetes``/``kubernetes-admin`` (kubeadm). ``rewrite`` parses it (no string replacement),
points it at the API endpoint and names cluster, user and context after the cluster, so configs of
several clusters can live side by side. ``merge_file`` keeps every other entry, the comments and
the order of an existing file, and refuses a corrupt file without touching it.
"""

from __future__ import annotations

import base64
import copy
import http.client
import io
import json
import os
import shutil
import socket
import ssl
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from provisioner.errors import KubeconfigError

SECTIONS = (("clusters", "cluster"), ("users", "user"), ("contexts", "context"))


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    return yaml


def default_path() -> Path:
    """``$KUBECONFIG`` (its first entry) or ``~/.kube/config``."""
    env = os.environ.get("KUBECONFIG", "")
    first = next((p for p in env.split(os.pathsep) if p), "")
    return Path(first).expanduser() if first else Path("~/.kube/config").expanduser()


def parse(text: str, source: str = "kubeconfig") -> Any:
    """Parse kubeconfig YAML (round-trip, so comments and order survive) and check its shape."""
    try:
        data = _yaml().load(text)
    except YAMLError as error:
        raise KubeconfigError(f"{source} is not valid YAML: {str(error).splitlines()[0]}") from None
    if data is None:
        return CommentedMap()
    if not isinstance(data, dict):
        raise KubeconfigError(f"{source} is not a kubeconfig (the top level is not a mapping)")
    for section, _ in SECTIONS:
        entries = data.get(section)
        if entries is None:
            continue
        if not isinstance(entries, list):
            raise KubeconfigError(f"{source}: `{section}` is not a list")
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                raise KubeconfigError(f"{source}: {section}[{index}] has no name")
    return data


def dump(data: Any) -> str:
    out = io.StringIO()
    _yaml().dump(data, out)
    return out.getvalue()


def rewrite(text: str, *, cluster_name: str, server: str, context_name: str | None = None) -> Any:
    """The admin kubeconfig ``text`` pointed at ``server`` with entries named after the cluster.

    The source must hold exactly one cluster, user and context (as k3s and kubeadm write it).
    """
    data = parse(text, "the server's admin kubeconfig")
    for section, _ in SECTIONS:
        if len(data.get(section) or []) != 1:
            raise KubeconfigError(
                f"the server's admin kubeconfig has {len(data.get(section) or [])} {section}; expected 1"
            )
    context = context_name or cluster_name
    cluster = data["clusters"][0]
    cluster["name"] = cluster_name
    cluster["cluster"]["server"] = server
    data["users"][0]["name"] = cluster_name
    ctx = data["contexts"][0]
    ctx["name"] = context
    ctx["context"]["cluster"] = cluster_name
    ctx["context"]["user"] = cluster_name
    data["current-context"] = context
    return data


def write_atomic(path: Path, text: str, mode: int = 0o600) -> None:
    """Write ``text`` to ``path`` with ``mode`` from the first byte on, then rename into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise


@dataclass
class WriteResult:
    """What writing or merging a kubeconfig did."""

    path: Path
    changed: bool
    backup: Path | None = None


def write_file(path: Path, config: Any) -> WriteResult:
    """Write ``config`` as its own file (0600); leave the file alone when it already says that."""
    text = dump(config)
    if path.exists() and path.read_text(encoding="utf-8") == text and (path.stat().st_mode & 0o777) == 0o600:
        return WriteResult(path, changed=False)
    write_atomic(path, text)
    return WriteResult(path, changed=True)


def merge(existing: Any, new: Any, *, set_current: bool) -> Any:
    """``existing`` with ``new``'s cluster, user and context added or replaced by name."""
    merged = copy.deepcopy(existing) if existing is not None else CommentedMap()
    if not merged:
        merged["apiVersion"] = "v1"
        merged["kind"] = "Config"
        merged["preferences"] = CommentedMap()
    for section, _ in SECTIONS:
        entries = merged.get(section)
        if entries is None:
            entries = CommentedSeq()
            merged[section] = entries
        for entry in new.get(section) or []:
            replacement = copy.deepcopy(entry)
            for index, current in enumerate(entries):
                if current.get("name") == entry["name"]:
                    entries[index] = replacement
                    break
            else:
                entries.append(replacement)
    if set_current or not merged.get("current-context"):
        merged["current-context"] = new["current-context"]
    return merged


def merge_file(path: Path, new: Any, *, set_current: bool) -> WriteResult:
    """Merge ``new`` into the kubeconfig at ``path``: back it up first, keep everything else.

    A file that cannot be parsed as a kubeconfig is refused and left exactly as it was.
    """
    if path.exists():
        original = path.read_text(encoding="utf-8")
        existing = parse(original, str(path))
    else:
        original, existing = "", None
    merged = merge(existing, new, set_current=set_current)
    text = dump(merged)
    if text == original:
        return WriteResult(path, changed=False)
    backup = None
    if path.exists():
        stamp = time.strftime("%Y%m%d-%H%M%S")
        backup = path.with_name(f"{path.name}.backup-{stamp}")
        counter = 1
        while backup.exists():
            backup = path.with_name(f"{path.name}.backup-{stamp}-{counter}")
            counter += 1
        shutil.copy2(path, backup)
        os.chmod(backup, 0o600)
    write_atomic(path, text)
    return WriteResult(path, changed=True, backup=backup)


# --- checking a kubeconfig from this machine ----------------------------------------------


@dataclass
class Check:
    """Result of calling the API with a kubeconfig: ``ok``, ``unreachable`` or ``error``."""

    status: str
    detail: str


def check(config: Any, *, timeout: float = 10.0) -> Check:
    """GET /version with the kubeconfig's CA (verification on) and client certificate."""
    from urllib.parse import urlsplit

    context_name = config.get("current-context")
    context = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
    server = cluster["server"]
    parts = urlsplit(server)
    host, port = parts.hostname or "", parts.port or 443
    ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
    with tempfile.TemporaryDirectory(prefix="provisioner-check-") as folder:
        os.chmod(folder, 0o700)
        tls = ssl.create_default_context(cadata=ca)
        if "client-certificate-data" in user:
            cert, key = Path(folder, "cert.pem"), Path(folder, "key.pem")
            write_atomic(cert, base64.b64decode(user["client-certificate-data"]).decode())
            write_atomic(key, base64.b64decode(user["client-key-data"]).decode())
            tls.load_cert_chain(str(cert), str(key))
        headers = {"Accept": "application/json"}
        if user.get("token"):
            headers["Authorization"] = f"Bearer {user['token']}"
        connection = http.client.HTTPSConnection(host, port, context=tls, timeout=timeout)
        try:
            connection.request("GET", "/version", headers=headers)
            response = connection.getresponse()
            body = response.read()
        except ssl.SSLCertVerificationError as error:
            names = served_names(host, port)
            covered = f" (the certificate covers: {', '.join(names)})" if names else ""
            return Check(
                "error",
                f"TLS verification of {server} failed: {error.verify_message}{covered}; "
                f"add {host} to the server's tls-san",
            )
        except (OSError, socket.timeout, http.client.HTTPException) as error:
            return Check("unreachable", f"{server} is not reachable from this machine: {error}")
        finally:
            connection.close()
    if response.status in (401, 403):
        return Check("error", f"{server} refused the kubeconfig's credentials (HTTP {response.status})")
    if response.status != 200:
        return Check("error", f"{server}/version answered HTTP {response.status}")
    try:
        version = json.loads(body).get("gitVersion", "?")
    except ValueError:
        version = "?"
    return Check("ok", f"{server} answered with TLS verified (server {version})")


def served_names(host: str, port: int) -> list[str]:
    """The DNS and IP names in the certificate a server presents (fetched without verifying)."""
    try:
        from cryptography import x509

        pem = ssl.get_server_certificate((host, port), timeout=5)
        cert = x509.load_pem_x509_certificate(pem.encode())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return [str(n) for n in sans.get_values_for_type(x509.DNSName)] + [
            str(ip) for ip in sans.get_values_for_type(x509.IPAddress)
        ]
    except Exception:  # noqa: BLE001 - only used to explain a failure
        return []
