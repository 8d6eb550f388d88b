"""TEST DOUBLE (kubelet stand-in, not the real kubelet).

`kubelet`: flags, the crash loop before kubeadm, swap and CRI checks, the API server static
pod, node registration and heartbeats.

Upstream: kubernetes/kubernetes cmd/kubelet/app/server.go, cmd/kubelet/app/options/options.go
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading

from ..k3s import util
from ..k3s.nodeloop import NodeLoop
from ..k3s.nodes import local_capacity, local_node_info, parse_node_taints
from ..k3s.server import install_signal_handlers
from ..k3s.util import Fatal, hostname, hp, log, read_file, read_host_text
from .apiserver import ApiServer, manifest_command
from .client import ApiClient, KubeletNodeClient
from .klog import klog, version_line
from .kubeconfig import Kubeconfig, yaml
from .paths import APISERVER_MANIFEST, BOOTSTRAP_KUBELET_CONF, DEFAULT_CRI, KUBELET_CONF
from .version import STANDIN_NOTE, STANDIN_VERSION

VALUE_FLAGS = {
    "kubeconfig",
    "bootstrap-kubeconfig",
    "config",
    "hostname-override",
    "node-ip",
    "container-runtime-endpoint",
    "image-service-endpoint",
    "pod-infra-container-image",
    "node-labels",
    "register-with-taints",
    "v",
    "cgroup-driver",
    "cert-dir",
    "root-dir",
    "cloud-provider",
    "provider-id",
    "resolv-conf",
    "max-pods",
    "cluster-dns",
    "cluster-domain",
    "runtime-request-timeout",
    "volume-plugin-dir",
    "feature-gates",
    "eviction-hard",
    "kube-reserved",
    "system-reserved",
    "address",
    "port",
    "read-only-port",
    "node-status-update-frequency",
    "pod-manifest-path",
    "log-file",
    "logging-format",
    "tls-cert-file",
    "tls-private-key-file",
    "tls-cipher-suites",
    "tls-min-version",
    "client-ca-file",
    "authorization-mode",
    "healthz-port",
    "healthz-bind-address",
    "cgroup-root",
    "kubelet-cgroups",
    "system-cgroups",
    "runtime-cgroups",
    "vmodule",
    "pod-cidr",
    "seccomp-default",
    "max-open-files",
    "serialize-image-pulls",
}


BOOL_FLAGS = {
    "fail-swap-on",
    "register-node",
    "rotate-certificates",
    "rotate-server-certificates",
    "anonymous-auth",
    "authentication-token-webhook",
    "logtostderr",
    "alsologtostderr",
    "protect-kernel-defaults",
    "make-iptables-util-chains",
}


class FlagError(Exception):
    pass


def parse_kubelet_flags(args):
    out = {}
    i = 0
    while i < len(args):
        a = args[i]
        i += 1
        if not a.startswith("-") or a in ("-", "--"):
            raise FlagError('unknown command %r for "kubelet"' % a)
        name, eq, value = a.lstrip("-").partition("=")
        if name in BOOL_FLAGS:
            out[name] = (value.lower() in ("1", "t", "true")) if eq else True
        elif name in VALUE_FLAGS:
            if not eq:
                if i >= len(args):
                    raise FlagError("flag needs an argument: --%s" % name)
                value = args[i]
                i += 1
            out[name] = value
        else:
            raise FlagError("unknown flag: --%s" % name)
    return out


def swap_on():
    lines = [ln for ln in read_host_text("/proc/swaps").splitlines() if ln.strip()]
    return len(lines) > 1


def socket_path(endpoint):
    return endpoint[len("unix://") :] if endpoint.startswith("unix://") else endpoint


def is_socket(path):
    try:
        return stat.S_ISSOCK(os.stat(hp(path)).st_mode)
    except OSError:
        return False


def containerd_version():
    try:
        out = subprocess.run(["containerd", "--version"], capture_output=True, text=True, timeout=10).stdout.split()
        return out[2] if len(out) >= 3 else "stand-in"
    except (OSError, subprocess.SubprocessError):
        return "stand-in"


def parse_labels(text):
    labels = {}
    for part in (text or "").split(","):
        if part.strip():
            k, _, v = part.strip().partition("=")
            labels[k] = v
    return labels


def parse_taints(text):
    try:
        return parse_node_taints([text] if text else [])
    except Fatal as e:
        raise FlagError(str(e))


def kubelet_main(args):
    if any(a in ("--version", "-version") or a.startswith("--version=") for a in args):
        print(version_line())
        return 0
    if any(a in ("-h", "--help") for a in args):
        print("kubelet (%s): the node agent. See provisioner_lab/standin/README.md." % STANDIN_NOTE)
        return 0
    try:
        flags = parse_kubelet_flags(args)
    except FlagError as e:
        sys.stderr.write("Error: %s\n" % e)
        log("error", '"command failed" err="%s"' % e)
        return 1
    util.DEBUG = str(flags.get("v", "0")).isdigit() and int(flags.get("v", "0")) >= 4
    config_path = flags.get("config")
    cfg = {}
    if config_path:
        raw = read_file(hp(config_path))
        if raw is None:
            log(
                "error",
                '"command failed" err="failed to load kubelet config file, path: %s, '
                "error: failed to load Kubelet config file %s, error failed to read kubelet "
                'config file \\"%s\\", error: open %s: no such file or directory"' % (config_path, config_path, config_path, config_path),
            )
            return 1
        cfg = yaml().safe_load(raw) or {}
    fail_swap_on = flags.get("fail-swap-on", cfg.get("failSwapOn", True))
    if fail_swap_on and swap_on():
        log(
            "error",
            '"command failed" err="failed to run Kubelet: running with swap on is not '
            'supported, please disable swap or set --fail-swap-on flag to false"',
        )
        return 1
    kubeconfig_path = flags.get("kubeconfig")
    if not kubeconfig_path or not os.path.exists(hp(kubeconfig_path)):
        boot = flags.get("bootstrap-kubeconfig")
        if boot and os.path.exists(hp(boot)):
            log(
                "error",
                '"command failed" err="failed to run Kubelet: the stand-in kubelet does '
                'no TLS bootstrap of its own; kubeadm join writes %s"' % KUBELET_CONF,
            )
        else:
            log(
                "error",
                '"command failed" err="failed to run Kubelet: unable to load bootstrap '
                'kubeconfig: stat %s: no such file or directory"' % (boot or BOOTSTRAP_KUBELET_CONF),
            )
        return 1
    endpoint = flags.get("container-runtime-endpoint") or cfg.get("containerRuntimeEndpoint") or DEFAULT_CRI
    if not is_socket(socket_path(endpoint)):
        log(
            "error",
            '"command failed" err="failed to run Kubelet: validate service connection: '
            'validate CRI v1 runtime API for endpoint \\"%s\\": rpc error: code = Unavailable desc '
            '= connection error: desc = \\"transport: Error while dialing: dial unix %s: connect: '
            'no such file or directory\\""' % (endpoint, socket_path(endpoint)),
        )
        return 1
    try:
        kc = Kubeconfig(kubeconfig_path)
        taints = parse_taints(flags.get("register-with-taints"))
    except (OSError, ValueError, FlagError) as e:
        log("error", '"command failed" err="failed to run Kubelet: %s"' % e)
        return 1
    node_name = (flags.get("hostname-override") or hostname()).lower()
    node_ips = [x.strip() for x in (flags.get("node-ip") or "").split(",") if x.strip()]
    labels = parse_labels(flags.get("node-labels"))
    runtime = "containerd://" + containerd_version()
    log("info", 'Stand-in kubelet %s (%s) starting for node "%s"' % (STANDIN_VERSION, STANDIN_NOTE, node_name))
    stop = threading.Event()
    install_signal_handlers(stop)
    api = None
    api_raw = None

    def source_ip():
        """The address this host uses towards its API server (a UDP connect sends nothing)."""
        import socket as _socket

        try:
            probe = _socket.socket(_socket.AF_INET6 if ":" in kc.host else _socket.AF_INET, _socket.SOCK_DGRAM)
            try:
                probe.connect((kc.host, kc.port))
                return probe.getsockname()[0]
            finally:
                probe.close()
        except OSError:
            return None

    def reg_fn(local_ip):
        info = local_node_info(STANDIN_VERSION)
        info["containerRuntimeVersion"] = runtime
        info["kubeProxyVersion"] = ""
        return {
            "nodeName": node_name,
            "role": "kubelet",
            "hostname": node_name,
            "internalIPs": node_ips or [local_ip or source_ip() or "127.0.0.1"],
            "externalIPs": [],
            "labels": labels,
            "taints": taints,
            "nodeInfo": info,
            "capacity": local_capacity(),
            "nodeArgs": [],
        }

    client = KubeletNodeClient(ApiClient(kc.host, kc.port, kc.ssl_context()), kc.server)
    loop = NodeLoop(client, reg_fn, None, stop, reregister=False)  # a deleted Node stays deleted until a restart
    threading.Thread(target=loop.run, name="node", daemon=True).start()
    # the static pod "kube-apiserver": started when its manifest appears, stopped when it goes
    while True:
        flags_api, raw = manifest_command(APISERVER_MANIFEST)
        if raw != api_raw:
            if api is not None:
                log("info", "Static pod kube-apiserver changed or removed; stopping it")
                api.shutdown()
                api = None
            if flags_api is not None:
                try:
                    api = ApiServer(flags_api, stop)
                    api.start()
                except (Fatal, OSError) as e:
                    log("error", "Failed to start static pod kube-apiserver: %s" % e)
                    api = None
            api_raw = raw if api is not None or flags_api is None else None
        if stop.wait(2.0):
            break
    if api is not None:
        api.shutdown()
    log("info", "Stand-in kubelet stopped")
    return 0


def main(argv):
    util.set_log_writer(klog)  # the k3s library code logs kubelet-style lines from now on
    try:
        return kubelet_main(list(argv[1:]))
    except Fatal as e:
        log("error", '"command failed" err="%s"' % e)
        return 1
