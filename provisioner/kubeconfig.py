"""Kubeconfigs: rewrite the one a server wrote, write it safely, merge it, check it works.

The server's admin kubeconfig points at 127.0.0.1 and names everything ``default`` (k3s) or
``kubernetes``/``kubernetes-admin`` (kubeadm). ``rewrite`` parses it (no string replacement),
points it at the API endpoint and names cluster, user and context after the cluster, so configs of
several clusters can live side by side. ``merge_files`` keeps every other entry, the comments and
the order of existing files, follows kubectl's rules for several ``$KUBECONFIG`` files, refuses a
corrupt file or entries of the same names that belong to another cluster (``KubeconfigConflict``,
unless ``replace``) without touching anything, and writes all or nothing (``LocalFileError``).
"""

from __future__ import annotations

import base64
import copy
import http.client
import io
import json
import os
import ssl
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from provisioner.errors import KubeconfigConflict, KubeconfigError, LocalFileError

SECTIONS = (("clusters", "cluster"), ("users", "user"), ("contexts", "context"))


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    return yaml


def kubeconfig_files(explicit: Path | None = None) -> list[Path]:
    """The kubeconfig files a merge reads, in kubectl's order: ``explicit`` (``--out``) alone, else
    every ``$KUBECONFIG`` entry (empty entries and repeats dropped), else ``~/.kube/config``."""
    if explicit is not None:
        return [explicit]
    files: list[Path] = []
    for entry in os.environ.get("KUBECONFIG", "").split(os.pathsep):
        path = Path(entry).expanduser()
        if entry and path not in files:
            files.append(path)
    return files or [Path("~/.kube/config").expanduser()]


def default_path(files: list[Path] | None = None) -> Path:
    """Where kubectl creates a new entry (and sets current-context): the first of ``files`` that
    exists, else the last one."""
    files = files if files is not None else kubeconfig_files()
    return next((path for path in files if path.exists()), files[-1])


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
            raise KubeconfigError(f"the server's admin kubeconfig has {len(data.get(section) or [])} {section}; expected 1")
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
    """Write ``text`` to ``path`` with ``mode`` from the first byte on, then rename into place.

    Any file-system failure is a ``LocalFileError`` naming ``path``; no temporary file is left.
    """
    check_writable(path)
    staged = _stage(path, text, mode)
    try:
        os.replace(staged, path)
    except BaseException as error:
        _unlink(staged)
        if isinstance(error, OSError):
            raise _write_error(path, error) from None
        raise


def check_writable(path: Path) -> None:
    """Refuse, naming ``path``, a target that cannot be replaced: a directory, a read-only file, or
    a folder that is not a directory, is read-only or is on a read-only file system."""
    if path.is_dir():
        raise LocalFileError(str(path), "cannot write: it is a directory")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise LocalFileError(str(path), f"cannot write: {folder} is not a directory")
    if os.statvfs(folder).f_flag & os.ST_RDONLY:
        raise LocalFileError(str(path), f"cannot write: {folder} is on a read-only file system")
    if path.exists() and not os.access(path, os.W_OK):
        raise LocalFileError(str(path), "cannot write: the file is read-only")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise LocalFileError(str(path), f"cannot write: the directory {folder} is read-only for this user")


def _stage(path: Path, text: str, mode: int = 0o600) -> Path:
    """``text`` in a new temporary file next to ``path`` (``mode``, synced to disk)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as error:
        raise _write_error(path, error) from None
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException as error:
        _unlink(Path(temp))
        if isinstance(error, OSError):
            raise _write_error(path, error) from None
        raise
    return Path(temp)


def _write_new(path: Path, text: str) -> None:
    """Create ``path`` (0600, must not exist) holding ``text``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _write_error(path: Path, error: OSError) -> LocalFileError:
    return LocalFileError(str(path), f"cannot write: {(error.strerror or str(error)).lower()}")


@dataclass
class WriteResult:
    """What writing or merging a kubeconfig did. ``path`` is the file holding the cluster's context;
    ``files`` every file rewritten, ``backups`` the copies taken of them before."""

    path: Path
    changed: bool
    backup: Path | None = None
    files: tuple[Path, ...] = ()
    backups: tuple[Path, ...] = ()


