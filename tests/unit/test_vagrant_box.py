"""The Vagrant lab's box recipe (test lab tooling): what goes in, and when the cache is reused."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner_lab.vagrantlab import box
from provisioner_lab.vagrantlab.labref import lab_host_packages, standin_airgap


def test_the_box_has_the_lab_hosts_packages_plus_a_kernel_and_sshd() -> None:
    packages = set(box.packages())
    assert set(lab_host_packages()) <= packages
    assert {"linux-image-cloud-amd64", "openssh-server", "sudo", "python3"} <= packages


def test_the_box_name_is_stable_and_changes_with_the_package_list(monkeypatch: pytest.MonkeyPatch) -> None:
    name = box.box_name()
    assert name == box.box_name()
    monkeypatch.setattr(box, "VM_PACKAGES", (*box.VM_PACKAGES, "htop"))
    assert box.box_name() != name


def test_a_cached_box_is_found_only_under_the_current_recipes_name(tmp_path: Path) -> None:
    assert box.cached_box(tmp_path) is None
    (tmp_path / "provisioner-bookworm-000000000000.box").write_bytes(b"old recipe")
    assert box.cached_box(tmp_path) is None
    (tmp_path / f"{box.box_name()}.box").write_bytes(b"current")
    found = box.cached_box(tmp_path)
    assert found is not None and found.name == box.box_name() and found.url.startswith("file:///")


def test_the_boxs_vagrantfile_selects_libvirts_qemu_driver() -> None:
    assert 'lv.driver = "qemu"' in box.BOX_VAGRANTFILE


def test_the_vms_get_the_same_standin_files_as_the_lab_inventory() -> None:
    from provisioner_lab import zipapps
    from provisioner_lab.lab import Lab

    airgap = standin_airgap()
    lab_binary = Lab().standin_k3s()
    assert (airgap.k3s_binary, airgap.install_script) == (lab_binary, zipapps.install_script())
    assert airgap.as_inventory() == {"k3s_binary": str(lab_binary), "install_script": str(zipapps.install_script())}
