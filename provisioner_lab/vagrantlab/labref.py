"""TEST LAB TOOLING (not product code): the one place that reaches into the nspawn lab's code.

The Vagrant lab uses what `provisioner lab up` uses: the same host packages (the k3s stand-in runs
on them) and the same k3s stand-in as air-gap files. When the lab package moves, only the imports
here change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Airgap:
    """What an inventory's ``cluster`` gets for the k3s stand-in: its version and air-gap files."""

    version: str
    k3s_binary: Path
    install_script: Path

    def as_inventory(self) -> dict[str, str]:
        """The ``cluster.airgap`` mapping of an inventory."""
        return {"k3s_binary": str(self.k3s_binary), "install_script": str(self.install_script)}


def standin_airgap() -> Airgap:
    """The k3s stand-in files and version, exactly as `provisioner lab up` writes them into lab.yaml."""
    from provisioner_lab import zipapps
    from provisioner_lab.lab import Lab

    return Airgap(zipapps.STANDINS["k3s"].version, Lab().standin_k3s(), zipapps.install_script())


def lab_host_packages() -> tuple[str, ...]:
    """The Debian packages every nspawn lab host has (the stand-in's needs among them)."""
    from provisioner_lab import base_image

    return tuple(base_image.PACKAGES)