def write_file(path: Path, config: Any) -> WriteResult:
    """Write ``config`` as its own file (0600); leave the file alone when it already says that."""
    text = dump(config)
    if path.is_file() and (path.stat().st_mode & 0o777) == 0o600 and _read(path).original == text:
        return WriteResult(path, changed=False)
    write_atomic(path, text)
    return WriteResult(path, changed=True, files=(path,))


# --- merging into the user's kubeconfig files -----------------------------------------------


@dataclass
class LoadedFile:
    """One kubeconfig file as read: its text (empty when missing) and parsed content."""

    path: Path
    original: str
    data: Any  # None when the file does not exist
    exists: bool


@dataclass(frozen=True)
class Found:
    """The entry kubectl sees for a name (the first file defining it wins) and that file's index."""

    entry: Any
    index: int


View = dict[str, dict[str, Found]]


def _read(path: Path) -> LoadedFile:
    try:
        original = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return LoadedFile(path, "", None, False)
    except UnicodeDecodeError:
        raise KubeconfigError(f"{path} is not UTF-8 text") from None
    except IsADirectoryError:
        raise LocalFileError(str(path), "cannot read: it is a directory") from None
    except OSError as error:
        raise LocalFileError(str(path), f"cannot read: {(error.strerror or str(error)).lower()}") from None
    return LoadedFile(path, original, parse(original, str(path)), True)


def effective_view(files: list[LoadedFile]) -> View:
    """Clusters, users and contexts by name as kubectl merges ``files``: the first definition wins."""
    view: View = {section: {} for section, _ in SECTIONS}
    for index, loaded in enumerate(files):
        for section, _ in SECTIONS:
            for entry in (loaded.data or {}).get(section) or []:
                view[section].setdefault(entry["name"], Found(entry, index))
    return view


def effective_current_context(files: list[LoadedFile]) -> str:
    """The current-context kubectl uses: the first file that sets one wins."""
    return next((str(f.data["current-context"]) for f in files if f.data and f.data.get("current-context")), "")


def _identity(cluster: Any) -> tuple[str, str, str]:
    body = cluster.get("cluster") or {}
    return (str(body.get("server", "")), str(body.get("certificate-authority-data", "")), str(body.get("certificate-authority", "")))


def conflicts(files: list[LoadedFile], new: Any) -> list[str]:
    """Entries of ``files`` with the names ``new`` uses that belong to something else.

    A cluster entry is ours when it has our server and CA (a rerun); a user entry with other
    credentials is ours only when every context using it reaches such a cluster; a context entry
    is ours when it names our cluster and user.
    """
    view = effective_view(files)
    cluster, user, context = new["clusters"][0], new["users"][0], new["contexts"][0]
    ours = _identity(cluster)

    def where(found: Found) -> Path:
        return files[found.index].path

    def used_by(kind: str, name: str) -> str:
        names = [n for n, c in view["contexts"].items() if (c.entry.get("context") or {}).get(kind) == name]
        return f"used by context{'s' if len(names) != 1 else ''} {', '.join(names)}" if names else "used by no context"

    def reaches_us(cluster_name: object) -> bool:
        found = view["clusters"].get(str(cluster_name))
        return found is not None and _identity(found.entry) == ours

    problems = []
    found = view["clusters"].get(cluster["name"])
    if found is not None and _identity(found.entry) != ours:
        old = _identity(found.entry)[0] or "no server"
        what = "another server" if old != ours[0] else "the same server with another certificate authority"
        problems.append(
            f'{where(found)}: cluster "{cluster["name"]}" already points to {old} ({what}); {used_by("cluster", cluster["name"])}'
        )
    found = view["users"].get(user["name"])
    if found is not None and dict(found.entry.get("user") or {}) != dict(user["user"]):
        using = [
            c.entry.get("context") or {} for c in view["contexts"].values() if (c.entry.get("context") or {}).get("user") == user["name"]
        ]
        if not using or not all(reaches_us(c.get("cluster")) for c in using):
            problems.append(f'{where(found)}: user "{user["name"]}" already holds other credentials; {used_by("user", user["name"])}')
    found = view["contexts"].get(context["name"])
    if found is not None:
        body = found.entry.get("context") or {}
        if (body.get("cluster"), body.get("user")) != (cluster["name"], user["name"]):
            problems.append(
                f'{where(found)}: context "{context["name"]}" already uses cluster "{body.get("cluster")}" and user "{body.get("user")}"'
            )
    return problems


