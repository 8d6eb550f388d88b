"""TEST DOUBLE (kubelet stand-in, not the real kubelet).

What the kubelet and kubeadm stand-ins say they are (also the stand-in packages' version).

Upstream: kubernetes/kubernetes staging/src/k8s.io/component-base/version/version.go
"""

from __future__ import annotations

STANDIN_VERSION = "v1.31.4"


STANDIN_NOTE = "stand-in for testing, not real Kubernetes"
