"""The kubeadm stand-in's `upgrade` refuses what the real kubeadm refuses (policy.go's words)."""

from __future__ import annotations

import pytest

from provisioner_lab.standin.kubeadm.base import KubeadmError
from provisioner_lab.standin.kubeadm.cmd_upgrade import _enforce, version_policy


def test_one_minor_up_is_allowed() -> None:
    assert version_policy("v1.31.4", "v1.32.0", "v1.32.0") == ([], [])


def test_skipping_a_minor_is_a_fatal_error_as_in_kubeadm() -> None:
    mandatory, _ = version_policy("v1.30.2", "v1.32.0", "v1.32.0")
    assert mandatory == ['Specified version to upgrade to "v1.32.0" is too high; kubeadm can upgrade only 1 minor version at a time']
    with pytest.raises(KubeadmError) as raised:
        _enforce("v1.30.2", "v1.32.0", force=True)  # --force does not bypass it
    assert "FATAL: the --version argument is invalid due to these fatal errors" in raised.value.message


def test_a_target_past_kubeadm_itself_and_downgrades_are_refused() -> None:
    mandatory, _ = version_policy("v1.31.4", "v1.32.0", "v1.31.4")
    assert "at least one minor release higher than the kubeadm minor release (32 > 31)" in mandatory[0]
    _, skippable = version_policy("v1.31.4", "v1.31.9", "v1.31.4")
    assert 'is higher than the kubeadm version "v1.31.4". Upgrade kubeadm first' in skippable[0]
    _, down = version_policy("v1.31.4", "v1.30.0", "v1.31.4")
    assert "Downgrades are not supported" in down[0]
    mandatory, _ = version_policy("v1.31.4", "v1.29.0", "v1.31.4")
    assert "can downgrade only 1 minor version at a time" in mandatory[0]
