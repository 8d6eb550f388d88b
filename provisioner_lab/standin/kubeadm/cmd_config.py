"""TEST DOUBLE (kubeadm stand-in, not the real kubeadm).

`kubeadm config images list|pull`: the control-plane images of the configured version, printed
the way kubeadm prints them. The stand-in pulls nothing (the lab has no registry): "pull" checks
that the container runtime's socket exists and reports each image as pulled.

Upstream: kubernetes/kubernetes cmd/kubeadm/app/cmd/config.go (images list/pull),
cmd/kubeadm/app/images/images.go (which images), cmd/kubeadm/app/constants/constants.go (versions).
"""

from __future__ import annotations

from ..kubelet.cli import is_socket, socket_path
from ..kubelet.paths import DEFAULT_CRI
from ..kubelet.version import STANDIN_VERSION
from .base import KubeadmError, say
from .config import InitConfig, load_config, parse_flags

#: Versions kubeadm 1.31 pins for the images it does not version with Kubernetes.
COREDNS, PAUSE, ETCD = "v1.11.3", "3.10", "3.5.15-0"


def images(version, repository="registry.k8s.io"):
    """The images ``kubeadm init`` needs for Kubernetes ``version``."""
    return [
        "%s/%s:%s" % (repository, name, version) for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy")
    ] + ["%s/coredns/coredns:%s" % (repository, COREDNS), "%s/pause:%s" % (repository, PAUSE), "%s/etcd:%s" % (repository, ETCD)]


def cmd_config(args):
    if len(args) < 2 or args[0] != "images" or args[1] not in ("list", "pull"):
        say("Usage: kubeadm config images [list|pull] [--config FILE] (stand-in)")
        return 0 if args[:1] in ([], ["-h"], ["--help"]) else 1
    flags, _ = parse_flags(args[2:], {"config", "kubernetes-version", "image-repository", "cri-socket", "v"})
    version, repository, cri = STANDIN_VERSION, "registry.k8s.io", DEFAULT_CRI
    if "config" in flags:
        cfg = InitConfig(load_config(flags["config"]), {})
        if not cfg.kubernetes_version.startswith("stable"):
            version = cfg.kubernetes_version
        repository = cfg.cluster_doc.get("imageRepository") or repository
        cri = cfg.reg.cri_socket
    version = flags.get("kubernetes-version", version)
    repository = flags.get("image-repository", repository)
    wanted = images(version if version.startswith("v") else "v" + version, repository)
    if args[1] == "list":
        for image in wanted:
            say(image)
        return 0
    sock = socket_path(flags.get("cri-socket", cri))
    if not is_socket(sock):
        raise KubeadmError(
            "failed to create new CRI image service: validate service connection: validate CRI v1 "
            'image API for endpoint "%s": rpc error: code = Unavailable desc = connection error' % flags.get("cri-socket", cri)
        )
    for image in wanted:
        say("[config/images] Pulled %s" % image)
    return 0
