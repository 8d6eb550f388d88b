"""TEST DOUBLE (kubeadm stand-in, not the real kubeadm).

`kubeadm reset` and `kubeadm version`.

Upstream: kubernetes/kubernetes cmd/kubeadm/app/cmd/reset.go, cmd/kubeadm/app/cmd/phases/reset/cleanupnode.go,
removeetcdmember.go, cmd/kubeadm/app/cmd/version.go
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
from ..kubelet.paths import ETCD_DATA_DIR, KUBELET_DIR, MANIFESTS
from ..kubelet.version import STANDIN_NOTE, STANDIN_VERSION
from .base import ETC_K8S, PKI, KubeadmError, say
from .config import parse_flags

#: What reset deletes, in kubeadm's order: the contents of these directories (the directories stay),
#: then these files (cmd/kubeadm/app/cmd/phases/reset/cleanupnode.go, resetConfigDir).
DIRS_TO_CLEAN = (MANIFESTS, KUBELET_DIR, PKI)
FILES_TO_CLEAN = tuple(
    "%s/%s" % (ETC_K8S, f)
    for f in ("admin.conf", "super-admin.conf", "kubelet.conf", "bootstrap-kubelet.conf", "controller-manager.conf", "scheduler.conf")
)
#: kubeadm's closing words (cmd/kubeadm/app/cmd/reset.go): what it leaves for the user to clean.
CLEANUP_INSTRUCTIONS = """
The reset process does not clean CNI configuration. To do so, you must remove /etc/cni/net.d

The reset process does not reset or clean up iptables rules or IPVS tables.
If you wish to reset iptables, you must do so manually by using the "iptables" command.

If your cluster was setup to utilize IPVS, run ipvsadm --clear (or similar)
to reset your system's IPVS tables.

The reset process does not clean your kubeconfig files and you must remove them manually.
Please, check the contents of the $HOME/.kube/config file.
"""


def clean_dir(path):
    """Removes everything in ``path`` but not ``path`` itself (kubeadm's CleanDir); a missing
    directory is not an error. Returns whether anything was removed."""
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return False
    for name in names:
        entry = os.path.join(path, name)
        if os.path.isdir(entry) and not os.path.islink(entry):
            shutil.rmtree(entry)
        else:
            os.unlink(entry)
    return bool(names)


def cmd_reset(args):
    """The phases of upstream ``kubeadm reset``: preflight; remove-etcd-member (the contents of the
    etcd data directory, on any host where it is not empty: the stand-in keeps no etcd member, its
    API state lives there); cleanup-node (stop the kubelet first -- the stand-in API server runs in
    it --, the contents of the manifests, kubelet and certificate directories, the kubeconfig
    files). CNI config, iptables and kubeconfigs elsewhere are left alone, as kubeadm says."""
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
    if clean_dir(hp(ETCD_DATA_DIR)):
        say("[reset] Deleted contents of the etcd data directory: %s" % ETCD_DATA_DIR)
    say('[reset] Unmounting mounted directories in "%s"' % KUBELET_DIR)
    say("[reset] Deleting contents of directories: [%s]" % " ".join(DIRS_TO_CLEAN))
    for rel in DIRS_TO_CLEAN:
        clean_dir(hp(rel))
    say("[reset] Deleting files: [%s]" % " ".join(FILES_TO_CLEAN))
    for rel in FILES_TO_CLEAN:
        if os.path.lexists(hp(rel)):
            os.unlink(hp(rel))
    say(CLEANUP_INSTRUCTIONS)
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
