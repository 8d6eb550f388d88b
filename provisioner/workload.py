"""The workload smoke test of ``check --workload``, as data: the manifest, and pure readers of what
kubectl answers about it.

A throw-away namespace ``provisioner-check-<random>`` holds the Deployment ``nginx`` (2 replicas of
the upstream nginx image, or ``--image``), which is then scaled to 4. The manifest is JSON built
from dicts (kubectl reads JSON as YAML), so no value from the command line is pasted into text.
"""

from __future__ import annotations

import json
import secrets
from collections import Counter
from dataclasses import dataclass
from typing import Any

from provisioner.errors import ProvisionerError

NAMESPACE_PREFIX = "provisioner-check-"
DEPLOYMENT = "nginx"
LABELS = {"app": "nginx", "app.kubernetes.io/managed-by": "provisioner-check"}
REPLICAS = 2
SCALED = 4


def namespace_name() -> str:
    """A fresh namespace name: the prefix and six random hex digits."""
    return NAMESPACE_PREFIX + secrets.token_hex(3)


def manifest(namespace: str, image: str) -> str:
    """The Namespace and the nginx Deployment (2 replicas), as one JSON List for ``kubectl apply``."""
    deployment: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": DEPLOYMENT, "namespace": namespace, "labels": dict(LABELS)},
        "spec": {
            "replicas": REPLICAS,
            "selector": {"matchLabels": {"app": LABELS["app"]}},
            "template": {
                "metadata": {"labels": dict(LABELS)},
                "spec": {"containers": [{"name": "nginx", "image": image, "ports": [{"containerPort": 80}]}]},
            },
        },
    }
    namespace_object = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": namespace, "labels": {"app.kubernetes.io/managed-by": "provisioner-check"}},
    }
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": [namespace_object, deployment]}, indent=2) + "\n"


@dataclass(frozen=True)
class DeploymentStatus:
    """The replica counts of the Deployment's status."""

    replicas: int
    updated: int
    ready: int
    available: int


def parse_deployment(text: str) -> DeploymentStatus:
    """From ``kubectl get deployment -o json``."""
    try:
        status = json.loads(text).get("status") or {}
    except (ValueError, AttributeError) as error:
        raise ProvisionerError(f"kubectl printed something that is not a Deployment: {error}") from None

    def count(key: str) -> int:
        return int(status.get(key) or 0)

    return DeploymentStatus(count("replicas"), count("updatedReplicas"), count("readyReplicas"), count("availableReplicas"))


def pods_per_node(text: str) -> Counter[str]:
    """Running pods by node, from ``kubectl get pods -o json``."""
    try:
        items = json.loads(text).get("items") or []
    except (ValueError, AttributeError) as error:
        raise ProvisionerError(f"kubectl printed something that is not a pod list: {error}") from None
    nodes: Counter[str] = Counter()
    for pod in items:
        if (pod.get("status") or {}).get("phase") == "Running" and (pod.get("spec") or {}).get("nodeName"):
            nodes[pod["spec"]["nodeName"]] += 1
    return nodes
