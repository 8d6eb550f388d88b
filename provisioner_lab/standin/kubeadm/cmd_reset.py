"""TEST DOUBLE (kubeadm stand-in, not the real kubeadm).

`kubeadm reset` and `kubeadm version`.

Upstream: kubernetes/kubernetes cmd/kubeadm/app/cmd/reset.go, cmd/kubeadm/app/cmd/version.go
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from ..k3s.util import hp
from ..k3s.util import version_info as k3s_version_info
from ..kubelet.kubeconfig import yaml
from ..kubelet.paths import KUBEADM_FLAGS_ENV, KUBELET_CONFIG, KUBELET_PKI, MANIFESTS
from ..kubelet.version import STANDIN_NOTE, STANDIN_VERSION
from .base import ETC_K8S, PKI, KubeadmError, say
from .config import parse_flags


def cmd_reset(args):
    flags, _ = parse_flags(
        args,
        {"v", "cri-socket", "kubeconfig", "cert-dir", "config", "ignore-preflight-errors", "skip-phases"},
        ("force", "f", "dry-run", "cleanup-tmp-dir"),
    )
    if not (flags.get("force") or flags.get("f")):
        sys.stdout.write(
            "[reset] WARNING: Changes made to this host by 'kubeadm init' or "
            "'kubeadm join' will be reverted.\n[reset] Are you sure you want to "
            "proceed? [y/N]: "
        )
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            raise KubeadmError("aborted reset operation")
    say("[preflight] Running pre-flight checks")
    from .controlplane import remove_etcd_member  # a control plane's etcd member leaves first

    remove_etcd_member()
    say("[reset] Stopping the kubelet service")
    subprocess.run(["systemctl", "stop", "kubelet"], capture_output=True, timeout=120)
    removed = []
    for rel in ("/var/lib/etcd", KUBELET_PKI, KUBELET_CONFIG, KUBEADM_FLAGS_ENV, MANIFESTS, PKI):
        p = hp(rel)
        if os.path.isdir(p) and not os.path.islink(p):
            if rel == MANIFESTS:
                for f in os.listdir(p):
                    os.unlink(os.path.join(p, f))
            else:
                shutil.rmtree(p)
            removed.append(rel)
        elif os.path.lexists(p):
            os.unlink(p)
            removed.append(rel)
    for f in ("admin.conf", "super-admin.conf", "kubelet.conf", "bootstrap-kubelet.conf", "controller-manager.conf", "scheduler.conf"):
        p = hp("%s/%s" % (ETC_K8S, f))
        if os.path.lexists(p):
            os.unlink(p)
            removed.append("%s/%s" % (ETC_K8S, f))
    say("[reset] Deleted contents of: %s" % removed)
    say("The reset process does not clean CNI configuration, iptables or your kubeconfig files.")
    return 0


def version_info():
    info = k3s_version_info(STANDIN_VERSION)
    info["buildDate"] = "2024-12-10T00:00:00Z"
    return info


def cmd_version(args):
    flags, _ = parse_flags(args, {"output", "o", "v"})
    out = flags.get("output") or flags.get("o") or ""
    info = version_info()
    if out == "short":
        say(STANDIN_VERSION)
    elif out == "json":
        say(json.dumps({"clientVersion": info}, indent=2))
    elif out == "yaml":
        sys.stdout.write(yaml().safe_dump({"clientVersion": info}, sort_keys=False))
    elif out:
        raise KubeadmError("invalid output format: %s" % out)
    else:
        fields = ", ".join('%s:"%s"' % (k[0].upper() + k[1:], v) for k, v in info.items())
        say("kubeadm version: &version.Info{%s} (%s)" % (fields, STANDIN_NOTE))
    return 0
