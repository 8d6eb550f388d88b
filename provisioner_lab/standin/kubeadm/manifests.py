"""TEST DOUBLE (kubeadm stand-in, not the real kubeadm).

Static pod manifests of the control plane. The stand-in etcd runs inside the kubelet's API
server (k3s/etcd.py); its flags here name its member, peer URL and the initial cluster.

Upstream: kubernetes/kubernetes cmd/kubeadm/app/phases/controlplane/manifests.go
"""

from __future__ import annotations

import os
import re

from ..k3s.certs import url_host
from ..k3s.etcd import PEER_PORT
from ..k3s.util import atomic_write, hp
from ..kubelet.kubeconfig import yaml
from ..kubelet.paths import MANIFESTS
from ..kubelet.version import STANDIN_NOTE
from .base import ETC_K8S, PKI, say


def static_pod(name, image, command, extra, port=None):
    args = dict(command)
    for k, v in extra:
        args[k] = v
    cmd = [name] + ["--%s=%s" % kv for kv in args.items()]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "kube-system",
            "labels": {"component": name, "tier": "control-plane"},
            "annotations": {"kubeadm.standin/note": STANDIN_NOTE},
        },
        "spec": {
            "hostNetwork": True,
            "priorityClassName": "system-node-critical",
            "containers": [{"name": name, "image": image, "command": cmd, "imagePullPolicy": "IfNotPresent"}],
        },
    }
    if port:
        pod["spec"]["containers"][0]["livenessProbe"] = {"httpGet": {"path": "/livez", "port": port, "scheme": "HTTPS"}}
    return yaml().safe_dump(pod, default_flow_style=False, sort_keys=False)


def peer_port():
    """etcd's peer port, 2380 (test-only knob K3S_STANDIN_ETCD_PEER_PORT, as for k3s: several
    stand-in control planes on one machine)."""
    return int(os.environ.get("K3S_STANDIN_ETCD_PEER_PORT") or PEER_PORT)


def peer_url(cfg):
    """The etcd member's peer URL: the advertise address, the peer port."""
    return "https://%s:%d" % (url_host(cfg.advertise), peer_port())


def etcd_command(cfg, initial_cluster=None):
    """The etcd flags kubeadm writes: a new one-member cluster (init), or with
    ``initial_cluster`` ({name: peer URL} after the member was added) an existing one (join)."""
    members = initial_cluster or {cfg.reg.name: peer_url(cfg)}
    args = [
        ("advertise-client-urls", "https://%s:2379" % url_host(cfg.advertise)),
        ("cert-file", PKI + "/etcd/server.crt"),
        ("data-dir", "/var/lib/etcd"),
        ("initial-advertise-peer-urls", peer_url(cfg)),
        ("initial-cluster", ",".join("%s=%s" % kv for kv in sorted(members.items()))),
    ]
    if initial_cluster:
        args.append(("initial-cluster-state", "existing"))
    args += [
        ("key-file", PKI + "/etcd/server.key"),
        ("listen-peer-urls", peer_url(cfg)),
        ("name", cfg.reg.name),
        ("peer-cert-file", PKI + "/etcd/peer.crt"),
        ("peer-key-file", PKI + "/etcd/peer.key"),
        ("peer-trusted-ca-file", PKI + "/etcd/ca.crt"),
        ("trusted-ca-file", PKI + "/etcd/ca.crt"),
    ]
    return args


def write_manifests(cfg, initial_cluster=None):
    """The static pod manifests of a control plane (etcd, controller-manager, scheduler, API
    server); ``initial_cluster`` for a control plane joining a running etcd cluster."""
    v = "v1.31.4" if not re.match(r"^v\d+\.\d+\.\d+$", cfg.kubernetes_version) else cfg.kubernetes_version
    api = [
        ("advertise-address", cfg.advertise),
        ("allow-privileged", "true"),
        ("authorization-mode", "Node,RBAC"),
        ("client-ca-file", PKI + "/ca.crt"),
        ("enable-bootstrap-token-auth", "true"),
        ("etcd-servers", "https://127.0.0.1:2379"),
        ("secure-port", str(cfg.bind_port)),
        ("service-cluster-ip-range", cfg.service_subnet),
        ("tls-cert-file", PKI + "/apiserver.crt"),
        ("tls-private-key-file", PKI + "/apiserver.key"),
    ]
    cm = [
        ("allocate-node-cidrs", "true" if cfg.pod_subnet else "false"),
        ("cluster-name", cfg.cluster_name),
        ("kubeconfig", ETC_K8S + "/controller-manager.conf"),
        ("service-cluster-ip-range", cfg.service_subnet),
    ]
    if cfg.pod_subnet:
        cm.append(("cluster-cidr", cfg.pod_subnet))
    files = {
        "kube-apiserver": static_pod("kube-apiserver", "registry.k8s.io/kube-apiserver:" + v, api, cfg.api_extra, cfg.bind_port),
        "kube-controller-manager": static_pod("kube-controller-manager", "registry.k8s.io/kube-controller-manager:" + v, cm, cfg.cm_extra),
        "kube-scheduler": static_pod(
            "kube-scheduler", "registry.k8s.io/kube-scheduler:" + v, [("kubeconfig", ETC_K8S + "/scheduler.conf")], []
        ),
        "etcd": static_pod("etcd", "registry.k8s.io/etcd:3.5.15-0", etcd_command(cfg, initial_cluster), []),
    }
    say('[etcd] Creating static Pod manifest for local etcd in "%s"' % MANIFESTS)
    # the API server manifest last: the kubelet starts the API as soon as it appears
    for name in ("etcd", "kube-controller-manager", "kube-scheduler", "kube-apiserver"):
        if name != "etcd":
            say('[control-plane] Creating static Pod manifest for "%s"' % name)
        atomic_write(hp("%s/%s.yaml" % (MANIFESTS, name)), files[name], 0o600)
