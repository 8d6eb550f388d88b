"""TEST DOUBLE (kubeadm stand-in, not the real kubeadm).

Constants, the error printed as `error execution phase ...`, output and wait helpers.

Upstream: kubernetes/kubernetes cmd/kubeadm/app/util/errors/errors.go, cmd/kubeadm/app/constants/constants.go
"""

from __future__ import annotations

from ..k3s.util import env_float

KUBEADM_GROUP = "kubeadm.k8s.io"


API_VERSIONS = ("v1beta3", "v1beta4")


OLD_API_VERSIONS = {"v1beta1": "v1.14", "v1beta2": "v1.22"}


ETC_K8S = "/etc/kubernetes"


PKI = ETC_K8S + "/pki"


ADMIN_CONF = ETC_K8S + "/admin.conf"


CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"


EXCLUDE_LB_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"


MIN_CPUS, MIN_MEM_MB = 2, 1700


STACK_HINT = "To see the stack trace of this error execute with --v=5 or higher"


class KubeadmError(Exception):
    """Printed as `error execution phase <phase>: <message>` (or plain), exit 1."""

    def __init__(self, message, phase=None):
        super().__init__(message)
        self.message, self.phase = message, phase


def say(line=""):
    print(line, flush=True)


def wait_seconds():
    return env_float("KUBEADM_STANDIN_WAIT_SECONDS", 240.0)


def fmt_duration(seconds):
    if seconds < 1:
        return "%.1fms" % (seconds * 1000)
    return "%.3fs" % seconds
