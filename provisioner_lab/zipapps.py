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

Each module is also shipped compiled (``<module>.pyc`` next to it, hash-based and unchecked, for
the interpreter building it): Python cannot cache bytecode for modules imported from a zip
archive, and compiling the stand-ins' sources on every start cost a host ~0.1 CPU-second per
``k3s``/``kubectl``/``kubelet`` process. zipimport ignores a ``.pyc`` of another Python version
(bad magic number) and compiles the source instead. The bytecode is made in a fresh isolated
interpreter: ``marshal`` output depends on what else a process has loaded, the build must not.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import re
import subprocess
import sys
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


def k3s_prelude(version: str) -> str:
    """The k3s stand-in's sh prelude, answering ``--version`` with ``version``."""
    return K3S_PRELUDE_TEMPLATE.replace("@VERSION@", version)


K3S_PRELUDE_TEMPLATE = f"""\
#!/bin/sh
# k3s STAND-IN (a TEST DOUBLE, not real k3s): a Python zipapp built by provisioner_lab/zipapps.py
# from the modules in provisioner_lab/standin/k3s/. This sh prelude answers `k3s --version` the way
# the real Go binary does, in milliseconds (the provisioner asks it on every host on every run);
# everything else runs the zip archive after the prelude with Debian's python3.
# STANDIN_VERSION = "@VERSION@"
case "${{1:-}}" in
  --version|-v|version)
    echo "k3s version @VERSION@ ({k3s_version.STANDIN_NOTE})"
    echo "go version {k3s_version.GO_VERSION} (stand-in: answered by the sh prelude)"
    exit 0 ;;
esac
exec {HOST_PYTHON} "$0" "$@"
"""
K3S_PRELUDE = k3s_prelude(k3s_version.STANDIN_VERSION)


@dataclass(frozen=True)
class Standin:
    """One stand-in executable: which packages of ``standin`` it holds and how it starts."""

    name: str
    packages: tuple[str, ...]
    version: str
    #: Text before the zip archive (a shebang line, or the k3s sh prelude).
    prelude: str
    #: The module (under ``standin/``) that holds ``STANDIN_VERSION``, rewritten for other versions.
    version_module: str = ""

    def prelude_for(self, version: str) -> str:
        return k3s_prelude(version) if self.name == "k3s" else self.prelude

    def main_py(self) -> str:
        return (
            f'"""{self.name} STAND-IN (a TEST DOUBLE): entry of this zipapp, built by '
            f'provisioner_lab/zipapps.py."""\n'
            f"import sys\n\nfrom standin.{self.name}.cli import main\n\nsys.exit(main(sys.argv))\n"
        )


def _python_prelude(name: str) -> str:
    return (
        f"#!{HOST_PYTHON}\n# {name} STAND-IN (a TEST DOUBLE, not the real {name}): a Python zipapp built by "
        f"provisioner_lab/zipapps.py from provisioner_lab/standin/.\n"
    )


STANDINS: dict[str, Standin] = {
    "k3s": Standin("k3s", ("k3s",), k3s_version.STANDIN_VERSION, K3S_PRELUDE, "k3s/version.py"),
    "kubelet": Standin("kubelet", ("k3s", "kubelet"), kubelet_version.STANDIN_VERSION, _python_prelude("kubelet"), "kubelet/version.py"),
    "kubeadm": Standin(
        "kubeadm", ("k3s", "kubelet", "kubeadm"), kubelet_version.STANDIN_VERSION, _python_prelude("kubeadm"), "kubelet/version.py"
    ),
}


def _entry(name: str, data: bytes) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info, data


def _versioned(module: bytes, version: str) -> bytes:
    """A version module's text with ``STANDIN_VERSION`` set to ``version``."""
    text, count = re.subn(r'(?m)^STANDIN_VERSION = "[^"]*"$', f'STANDIN_VERSION = "{version}"', module.decode())
    assert count == 1, "the version module sets STANDIN_VERSION on one line"
    return text.encode()


