"""TEST DOUBLE (kubeadm stand-in, not the real kubeadm).

Flags and configuration files: v1beta3/v1beta4 documents, strict shapes, defaults,
KubeletConfiguration merged over kubeadm's defaults.

Upstream: kubernetes/kubernetes cmd/kubeadm/app/apis/kubeadm/v1beta4/types.go,
cmd/kubeadm/app/util/config/common.go
"""

from __future__ import annotations

import datetime
import ipaddress
import re

from ..k3s.certs import url_host
from ..k3s.netaddr import default_route_address
from ..k3s.util import hostname, hp, read_file
from ..kubelet.kubeconfig import yaml
from ..kubelet.paths import DEFAULT_CRI, MANIFESTS
from .base import API_VERSIONS, KUBEADM_GROUP, OLD_API_VERSIONS, PKI, KubeadmError, say


def parse_flags(args, value_flags, bool_flags=()):
    flags, positional = {}, []
    i = 0
    while i < len(args):
        a = args[i]
        i += 1
        if a.startswith("-") and a not in ("-", "--"):
            name, eq, value = a.lstrip("-").partition("=")
            if name in bool_flags:
                flags[name] = value.lower() in ("", "1", "t", "true") if eq else True
            elif name in value_flags:
                if not eq:
                    if i >= len(args):
                        raise KubeadmError("flag needs an argument: --%s" % name)
                    value = args[i]
                    i += 1
                if name in flags and name in ("ignore-preflight-errors", "apiserver-cert-extra-sans", "usages", "groups"):
                    value = flags[name] + "," + value
                flags[name] = value
            else:
                raise KubeadmError("unknown flag: --%s" % name)
        else:
            positional.append(a)
    return flags, positional


def load_config(path):
    """{kind: (version, doc)} of a kubeadm config file (multi-document YAML)."""
    raw = read_file(hp(path))
    if raw is None:
        raise KubeadmError('unable to read config from "%s" : open %s: no such file or directory' % (path, path))
    try:
        docs = [d for d in yaml().safe_load_all(raw) if d]
    except Exception as e:  # noqa: BLE001 - yaml errors
        raise KubeadmError("error converting YAML to JSON: %s" % e)
    out = {}
    for d in docs:
        if not isinstance(d, dict):
            raise KubeadmError("invalid configuration: every document must be a mapping")
        av, kind = str(d.get("apiVersion", "")), str(d.get("kind", ""))
        group, _, version = av.rpartition("/")
        if group == KUBEADM_GROUP:
            if version in OLD_API_VERSIONS:
                raise KubeadmError(
                    'your configuration file uses an old API spec: "%s" (kind: "%s"). Please use '
                    "kubeadm %s instead and run 'kubeadm config migrate --old-config old.yaml "
                    "--new-config new.yaml', which will write the new, similar spec using a newer "
                    "API version." % (av, kind, OLD_API_VERSIONS[version])
                )
            if version not in API_VERSIONS or kind not in ("InitConfiguration", "ClusterConfiguration", "JoinConfiguration"):
                raise KubeadmError(
                    'no kind "%s" is registered for version "%s" in scheme '
                    '"k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/scheme/'
                    'scheme.go:31"' % (kind, av)
                )
        elif (av, kind) not in (
            ("kubelet.config.k8s.io/v1beta1", "KubeletConfiguration"),
            ("kubeproxy.config.k8s.io/v1alpha1", "KubeProxyConfiguration"),
        ):
            say(
                "W%s [config] WARNING: Ignored configuration document with GroupVersionKind %s, "
                "Kind=%s" % (datetime.datetime.now().strftime("%m%d %H:%M:%S"), av, kind)
            )
            continue
        if kind in out:
            raise KubeadmError("duplicate %s document in %s" % (kind, path))
        out[kind] = (version, d)
    return out


def extra_args(value, version, field):
    """[(name, value)] from v1beta4's [{name, value}] or v1beta3's {name: value}."""
    if value is None:
        return []
    if version == "v1beta4":
        if not isinstance(value, list):
            raise KubeadmError("json: cannot unmarshal object into Go struct field %s of type []v1beta4.Arg" % field)
        out = []
        for a in value:
            if not isinstance(a, dict) or "name" not in a:
                raise KubeadmError("%s: every entry needs name and value" % field)
            out.append((str(a["name"]), str(a.get("value", ""))))
        return out
    if not isinstance(value, dict):
        raise KubeadmError("json: cannot unmarshal array into Go struct field %s of type map[string]string" % field)
    return [(str(k), str(v)) for k, v in value.items()]


