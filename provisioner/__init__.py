"""provisioner: turn machines reachable over SSH into a Kubernetes cluster, and keep it that way."""

from __future__ import annotations

__version__ = "0.1.0"
