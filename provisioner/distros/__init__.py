"""Distributions (k3s, kubeadm) behind one interface, chosen once from the inventory."""

from __future__ import annotations

from provisioner.distros.base import ClusterState, Distribution
from provisioner.inventory import Inventory
from provisioner.steps import Action, HostPlan


def for_inventory(inventory: Inventory, *, timeout: float = 300.0) -> Distribution:
    """The distribution the inventory asks for."""
    if inventory.cluster.distribution == "k3s":
        from provisioner.distros.k3s import K3s

        return K3s(inventory, timeout=timeout)
    from provisioner.distros.kubeadm import Kubeadm

    return Kubeadm(inventory, timeout=timeout)


__all__ = ["Action", "ClusterState", "Distribution", "HostPlan", "for_inventory"]