#: Run by a fresh ``python -I -S``: reads {name: source} as JSON, writes {name: hex .pyc} back.
_COMPILER = """
import importlib.util, json, sys
from importlib._bootstrap_external import _code_to_hash_pyc
out = {}
for name, text in json.load(sys.stdin).items():
    source = text.encode()
    code = compile(source, name, "exec", dont_inherit=True)
    out[name] = bytes(_code_to_hash_pyc(code, importlib.util.source_hash(source), checked=False)).hex()
json.dump(out, sys.stdout)
"""


def _bytecode(sources: dict[str, bytes]) -> dict[str, bytes]:
    """``.pyc`` bytes for each module source (see the module docstring)."""
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", _COMPILER],
        input=json.dumps({name: data.decode() for name, data in sources.items()}),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return {name: bytes.fromhex(value) for name, value in json.loads(done.stdout).items()}


@functools.lru_cache(maxsize=16)
def archive(name: str, version: str | None = None) -> bytes:
    """The zip archive of stand-in ``name``: ``standin/__init__.py``, its packages' modules (and
    their bytecode) and ``__main__.py`` (sorted, fixed timestamps: the same sources give the same
    bytes). With ``version``, the stand-in says it is that version (``--version``, the Node's
    kubeletVersion)."""
    spec = STANDINS[name]
    if version is not None and not re.fullmatch(r"v\d+\.\d+\.\d+[0-9A-Za-z.+-]*", version):
        raise ValueError(f"not a version a stand-in can claim: {version!r}")
    modules = {"standin/__init__.py": (STANDIN_DIR / "__init__.py").read_bytes()}
    for package in spec.packages:
        for path in sorted((STANDIN_DIR / package).glob("*.py")):
            data = path.read_bytes()
            if version is not None and f"{package}/{path.name}" == spec.version_module:
                data = _versioned(data, version)
            modules[f"standin/{package}/{path.name}"] = data
    compiled = _bytecode(modules)
    entries = [_entry("__main__.py", spec.main_py().encode())]
    entries += [_entry(module, data) for module, data in modules.items()]
    entries += [_entry(module + "c", data) for module, data in compiled.items()]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for info, data in sorted(entries, key=lambda e: e[0].filename):
            z.writestr(info, data)
    return buf.getvalue()


def executable(name: str, version: str | None = None) -> bytes:
    """The bytes of the host executable ``name``: its prelude followed by the zipapp archive
    (claiming ``version`` when given, otherwise the stand-in's own version)."""
    spec = STANDINS[name]
    out = io.BytesIO()
    out.write((spec.prelude if version is None else spec.prelude_for(version)).encode())
    # zipapp copies the archive behind what is already written (no shebang of its own here:
    # the prelude carries it); Python finds the archive from its end, whatever precedes it.
    zipapp.create_archive(io.BytesIO(archive(name, version)), out, interpreter=None)
    return out.getvalue()


def build(name: str, out_dir: Path, version: str | None = None) -> Path:
    """Write stand-in ``name`` as ``out_dir/<name>`` (0755, atomically); returns its path.

    Changes: that one file. Already done: the file has the same bytes (left untouched)."""
    data = executable(name, version)
    path = out_dir / name
    try:
        if path.read_bytes() == data:
            return path
    except OSError:
        pass
    out_dir.mkdir(parents=True, exist_ok=True)
    write_file(path, data, mode=0o755)
    return path


def build_cached(name: str, cache_dir: Path, version: str | None = None) -> Path:
    """``build`` into ``cache_dir/<name>-<sha256 prefix>/``: one directory per content, so a path
    once written into an inventory keeps naming the same bytes.

    ``version`` builds a stand-in that claims another version (an upgrade in the lab: the k3s
    stand-in as ``v1.32.0+k3s1``, the kubelet/kubeadm stand-ins as ``v1.32.1``); the modules are
    the same, only ``STANDIN_VERSION`` (and the k3s prelude's ``--version``) differ."""
    digest = hashlib.sha256(executable(name, version)).hexdigest()[:16]
    out = cache_dir / f"{name}-{digest}"
    path = build(name, out, version)
    os.chmod(out, 0o755)
    return path


def install_script() -> Path:
    """The k3s install script stand-in (POSIX sh, shipped as it is)."""
    return STANDIN_DIR / "k3s-install.sh"
