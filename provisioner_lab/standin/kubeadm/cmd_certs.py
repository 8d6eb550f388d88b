"""TEST DOUBLE (kubeadm stand-in, not the real kubeadm).

`kubeadm certs certificate-key`: a new key for the kubeadm-certs Secret, printed on stdout.

Upstream: kubernetes/kubernetes cmd/kubeadm/app/cmd/certs.go (newCmdCertificateKey)
"""

from __future__ import annotations

from .base import KubeadmError, say
from .config import parse_flags
from .copycerts import new_certificate_key


def cmd_certs(args):
    if not args or args[0] in ("-h", "--help"):
        say("Usage: kubeadm certs certificate-key (stand-in: only this subcommand)")
        return 0
    if args[0] != "certificate-key":
        raise KubeadmError('unknown command "%s" for "kubeadm certs" (stand-in: only certificate-key)' % args[0])
    parse_flags(args[1:], {"v"})
    say(new_certificate_key())
    return 0
