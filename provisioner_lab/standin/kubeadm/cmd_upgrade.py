"""TEST DOUBLE (kubeadm stand-in, not the real kubeadm).

`kubeadm upgrade plan [version]`, `kubeadm upgrade apply VERSION [-y]`, `kubeadm upgrade node`:
the version policy of the real kubeadm (one minor at a time, not past kubeadm's own version, no
downgrade of more than one minor), its messages, and the cluster version kept in the
kubeadm-config ConfigMap. No component is really replaced: the stand-in API server and kubelet
say the version of the installed stand-in package.

Upstream: kubernetes/kubernetes cmd/kubeadm/app/cmd/upgrade/{plan,apply,node}.go,
cmd/kubeadm/app/phases/upgrade/policy.go (EnforceVersionPolicies)
"""

from __future__ import annotations

import os
import re
import sys

from ..kubelet.kubeconfig import yaml
from ..kubelet.version import STANDIN_VERSION
from .base import ADMIN_CONF, ETC_K8S, KubeadmError, say
from .cluster import admin_client, api, create_or_replace
from .config import parse_flags

MAX_UPGRADE_SKEW = 1
MAX_DOWNGRADE_SKEW = 1
CONFIGMAP = "/api/v1/namespaces/kube-system/configmaps"


def parse_version(text):
    m = re.match(r"^v?(\d+)\.(\d+)\.(\d+)(-[0-9A-Za-z.-]+)?", text or "")
    if not m:
        raise KubeadmError("%q is not a valid version".replace("%q", '"%s"' % text))
    return int(m.group(1)), int(m.group(2)), int(m.group(3)), m.group(4) or ""


def version_policy(cluster, target, kubeadm):
    """(mandatory, skippable) errors for upgrading ``cluster`` to ``target`` with ``kubeadm``,
    as policy.go words them."""
    c, t, k = parse_version(cluster), parse_version(target), parse_version(kubeadm)
    mandatory, skippable = [], []
    if t[1] > c[1] + MAX_UPGRADE_SKEW:
        error = 'Specified version to upgrade to "%s" is too high; kubeadm can upgrade only %d minor version at a time' % (
            target,
            MAX_UPGRADE_SKEW,
        )
        (skippable if t[3] else mandatory).append(error)
    if t[1] < c[1] - MAX_DOWNGRADE_SKEW:
        mandatory.append(
            'Specified version to downgrade to "%s" is too low; kubeadm can downgrade only %d minor '
            "version at a time" % (target, MAX_DOWNGRADE_SKEW)
        )
    if t[1] > k[1]:
        mandatory.append(
            'Specified version to upgrade to "%s" is at least one minor release higher than the kubeadm '
            "minor release (%d > %d). Such an upgrade is not supported" % (target, t[1], k[1])
        )
    elif t[:3] > k[:3]:
        skippable.append(
            'Specified version to upgrade to "%s" is higher than the kubeadm version "%s". Upgrade kubeadm '
            "first using the tool you used to install kubeadm" % (target, kubeadm)
        )
    if t[1] < c[1]:
        skippable.append(
            'Specified version to downgrade to "%s" is lower than the cluster version "%s". Downgrades '
            "are not supported" % (target, cluster)
        )
    return mandatory, skippable


def _cluster_config(client):
    _, cm = api(client, "GET", CONFIGMAP + "/kubeadm-config")
    return yaml().safe_load((cm.get("data") or {}).get("ClusterConfiguration", "")) or {}, cm


def _enforce(cluster, target, force):
    mandatory, skippable = version_policy(cluster, target, STANDIN_VERSION)
    if mandatory:
        raise KubeadmError(
            "[upgrade/version] FATAL: the --version argument is invalid due to these fatal errors:\n\n"
            + "".join("\t- %s\n" % e for e in mandatory)
            + "\nPlease fix the misalignments highlighted above and try upgrading again"
        )
    if skippable and not force:
        raise KubeadmError(
            "[upgrade/version] FATAL: the --version argument is invalid due to these errors:\n\n"
            + "".join("\t- %s\n" % e for e in skippable)
            + "\nCan be bypassed if you pass the --force flag"
        )


def cmd_upgrade(args):
    if not args or args[0] in ("-h", "--help"):
        say(
            "Upgrade your cluster smoothly to a newer version with this command (stand-in)\n\nAvailable Commands:\n"
            "  apply       Upgrade your Kubernetes cluster to the specified version\n"
            "  node        Upgrade commands for a node in the cluster\n"
            "  plan        Check which versions are available to upgrade to and validate whether your current "
            "cluster is upgradeable."
        )
        return 0
    sub, rest = args[0], args[1:]
    if sub == "plan":
        return _plan(rest)
    if sub == "apply":
        return _apply(rest)
    if sub == "node":
        return _node(rest)
    raise KubeadmError('unknown command "%s" for "kubeadm upgrade"' % sub)