def split_endpoint(endpoint, default_port):
    if not endpoint:
        return None, default_port
    m = re.match(r"^\[([^\]]+)\](?::(\d+))?$", endpoint) or re.match(r"^([^:]+)(?::(\d+))?$", endpoint)
    if not m:
        raise KubeadmError("invalid controlPlaneEndpoint %r" % endpoint)
    return m.group(1), int(m.group(2) or default_port)


def join_hostport(host, port):
    return "%s:%d" % (url_host(host), port)


class Registration:
    """nodeRegistration of an Init/JoinConfiguration."""

    def __init__(self, doc, version, ignore_flag):
        nr = doc.get("nodeRegistration") or {}
        self.name = str(nr.get("name") or hostname()).lower()
        self.cri_socket = nr.get("criSocket") or DEFAULT_CRI
        if not self.cri_socket.startswith("unix://"):
            self.cri_socket = "unix://" + self.cri_socket
        self.kubelet_extra = extra_args(nr.get("kubeletExtraArgs"), version, "NodeRegistrationOptions.nodeRegistration.kubeletExtraArgs")
        self.taints = nr.get("taints")
        self.ignore = {x.strip().lower() for x in list(nr.get("ignorePreflightErrors") or []) + (ignore_flag or "").split(",") if x.strip()}


class InitConfig:
    def __init__(self, docs, flags):
        version, init = docs.get("InitConfiguration", (API_VERSIONS[-1], {}))
        cversion, cluster = docs.get("ClusterConfiguration", (version, {}))
        self.version = version
        self.reg = Registration(init, version, flags.get("ignore-preflight-errors"))
        lae = init.get("localAPIEndpoint") or {}
        self.advertise = str(lae.get("advertiseAddress") or default_route_address())
        self.bind_port = int(lae.get("bindPort") or 6443)
        self.tokens = init.get("bootstrapTokens") or [{}]
        self.certificate_key = str(init.get("certificateKey") or "")
        self.cluster_doc = cluster
        self.cluster_name = cluster.get("clusterName") or "kubernetes"
        kv = str(cluster.get("kubernetesVersion") or "stable-1")
        self.kubernetes_version = kv
        host, port = split_endpoint(cluster.get("controlPlaneEndpoint") or "", self.bind_port)
        self.endpoint = join_hostport(host or self.advertise, port)
        self.endpoint_host = host or self.advertise
        net = cluster.get("networking") or {}
        self.pod_subnet = net.get("podSubnet") or ""
        self.service_subnet = net.get("serviceSubnet") or "10.96.0.0/12"
        self.dns_domain = net.get("dnsDomain") or "cluster.local"
        api = cluster.get("apiServer") or {}
        self.cert_sans = [str(s) for s in api.get("certSANs") or []]
        self.api_extra = extra_args(api.get("extraArgs"), cversion, "ClusterConfiguration.apiServer.extraArgs")
        cm = cluster.get("controllerManager") or {}
        self.cm_extra = extra_args(cm.get("extraArgs"), cversion, "ClusterConfiguration.controllerManager.extraArgs")
        kcfg = docs.get("KubeletConfiguration", (None, {}))[1]
        self.kubelet_config = kubelet_config(kcfg, self.service_subnet, self.dns_domain)
        try:
            self.service_ip = str(ipaddress.ip_network(self.service_subnet.split(",")[0], strict=False).network_address + 1)
        except ValueError:
            raise KubeadmError("networking.serviceSubnet: Invalid value: %r" % self.service_subnet)


def kubelet_config(doc, service_subnet="10.96.0.0/12", dns_domain="cluster.local"):
    """The KubeletConfiguration kubeadm writes: its defaults under the user's document."""
    try:
        dns = str(ipaddress.ip_network(service_subnet.split(",")[0], strict=False).network_address + 10)
    except ValueError:
        dns = "10.96.0.10"
    cfg = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True}, "x509": {"clientCAFile": PKI + "/ca.crt"}},
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "systemd",
        "clusterDNS": [dns],
        "clusterDomain": dns_domain,
        "containerRuntimeEndpoint": "",
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "rotateCertificates": True,
        "staticPodPath": MANIFESTS,
    }
    cfg.update({k: v for k, v in (doc or {}).items()})
    return cfg