CONFLICT_HINT = (
    "nothing was changed; pass --replace to overwrite these entries (the contexts named "
    "then reach this cluster), or write a separate file with --out"
)


def _header(data: Any) -> Any:
    if data is None:
        data = CommentedMap()
    if not data:
        data["apiVersion"] = "v1"
        data["kind"] = "Config"
        data["preferences"] = CommentedMap()
    return data


def _put(data: Any, section: str, entry: Any, previous: Any) -> Any:
    """``data`` with ``entry`` replacing the one of the same name (or appended). A context that
    already named our cluster and user keeps its other settings (a namespace, say)."""
    data = _header(data)
    entries = data.get(section)
    if entries is None:
        entries = data[section] = CommentedSeq()
    replacement = copy.deepcopy(entry)
    if section == "contexts" and previous is not None:
        old = previous.get("context") or {}
        new = replacement["context"]
        if (old.get("cluster"), old.get("user")) == (new.get("cluster"), new.get("user")):
            for key, value in old.items():
                new.setdefault(key, copy.deepcopy(value))
    for index, current in enumerate(entries):
        if current.get("name") == entry["name"]:
            entries[index] = replacement
            break
    else:
        entries.append(replacement)
    return data


def plan_merge(files: list[LoadedFile], new: Any, *, set_current: bool, replace: bool = False) -> dict[int, Any]:
    """The new content of the ``files`` that change, by index, following kubectl:
    an entry is rewritten in the file that defines it, a new one goes to the first file that
    exists (else the last). The effective current-context changes only with ``set_current``
    (or when no file sets one). Refuses conflicting entries unless ``replace``."""
    problems = conflicts(files, new)
    if problems and not replace:
        raise KubeconfigConflict(problems, CONFLICT_HINT)
    view = effective_view(files)
    default = next((i for i, f in enumerate(files) if f.exists), len(files) - 1)
    datas = [copy.deepcopy(f.data) for f in files]
    for section, _ in SECTIONS:
        for entry in new.get(section) or []:
            found = view[section].get(entry["name"])
            target = found.index if found is not None else default
            datas[target] = _put(datas[target], section, entry, found.entry if found is not None else None)
    if set_current or not effective_current_context(files):
        # the default file comes before every file that sets a current-context, so this one wins
        datas[default] = _header(datas[default])
        datas[default]["current-context"] = new["current-context"]
    return {i: data for i, (f, data) in enumerate(zip(files, datas)) if data is not None and (not f.exists or data != f.data)}


def merge_files(paths: list[Path], new: Any, *, set_current: bool, replace: bool = False) -> WriteResult:
    """Merge ``new`` into the kubeconfig ``paths`` (kubectl's order): every changed file is backed
    up, then replaced atomically. A corrupt or conflicting file is refused before anything is
    written; a failed write puts back the files already written and leaves no backup."""
    files = [_read(path) for path in paths]
    datas = plan_merge(files, new, set_current=set_current, replace=replace)
    changes = [(files[index], dump(data)) for index, data in sorted(datas.items())]
    home = effective_view(files)["contexts"].get(new["contexts"][0]["name"])
    path = files[home.index].path if home is not None else default_path(paths)
    if not changes:
        return WriteResult(path, changed=False)
    backups = _replace_all(changes)
    return WriteResult(
        path, changed=True, backup=backups.get(path), files=tuple(f.path for f, _ in changes), backups=tuple(backups.values())
    )


def merge_file(path: Path, new: Any, *, set_current: bool, replace: bool = False) -> WriteResult:
    """Merge ``new`` into the one kubeconfig file ``path`` (see ``merge_files``)."""
    return merge_files([path], new, set_current=set_current, replace=replace)


