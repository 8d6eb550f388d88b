"""The stand-in executables the lab copies to its hosts: zipapps built from provisioner_lab/standin
(test double tooling). Running them is tested in tests/standin."""

from __future__ import annotations

import ast
import io
import zipapp
import zipfile
from pathlib import Path

import pytest

from provisioner_lab import zipapps

STANDIN = Path(zipapps.__file__).resolve().parent / "standin"


def _names(name: str) -> list[str]:
    return zipfile.ZipFile(io.BytesIO(zipapps.archive(name))).namelist()


def test_each_executable_holds_only_the_packages_it_uses() -> None:
    assert {n.split("/")[1] for n in _names("k3s") if n.startswith("standin/") and n.count("/") == 2} == {"k3s"}
    assert {n.split("/")[1] for n in _names("kubelet") if n.count("/") == 2} == {"k3s", "kubelet"}
    assert {n.split("/")[1] for n in _names("kubeadm") if n.count("/") == 2} == {"k3s", "kubelet", "kubeadm"}
    for name in zipapps.STANDINS:
        names = _names(name)
        assert names == sorted(names) and "__main__.py" in names and "standin/__init__.py" in names
        assert f"from standin.{name}.cli import main" in zipfile.ZipFile(io.BytesIO(zipapps.archive(name))).read("__main__.py").decode()


def test_k3s_starts_with_the_sh_prelude_that_answers_version() -> None:
    data = zipapps.executable("k3s")
    prelude = data[: data.index(b"PK\x03\x04")].decode()
    assert prelude.startswith("#!/bin/sh\n") and "TEST DOUBLE" in prelude
    assert 'echo "k3s version v1.31.4+k3s1 (stand-in for testing, not real k3s)"' in prelude
    assert prelude.rstrip().endswith('exec /usr/bin/python3 "$0" "$@"')
    assert zipfile.is_zipfile(io.BytesIO(data))  # Python finds the archive behind the prelude


@pytest.mark.parametrize("name", ["kubelet", "kubeadm"])
def test_kubelet_and_kubeadm_are_zipapps_for_the_hosts_python(name: str) -> None:
    data = zipapps.executable(name)
    assert zipapp.get_interpreter(io.BytesIO(data)) == "/usr/bin/python3"
    assert b"TEST DOUBLE" in data.split(b"PK\x03\x04", 1)[0]


def test_builds_are_reproducible_and_cached_by_content(tmp_path: Path) -> None:
    assert zipapps.executable("k3s") == zipapps.executable("k3s")
    first = zipapps.build_cached("k3s", tmp_path)
    mtime = first.stat().st_mtime_ns
    again = zipapps.build_cached("k3s", tmp_path)
    assert again == first and again.stat().st_mtime_ns == mtime  # same bytes: left untouched
    assert first.parent.name.startswith("k3s-") and first.name == "k3s"
    assert first.stat().st_mode & 0o777 == 0o755
    assert first.read_bytes() == zipapps.executable("k3s")


def test_install_script_is_in_the_package() -> None:
    script = zipapps.install_script()
    assert script.is_file() and script.read_text().startswith("#!/bin/sh")


@pytest.mark.parametrize("path", sorted(STANDIN.rglob("*.py")), ids=lambda p: str(p.relative_to(STANDIN)))
def test_every_stand_in_module_says_test_double_and_cites_its_upstream(path: Path) -> None:
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    assert "TEST DOUBLE" in doc.splitlines()[0] if doc else False, path
    if path.name != "__init__.py":
        assert "Upstream:" in doc, path


def test_a_stand_in_built_for_another_version_claims_it(tmp_path: Path) -> None:
    data = zipapps.executable("k3s", "v1.32.0+k3s1")
    prelude = data[: data.index(b"PK\x03\x04")].decode()
    assert 'echo "k3s version v1.32.0+k3s1 (stand-in for testing, not real k3s)"' in prelude
    module = zipfile.ZipFile(io.BytesIO(zipapps.archive("k3s", "v1.32.0+k3s1"))).read("standin/k3s/version.py").decode()
    assert 'STANDIN_VERSION = "v1.32.0+k3s1"' in module
    kubeadm = zipfile.ZipFile(io.BytesIO(zipapps.archive("kubeadm", "v1.32.1"))).read("standin/kubelet/version.py")
    assert b'STANDIN_VERSION = "v1.32.1"' in kubeadm
    other = zipapps.build_cached("k3s", tmp_path, "v1.32.0+k3s1")
    assert other != zipapps.build_cached("k3s", tmp_path) and other.read_bytes() == data
    with pytest.raises(ValueError):
        zipapps.executable("k3s", 'v1"; rm -rf /')


def test_modules_are_shipped_with_bytecode_that_the_hosts_python_loads_from_the_archive(tmp_path: Path) -> None:
    names = _names("k3s")
    modules = [n for n in names if n.startswith("standin/") and n.endswith(".py")]
    assert modules and all(m + "c" in names for m in modules)
    path = tmp_path / "k3s.zip"
    path.write_bytes(zipapps.archive("k3s"))
    import subprocess
    import sys

    # zipimport names the file it loaded the module from: the .pyc when it used the bytecode
    done = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(path)!r}); import standin.k3s.store as m; print(m.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == f"{path}/standin/k3s/store.pyc"
