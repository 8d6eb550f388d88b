"""TEST DOUBLE tooling: builds the stand-in executables the lab copies to its hosts (not product code).

The stand-ins are real modules in ``provisioner_lab/standin/`` (packages ``k3s``, ``kubelet``,
``kubeadm``; the kubelet uses the k3s package's API server, kubeadm uses both). A lab host gets
each one as a single file, a Python zipapp (PEP 441, built with the standard library's
``zipapp``) holding the ``standin`` package and a ``__main__.py``, run by the host's
``/usr/bin/python3`` (Debian bookworm: Python 3.11 with python3-cryptography and python3-yaml):

- ``k3s`` (uploaded to /usr/local/bin/k3s by the provisioner's air-gap path) starts with a POSIX sh
  prelude that answers ``k3s --version`` in milliseconds and otherwise execs ``/usr/bin/python3``
  on the file itself (Python finds the zip archive behind the prelude);
- ``kubelet`` and ``kubeadm`` (/usr/bin/kubelet, /usr/bin/kubeadm in the lab's stand-in .debs)
  start with ``#!/usr/bin/python3``.

Builds are reproducible (sorted entries, fixed timestamps): the same modules give the same bytes,
so a rerun of ``provisioner up`` sees an unchanged k3s binary.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipapp
import zipfile
from dataclasses import dataclass
from pathlib import Path

from provisioner_lab.standin.k3s import version as k3s_version
from provisioner_lab.standin.kubelet import version as kubelet_version
from provisioner_lab.system import write_file

#: The package directory whose modules go into the archives (as top-level package ``standin``).
STANDIN_DIR = Path(__file__).resolve().parent / "standin"
#: The hosts' interpreter (Debian's python3; the stand-ins need its cryptography and yaml).
HOST_PYTHON = "/usr/bin/python3"
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)

K3S_PRELUDE = f"""\
#!/bin/sh
# k3s STAND-IN (a TEST DOUBLE, not real k3s): a Python zipapp built by provisioner_lab/zipapps.py
# from the modules in provisioner_lab/standin/k3s/. This sh prelude answers `k3s --version` the way
# the real Go binary does, in milliseconds (the provisioner asks it on every host on every run);
# everything else runs the zip archive after the prelude with Debian's python3.
# STANDIN_VERSION = "{k3s_version.STANDIN_VERSION}"
case "${{1:-}}" in
  --version|-v|version)
    echo "k3s version {k3s_version.STANDIN_VERSION} ({k3s_version.STANDIN_NOTE})"
    echo "go version {k3s_version.GO_VERSION} (stand-in: answered by the sh prelude)"
    exit 0 ;;
esac
exec {HOST_PYTHON} "$0" "$@"
"""


@dataclass(frozen=True)
class Standin:
    """One stand-in executable: which packages of ``standin`` it holds and how it starts."""

    name: str
    packages: tuple[str, ...]
    version: str
    #: Text before the zip archive (a shebang line, or the k3s sh prelude).
    prelude: str

    def main_py(self) -> str:
        return (f'"""{self.name} STAND-IN (a TEST DOUBLE): entry of this zipapp, built by '
                f'provisioner_lab/zipapps.py."""\n'
                f"import sys\n\nfrom standin.{self.name}.cli import main\n\nsys.exit(main(sys.argv))\n")


def _python_prelude(name: str) -> str:
    return (f"#!{HOST_PYTHON}\n# {name} STAND-IN (a TEST DOUBLE, not the real {name}): a Python zipapp built by "
            f"provisioner_lab/zipapps.py from provisioner_lab/standin/.\n")


STANDINS: dict[str, Standin] = {
    "k3s": Standin("k3s", ("k3s",), k3s_version.STANDIN_VERSION, K3S_PRELUDE),
    "kubelet": Standin("kubelet", ("k3s", "kubelet"), kubelet_version.STANDIN_VERSION, _python_prelude("kubelet")),
    "kubeadm": Standin("kubeadm", ("k3s", "kubelet", "kubeadm"), kubelet_version.STANDIN_VERSION,
                       _python_prelude("kubeadm")),
}


def _entry(name: str, data: bytes) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info, data


def archive(name: str, version: str | None = None) -> bytes:
    """The zip archive of stand-in ``name``: ``standin/__init__.py``, its packages' modules and
    ``__main__.py`` (sorted, fixed timestamps: the same sources give the same bytes). With
    ``version`` (k3s only) the stand-in says it is that version (``version.py`` rewritten)."""
    spec = STANDINS[name]
    entries = [_entry("__main__.py", spec.main_py().encode()),
               _entry("standin/__init__.py", (STANDIN_DIR / "__init__.py").read_bytes())]
    for package in spec.packages:
        for path in sorted((STANDIN_DIR / package).glob("*.py")):
            data = path.read_bytes()
            if version is not None and package == "k3s" and path.name == "version.py":
                data = data.replace(f'STANDIN_VERSION = "{spec.version}"'.encode(), f'STANDIN_VERSION = "{version}"'.encode())
            entries.append(_entry(f"standin/{package}/{path.name}", data))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for info, data in sorted(entries, key=lambda e: e[0].filename):
            z.writestr(info, data)
    return buf.getvalue()


def executable(name: str, version: str | None = None) -> bytes:
    """The bytes of the host executable ``name``: its prelude followed by the zipapp archive
    (``version``: a k3s stand-in that says it is another version, for upgrade tests)."""
    spec = STANDINS[name]
    out = io.BytesIO()
    prelude = spec.prelude if version is None else spec.prelude.replace(spec.version, version)
    out.write(prelude.encode())
    # zipapp copies the archive behind what is already written (no shebang of its own here:
    # the prelude carries it); Python finds the archive from its end, whatever precedes it.
    zipapp.create_archive(io.BytesIO(archive(name, version)), out, interpreter=None)
    return out.getvalue()


def build_k3s_version(version: str, cache_dir: Path) -> Path:
    """A k3s stand-in that reports ``version`` (``k3s --version``, the nodes' kubeletVersion),
    as ``cache_dir/k3s-<version>/k3s``: the second version a rolling-upgrade test needs.
    Changes: that file. Already done: same bytes (left untouched)."""
    out = cache_dir / f"k3s-{version.replace('+', '-')}"
    data = executable("k3s", version)
    path = out / "k3s"
    try:
        if path.read_bytes() == data:
            return path
    except OSError:
        pass
    out.mkdir(parents=True, exist_ok=True)
    write_file(path, data, mode=0o755)
    return path


def build(name: str, out_dir: Path) -> Path:
    """Write stand-in ``name`` as ``out_dir/<name>`` (0755, atomically); returns its path.

    Changes: that one file. Already done: the file has the same bytes (left untouched)."""
    data = executable(name)
    path = out_dir / name
    try:
        if path.read_bytes() == data:
            return path
    except OSError:
        pass
    out_dir.mkdir(parents=True, exist_ok=True)
    write_file(path, data, mode=0o755)
    return path


def build_cached(name: str, cache_dir: Path) -> Path:
    """``build`` into ``cache_dir/<name>-<sha256 prefix>/``: one directory per content, so a path
    once written into an inventory keeps naming the same bytes."""
    digest = hashlib.sha256(executable(name)).hexdigest()[:16]
    out = cache_dir / f"{name}-{digest}"
    path = build(name, out)
    os.chmod(out, 0o755)
    return path


def install_script() -> Path:
    """The k3s install script stand-in (POSIX sh, shipped as it is)."""
    return STANDIN_DIR / "k3s-install.sh"