def _backup_name(path: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    backup = path.with_name(f"{path.name}.backup-{stamp}")
    counter = 1
    while backup.exists():
        backup = path.with_name(f"{path.name}.backup-{stamp}-{counter}")
        counter += 1
    return backup


def _replace_all(changes: list[tuple[LoadedFile, str]]) -> dict[Path, Path]:
    """Back up and replace each file; all or nothing. Returns the backups by file."""
    for loaded, _ in changes:
        check_writable(loaded.path)
    backups: dict[Path, Path] = {}
    replaced: list[LoadedFile] = []
    try:
        for loaded, text in changes:
            staged = _stage(loaded.path, text)
            try:
                if loaded.exists:
                    backup = _backup_name(loaded.path)
                    _write_new(backup, loaded.original)
                    backups[loaded.path] = backup
                os.replace(staged, loaded.path)
            except BaseException:
                _unlink(staged)
                raise
            replaced.append(loaded)
    except BaseException as error:
        for loaded in replaced:
            try:
                if loaded.exists:
                    os.replace(_stage(loaded.path, loaded.original), loaded.path)
                else:
                    _unlink(loaded.path)
            except (OSError, LocalFileError):
                backups.pop(loaded.path, None)  # the backup is then the only copy: keep it
        for backup in backups.values():
            _unlink(backup)
        if isinstance(error, OSError):
            failed = next((f.path for f, _ in changes if f not in replaced), changes[-1][0].path)
            raise _write_error(failed, error) from None
        raise
    return backups


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
                f"TLS verification of {server} failed: {error.verify_message}{covered}; add {host} to the server's tls-san",
            )
        except (TimeoutError, OSError, http.client.HTTPException) as error:
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
        return [str(n) for n in sans.get_values_for_type(x509.DNSName)] + [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    except Exception:  # noqa: BLE001 - only used to explain a failure
        return []


# --- taking a cluster out again (reset) -------------------------------------------------------


def without_cluster(data: Any, context_name: str, server: str | None = None) -> Any | None:
    """``data`` without the context ``context_name`` and the cluster and user it names (when no
    other context uses them); None when there is nothing to take out. With ``server``, a
    context whose cluster points elsewhere is another cluster's and is kept."""
    if not isinstance(data, dict):
        return None
    contexts = [c for c in data.get("contexts") or [] if isinstance(c, dict)]
    ours = next((c for c in contexts if c.get("name") == context_name), None)
    if ours is None:
        return None
    body = ours.get("context") or {}
    cluster_name, user_name = body.get("cluster"), body.get("user")
    clusters = [c for c in data.get("clusters") or [] if isinstance(c, dict)]
    cluster = next((c for c in clusters if c.get("name") == cluster_name), None)
    if server is not None and cluster is not None and (cluster.get("cluster") or {}).get("server") != server:
        return None
    others = [c.get("context") or {} for c in contexts if c is not ours]
    data["contexts"] = [c for c in contexts if c is not ours]
    if not any(o.get("cluster") == cluster_name for o in others):
        data["clusters"] = [c for c in clusters if c.get("name") != cluster_name]
    if not any(o.get("user") == user_name for o in others):
        data["users"] = [u for u in data.get("users") or [] if not (isinstance(u, dict) and u.get("name") == user_name)]
    if data.get("current-context") == context_name:
        data["current-context"] = ""
    return data


def remove_entries(paths: list[Path], context_name: str, server: str | None = None) -> dict[Path, Path | None]:
    """Take the cluster's context, cluster and user out of each existing file of ``paths``
    (backed up first, replaced atomically). Returns the changed files and their backups.
    Already done: no file has the context (nothing is written)."""
    files = [_read(path) for path in paths if path.exists()]
    changes = []
    for loaded in files:
        data = without_cluster(loaded.data, context_name, server)
        if data is not None:
            changes.append((loaded, dump(data)))
    if not changes:
        return {}
    backups = _replace_all(changes)
    return {loaded.path: backups.get(loaded.path) for loaded, _ in changes}
