"""TEST DOUBLE (kubeadm stand-in, not the real kubeadm).

The kubeadm command line: dispatch, verbosity, error output.

Upstream: kubernetes/kubernetes cmd/kubeadm/app/cmd/cmd.go
"""

from __future__ import annotations

import sys

from ..k3s import util
from ..k3s.util import Fatal, mask
from ..kubelet.klog import klog
from ..kubelet.version import STANDIN_NOTE, STANDIN_VERSION
from .base import STACK_HINT, KubeadmError
from .cmd_certs import cmd_certs
from .cmd_config import cmd_config
from .cmd_init import cmd_init
from .cmd_join import cmd_join
from .cmd_reset import cmd_reset, cmd_version
from .cmd_token import cmd_token
from .cmd_upgrade import cmd_upgrade

USAGE = """kubeadm (%s %s): easily bootstrap a secure Kubernetes cluster -- STAND-IN

Usage:
  kubeadm [command]

Available Commands (stand-in):
  certs       Commands related to handling kubernetes certificates (stand-in: certificate-key)
  config      Manage configuration for a kubeadm cluster (stand-in: images list|pull)
  init        Run this command in order to set up the Kubernetes control plane
  join        Run this on any machine you wish to join an existing cluster
  reset       Performs a best effort revert of changes made to this host by 'kubeadm init' or 'kubeadm join'
  token       Manage bootstrap tokens
  upgrade     Upgrade your cluster smoothly to a newer version with this command
  version     Print the version of kubeadm
""" % (STANDIN_VERSION, STANDIN_NOTE)


def main(argv):
    util.set_log_writer(klog)  # the k3s library code logs kubelet-style lines
    args = [a for a in argv[1:]]
    verbosity = [a for a in args if a.startswith("--v=") or a.startswith("-v=")]
    if verbosity:
        util.DEBUG = int(verbosity[-1].split("=")[1] or 0) >= 5
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0
    cmd, rest = args[0], args[1:]
    handlers = {
        "certs": cmd_certs,
        "config": cmd_config,
        "init": cmd_init,
        "join": cmd_join,
        "token": cmd_token,
        "reset": cmd_reset,
        "version": cmd_version,
        "upgrade": cmd_upgrade,
    }
    if cmd not in handlers:
        sys.stderr.write('unknown command "%s" for "kubeadm"\n%s\n' % (cmd, STACK_HINT))
        return 1
    try:
        return handlers[cmd](rest)
    except KubeadmError as e:
        msg = mask(e.message)
        if e.phase:
            msg = "error execution phase %s: %s" % (e.phase, msg)
        sys.stderr.write("%s\n%s\n" % (msg, STACK_HINT))
        return 1
    except Fatal as e:
        sys.stderr.write("%s\n%s\n" % (mask(str(e)), STACK_HINT))
        return 1
