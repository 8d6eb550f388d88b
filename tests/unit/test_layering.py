"""Import layering of the product package, read from the source with ``ast`` (nothing imported):

- ``provisioner`` never imports ``provisioner_lab`` (the test lab and the stand-ins);
- ``provisioner.phases`` does not import ``provisioner.cli``;
- ``provisioner.distros`` does not import ``provisioner.phases``.

"Imports" is transitive over the product package (a phase importing a module that imports the
CLI breaks the rule too) and counts every ``import``/``from … import`` anywhere in a file
(functions and ``TYPE_CHECKING`` blocks included) and ``importlib.import_module("…")`` with a
literal name.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Forbidden:
    """No module under ``source`` may import (directly or through others) anything under ``target``."""

    source: str
    target: str


CONTRACTS = (
    Forbidden("provisioner", "provisioner_lab"),
    Forbidden("provisioner.phases", "provisioner.cli"),
    Forbidden("provisioner.distros", "provisioner.phases"),
)


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def module_name(root: Path, path: Path) -> str:
    """``provisioner/phases/connect.py`` -> ``provisioner.phases.connect`` (``__init__`` -> package)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool) -> Iterator[str]:
    """Every module name ``source`` (the text of ``module``) imports, relative imports resolved;
    ``from a import b`` yields both ``a`` and ``a.b`` (b may be a submodule)."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            yield base
            for alias in node.names:
                yield f"{base}.{alias.name}"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.args[0].value


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """{module: modules it imports} for every ``.py`` file of ``package`` under ``root``."""
    graph: dict[str, set[str]] = {}
    for path in sorted((root / package).rglob("*.py")):
        name = module_name(root, path)
        graph[name] = set(imported_modules(path.read_text(), name, path.name == "__init__.py"))
    return graph


def violations(graph: dict[str, set[str]], contract: Forbidden) -> list[list[str]]:
    """Import chains from a module under ``contract.source`` to one under ``contract.target``
    (shortest chain per source module), following imports of modules in ``graph``."""
    found: list[list[str]] = []
    for start in sorted(m for m in graph if _under(m, contract.source)):
        seen = {start}
        queue: list[list[str]] = [[start]]
        while queue:
            chain = queue.pop(0)
            hit = next((i for i in sorted(graph.get(chain[-1], ())) if _under(i, contract.target)), None)
            if hit is not None:
                found.append(chain + [hit])
                break
            for nxt in sorted(graph.get(chain[-1], ())):
                if nxt in graph and nxt not in seen and not _under(nxt, contract.target):
                    seen.add(nxt)
                    queue.append(chain + [nxt])
    return found


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: f"{c.source} !-> {c.target}")
def test_product_package_keeps_its_import_layers(contract: Forbidden) -> None:
    graph = import_graph(REPO, "provisioner")
    assert "provisioner.cli" in graph and "provisioner.phases" in graph and "provisioner.distros" in graph
    bad = violations(graph, contract)
    assert not bad, f"{contract.source} must not import {contract.target}:\n" + "\n".join(" -> ".join(c) for c in bad)


# ---- the checker itself finds what it must (so the contracts above can fail) -----------------


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


CLEAN = {
    "provisioner/__init__.py": "",
    "provisioner/cli.py": "from provisioner import phases\n",
    "provisioner/phases/__init__.py": "from provisioner.distros import base\n",
    "provisioner/distros/__init__.py": "",
    "provisioner/distros/base.py": "import json\n",
}


def test_checker_passes_a_clean_tree(tmp_path: Path) -> None:
    graph = import_graph(_tree(tmp_path, CLEAN), "provisioner")
    assert all(violations(graph, c) == [] for c in CONTRACTS)


@pytest.mark.parametrize(
    ("rel", "text", "contract"),
    [
        ("provisioner/phases/connect.py", "def f():\n    import provisioner_lab.lab\n", CONTRACTS[0]),
        ("provisioner/remote.py", "import importlib\nimportlib.import_module('provisioner_lab.cli')\n", CONTRACTS[0]),
        ("provisioner/phases/connect.py", "from .. import cli\n", CONTRACTS[1]),
        ("provisioner/phases/connect.py", "from provisioner.report import x\n", CONTRACTS[1]),  # via report
        ("provisioner/distros/k3s.py", "from ..phases import connect\n", CONTRACTS[2]),
        (
            "provisioner/distros/k3s.py",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from provisioner.phases import Context\n",
            CONTRACTS[2],
        ),
    ],
)
def test_checker_finds_a_forbidden_import(tmp_path: Path, rel: str, text: str, contract: Forbidden) -> None:
    files = dict(CLEAN, **{rel: text, "provisioner/report.py": "from provisioner.cli import main\n"})
    graph = import_graph(_tree(tmp_path, files), "provisioner")
    bad = violations(graph, contract)
    assert bad and bad[0][0] == module_name(tmp_path, tmp_path / rel) and _under(bad[0][-1], contract.target)