def _plan(args):
    flags, positional = parse_flags(
        args,
        {"v", "config", "kubeconfig", "ignore-preflight-errors", "output", "o"},
        ("allow-experimental-upgrades", "allow-release-candidate-upgrades", "print-config", "show-not-supported-version"),
    )
    client, _ = admin_client(flags.get("kubeconfig") or ADMIN_CONF)
    say("[preflight] Running pre-flight checks.")
    say("[upgrade/config] Reading configuration from the cluster...")
    config, _ = _cluster_config(client)
    cluster = config.get("kubernetesVersion", "")
    target = positional[0] if positional else STANDIN_VERSION
    say("[upgrade] Running cluster health checks")
    say("[upgrade] Fetching available versions to upgrade to")
    say("[upgrade/versions] Cluster version: %s" % cluster)
    say("[upgrade/versions] kubeadm version: %s" % STANDIN_VERSION)
    _enforce(cluster, target, False)
    if parse_version(target)[:3] <= parse_version(cluster)[:3]:
        say("\nAwesome, you're up-to-date! Enjoy!")
        return 0
    say("\nUpgrade to the latest version in the v%d.%d series:\n" % parse_version(target)[:2])
    say("COMPONENT                 NODE      CURRENT   TARGET")
    for component in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "etcd"):
        say("%-25s %-9s %-9s %s" % (component, "", cluster, target))
    say("\nYou can now apply the upgrade by executing the following command:\n\n\tkubeadm upgrade apply %s\n" % target)
    return 0


def _apply(args):
    flags, positional = parse_flags(
        args,
        {"v", "config", "kubeconfig", "ignore-preflight-errors", "patches"},
        (
            "yes",
            "y",
            "force",
            "f",
            "dry-run",
            "etcd-upgrade",
            "certificate-renewal",
            "allow-experimental-upgrades",
            "allow-release-candidate-upgrades",
            "print-config",
        ),
    )
    if not positional:
        raise KubeadmError("[upgrade/version] FATAL: missing one or more required arguments. Required arguments: [version]")
    target = positional[0]
    force = bool(flags.get("force") or flags.get("f"))
    client, _ = admin_client(flags.get("kubeconfig") or ADMIN_CONF)
    say("[preflight] Running pre-flight checks.")
    say("[upgrade/config] Reading configuration from the cluster...")
    config, _ = _cluster_config(client)
    cluster = config.get("kubernetesVersion", "")
    say("[upgrade] Running cluster health checks")
    say('[upgrade/version] You have chosen to upgrade to version "%s"' % target)
    say("[upgrade/versions] Cluster version: %s" % cluster)
    say("[upgrade/versions] kubeadm version: %s" % STANDIN_VERSION)
    _enforce(cluster, target, force)
    if not (flags.get("yes") or flags.get("y") or force):
        sys.stdout.write("[upgrade] Are you sure you want to proceed? [y/N]: ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            raise KubeadmError("won't proceed; the user didn't answer (Y|y) in order to continue")
    say('[upgrade/apply] Upgrading your Static Pod-hosted control plane to version "%s"...' % target)
    config["kubernetesVersion"] = target
    say('[upload-config] Storing the configuration used in ConfigMap "kubeadm-config" in the "kube-system" Namespace')
    create_or_replace(
        client,
        CONFIGMAP,
        "kubeadm-config",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "kubeadm-config", "namespace": "kube-system"},
            "data": {"ClusterConfiguration": yaml().safe_dump(config, sort_keys=True)},
        },
    )
    say('\n[upgrade] SUCCESS! A control plane node of your cluster was upgraded to "%s".\n' % target)
    say("[upgrade] Now please proceed with upgrading the rest of the nodes by following the right order.")
    return 0


def _node(args):
    parse_flags(
        args, {"v", "kubeconfig", "ignore-preflight-errors", "patches", "skip-phases"}, ("dry-run", "etcd-upgrade", "certificate-renewal")
    )
    kubelet_conf = os.path.join(ETC_K8S, "kubelet.conf")
    if not os.path.exists(kubelet_conf):
        raise KubeadmError("failed to create the upgrade node data: %s: no such file or directory" % kubelet_conf, phase="preflight")
    say("[upgrade] Reading configuration from the cluster...")
    say("[preflight] Running pre-flight checks")
    say("[preflight] Skipping prepull. Not a control plane node.")
    say("[upgrade] Skipping phase. Not a control plane node.")
    say("[upgrade] The configuration for this node was successfully upgraded!")
    say("[upgrade] Now you should go ahead and upgrade the kubelet package using your package manager.")
    return 0
