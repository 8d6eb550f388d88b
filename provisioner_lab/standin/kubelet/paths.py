"""TEST DOUBLE (kubelet stand-in, not the real kubelet).

Files and defaults the kubelet and kubeadm share (kubeconfigs, config.yaml, manifests, CRI).

Upstream: kubernetes/kubernetes cmd/kubeadm/app/constants/constants.go
"""

from __future__ import annotations

import re

KUBELET_CONF = "/etc/kubernetes/kubelet.conf"


BOOTSTRAP_KUBELET_CONF = "/etc/kubernetes/bootstrap-kubelet.conf"


KUBELET_DIR = "/var/lib/kubelet"


KUBELET_CONFIG = "/var/lib/kubelet/config.yaml"


KUBEADM_FLAGS_ENV = "/var/lib/kubelet/kubeadm-flags.env"


KUBELET_PKI = "/var/lib/kubelet/pki"


MANIFESTS = "/etc/kubernetes/manifests"


APISERVER_MANIFEST = MANIFESTS + "/kube-apiserver.yaml"


CONTROLLER_MANAGER_MANIFEST = MANIFESTS + "/kube-controller-manager.yaml"


ETCD_MANIFEST = MANIFESTS + "/etcd.yaml"


ETCD_DATA_DIR = "/var/lib/etcd"


#: the stand-in etcd member of a control plane (k3s/etcd.py): member.json
ETCD_MEMBER_DIR = ETCD_DATA_DIR + "/standin/member"


API_STATE = ETCD_DATA_DIR + "/standin/state.json"


DEFAULT_CRI = "unix:///run/containerd/containerd.sock"


BOOTSTRAP_TOKEN_RE = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")


SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
