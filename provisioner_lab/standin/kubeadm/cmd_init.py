"""TEST DOUBLE (kubeadm stand-in, not the real kubeadm).

`kubeadm init`: preflight, PKI, kubeconfigs, manifests, kubelet files, wait for the API,
uploaded configs, control-plane label and taint, bootstrap token, cluster-info.

Upstream: kubernetes/kubernetes cmd/kubeadm/app/cmd/init.go, cmd/kubeadm/app/cmd/phases/init/
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import subprocess
import time

from ..k3s.certs import PKI as k3s_PKI
from ..k3s.certs import dedupe
from ..k3s.util import atomic_write, hostname, hp, read_file
from ..kubelet.kubeconfig import crypto, kubeconfig_text, sign_client_cert, yaml
from ..kubelet.paths import KUBEADM_FLAGS_ENV, KUBELET_CONF, KUBELET_CONFIG, KUBELET_PKI, MANIFESTS
from ..kubelet.tokens import parse_go_duration
from ..kubelet.version import STANDIN_NOTE, STANDIN_VERSION
from .base import ADMIN_CONF, CONTROL_PLANE_LABEL, ETC_K8S, EXCLUDE_LB_LABEL, PKI, KubeadmError, fmt_duration, say, wait_seconds
from .cluster import admin_client, api, create_or_replace, create_token, join_command, wait_for
from .config import InitConfig, join_hostport, load_config, parse_flags
from .copycerts import KEY_SIZE, new_certificate_key, upload_certs, valid_key
from .manifests import write_manifests
from .pki import Certs
from .preflight import Preflight, common_checks, port_free

INIT_FLAGS = {
    "config",
    "ignore-preflight-errors",
    "v",
    "apiserver-advertise-address",
    "apiserver-bind-port",
    "control-plane-endpoint",
    "pod-network-cidr",
    "service-cidr",
    "kubernetes-version",
    "node-name",
    "cri-socket",
    "token",
    "token-ttl",
    "apiserver-cert-extra-sans",
    "service-dns-domain",
    "skip-phases",
    "certificate-key",
    "patches",
    "image-repository",
    "feature-gates",
}


def init_docs_from_flags(flags):
    """An in-memory v1beta4 config for `kubeadm init` run with flags instead of --config."""
    init = {"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "InitConfiguration", "nodeRegistration": {}, "localAPIEndpoint": {}}
    cluster = {"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "ClusterConfiguration", "networking": {}, "apiServer": {}}
    if flags.get("node-name"):
        init["nodeRegistration"]["name"] = flags["node-name"]
    if flags.get("cri-socket"):
        init["nodeRegistration"]["criSocket"] = flags["cri-socket"]
    if flags.get("apiserver-advertise-address"):
        init["localAPIEndpoint"]["advertiseAddress"] = flags["apiserver-advertise-address"]
    if flags.get("apiserver-bind-port"):
        init["localAPIEndpoint"]["bindPort"] = int(flags["apiserver-bind-port"])
    if flags.get("token"):
        init["bootstrapTokens"] = [{"token": flags["token"], "ttl": flags.get("token-ttl", "24h0m0s")}]
    for flag, key in (("control-plane-endpoint", "controlPlaneEndpoint"), ("kubernetes-version", "kubernetesVersion")):
        if flags.get(flag):
            cluster[key] = flags[flag]
    for flag, key in (("pod-network-cidr", "podSubnet"), ("service-cidr", "serviceSubnet"), ("service-dns-domain", "dnsDomain")):
        if flags.get(flag):
            cluster["networking"][key] = flags[flag]
    if flags.get("apiserver-cert-extra-sans"):
        cluster["apiServer"]["certSANs"] = flags["apiserver-cert-extra-sans"].split(",")
    return {"InitConfiguration": ("v1beta4", init), "ClusterConfiguration": ("v1beta4", cluster)}


def resolve_version(v):
    if re.match(r"^v?\d+\.\d+\.\d+", v):
        return v if v.startswith("v") else "v" + v
    say(
        "W%s could not fetch a Kubernetes version from the internet: unable to get URL "
        '"https://dl.k8s.io/release/%s.txt" (stand-in: never downloads)' % (datetime.datetime.now().strftime("%m%d %H:%M:%S"), v)
    )
    say("W%s falling back to the local client version: %s" % (datetime.datetime.now().strftime("%m%d %H:%M:%S"), STANDIN_VERSION))
    return STANDIN_VERSION


def init_docs(flags):
    """The configuration documents of `kubeadm init` (and its phases): --config, or the flags.
    Upstream lets only --skip-* and a few others go with --config (ValidateMixedArguments)."""
    if flags.get("config"):
        allowed = ("config", "ignore-preflight-errors", "v", "dry-run", "upload-certs", "patches", "node-name", "kubeconfig")
        mixed = [f for f in flags if f not in allowed and not f.startswith("skip-")]
        if mixed:
            raise KubeadmError("can not mix '--config' with arguments %s" % sorted(mixed))
        docs = load_config(flags["config"])
        if "JoinConfiguration" in docs:
            raise KubeadmError("kubeadm init: found a JoinConfiguration in %s" % flags["config"])
        return docs
    return init_docs_from_flags(flags)


def certificate_key(cfg, flags):
    """The key of the kubeadm-certs Secret: --certificate-key or InitConfiguration.certificateKey,
    else a new one (printed unless --skip-certificate-key-print)."""
    key = flags.get("certificate-key") or cfg.certificate_key
    if key and not valid_key(key):
        raise KubeadmError("error decoding certificate key: the certificate key must be a hex string of %d bytes" % KEY_SIZE)
    return key or new_certificate_key()


def cmd_init(args):
    bools = ("dry-run", "upload-certs", "skip-token-print", "skip-certificate-key-print")
    flags, positional = parse_flags(args, INIT_FLAGS | {"kubeconfig"}, bools)
    if positional[:2] == ["phase", "upload-certs"] and len(positional) == 2:
        return phase_upload_certs(flags)
    if positional:
        raise KubeadmError('unknown command "%s" for "kubeadm init" (stand-in: of the phases only upload-certs)' % positional[0])
    docs = init_docs(flags)
    cfg = InitConfig(docs, flags)
    version = resolve_version(cfg.kubernetes_version)
    cfg.kubernetes_version = version
    say("[init] Using Kubernetes version: %s" % version)
    say("[preflight] Running pre-flight checks")
    pf = Preflight(cfg.reg.ignore)
    common_checks(pf, cfg.reg, control_plane=True)
    if not port_free(cfg.bind_port):
        pf.error("Port-%d" % cfg.bind_port, "Port %d is in use" % cfg.bind_port)
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"):
        path = "%s/%s.yaml" % (MANIFESTS, name)
        if os.path.exists(hp(path)):
            pf.error("FileAvailable-" + path.replace("/", "-"), "%s already exists" % path)
    etcd_dir = hp("/var/lib/etcd")
    if os.path.isdir(etcd_dir) and os.listdir(etcd_dir):
        pf.error("DirAvailable--var-lib-etcd", "/var/lib/etcd is not empty")
    pf.finish()
    say("[preflight] Pulling images required for setting up a Kubernetes cluster")
    say("[preflight] (stand-in: no container images are pulled)")

    # certs
    say('[certs] Using certificateDir folder "%s"' % PKI)
    certs = Certs(hp(PKI))
    ca = certs.ca("ca", "kubernetes")
    control_plane_certs(certs, cfg, ca)
    ca_pem = read_file(certs.pki.path("ca.crt"))

    # kubeconfigs
    say('[kubeconfig] Using kubeconfig folder "%s"' % ETC_K8S)
    endpoint_url = "https://" + cfg.endpoint
    local_url = "https://" + join_hostport(cfg.advertise, cfg.bind_port)
    write_kubeconfigs(ca, ca_pem, cfg.cluster_name, endpoint_url, local_url, super_admin=True)
    write_node_credentials(ca, ca_pem, cfg.reg.name, endpoint_url, cfg.cluster_name)
    say('[kubeconfig] Writing "kubelet.conf" kubeconfig file')
    write_manifests(cfg)
    write_kubelet_files(cfg.kubelet_config, cfg.reg)
    restart_kubelet()

    # wait for the API
    say('[wait-control-plane] Waiting for the kubelet to boot up the control plane as static Pods from directory "%s"' % MANIFESTS)
    say("[api-check] Waiting for a healthy API server. This can take up to %s" % ("%dm%ds" % divmod(int(wait_seconds()), 60)))
    client, _kc = admin_client()
    t0 = time.monotonic()

    def readyz():
        status, body = client.call("GET", "/readyz", raw=True)
        return status == 200 and body.strip() == b"ok"

    wait_for("the API server to be healthy at %s" % endpoint_url, readyz, wait_seconds())
    say("[api-check] The API server is healthy after %s" % fmt_duration(time.monotonic() - t0))

    # upload-config
    cluster_doc = dict(cfg.cluster_doc)
    cluster_doc.setdefault("apiVersion", "kubeadm.k8s.io/v1beta4")
    cluster_doc.setdefault("kind", "ClusterConfiguration")
    cluster_doc["kubernetesVersion"] = version  # controlPlaneEndpoint stays as given (none: empty)
    cluster_doc.setdefault("clusterName", cfg.cluster_name)
    say('[upload-config] Storing the configuration used in ConfigMap "kubeadm-config" in the "kube-system" Namespace')
    create_or_replace(
        client,
        "/api/v1/namespaces/kube-system/configmaps",
        "kubeadm-config",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "kubeadm-config", "namespace": "kube-system"},
            "data": {"ClusterConfiguration": yaml().safe_dump(cluster_doc, sort_keys=True)},
        },
    )
    say('[kubelet] Creating a ConfigMap "kubelet-config" in namespace kube-system with the configuration for the kubelets in the cluster')
    create_or_replace(
        client,
        "/api/v1/namespaces/kube-system/configmaps",
        "kubelet-config",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "kubelet-config", "namespace": "kube-system"},
            "data": {"kubelet": yaml().safe_dump(cfg.kubelet_config, sort_keys=True)},
        },
    )

    # upload-certs
    if flags.get("upload-certs"):
        upload_certs(client, certificate_key(cfg, flags), print_key=not flags.get("skip-certificate-key-print"))
    else:
        say("[upload-certs] Skipping phase. Please see --upload-certs")

    # mark-control-plane
    mark_control_plane(client, cfg.reg)

    # bootstrap-token
    token = None
    for t in cfg.tokens:
        ttl = parse_go_duration(t.get("ttl", "24h0m0s"))
        tok = create_token(
            client,
            t.get("token"),
            ttl,
            tuple(t.get("usages") or ("signing", "authentication")),
            tuple(t.get("groups") or ("system:bootstrappers:kubeadm:default-node-token",)),
            t.get("description", ""),
        )
        token = token or tok
    say("[bootstrap-token] Using token: %s" % token)
    say("[bootstrap-token] Configuring bootstrap tokens, cluster-info ConfigMap, RBAC Roles")
    say('[bootstrap-token] Creating the "cluster-info" ConfigMap in the "kube-public" namespace')
    create_or_replace(
        client,
        "/api/v1/namespaces/kube-public/configmaps",
        "cluster-info",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cluster-info", "namespace": "kube-public"},
            "data": {"kubeconfig": kubeconfig_text(endpoint_url, ca_pem)},
        },
    )
    say('[kubelet-finalize] Updating "%s/kubelet.conf" to point to a rotatable kubelet client certificate and key' % ETC_K8S)
    say("[addons] (stand-in) CoreDNS and kube-proxy are not deployed by the stand-in")
    say()
    say("Your Kubernetes control-plane has initialized successfully!")
    say()
    say("To use the cluster as a regular user, copy the admin kubeconfig:")
    say()
    say("  mkdir -p $HOME/.kube")
    say("  sudo cp -i %s $HOME/.kube/config" % ADMIN_CONF)
    say("  sudo chown $(id -u):$(id -g) $HOME/.kube/config")
    say()
    say("As root you can also run:")
    say()
    say("  export KUBECONFIG=%s" % ADMIN_CONF)
    say()
    say('Next, deploy a pod network to the cluster with "kubectl apply -f [podnetwork].yaml";')
    say("see https://kubernetes.io/docs/concepts/cluster-administration/addons/")
    say()
    say("Then join worker nodes by running this on each of them as root:")
    say()
    cmd = join_command(cfg.endpoint, token, ca_pem)
    head, _, tail = cmd.partition(" --discovery-token-ca-cert-hash ")
    say("%s \\\n\t--discovery-token-ca-cert-hash %s" % (head, tail))
    say()
    say("(kubeadm %s: %s)" % (STANDIN_VERSION, STANDIN_NOTE))
    return 0


def mark_control_plane(client, reg):
    """Wait for the node to register, then label and taint it as a control plane."""
    name = reg.name
    wait_for('the node "%s" to register' % name, lambda: client.call("GET", "/api/v1/nodes/" + name)[0] == 200, wait_seconds())
    taints = reg.taints
    if taints is None:
        taints = [{"key": CONTROL_PLANE_LABEL, "effect": "NoSchedule"}]
    say(
        "[mark-control-plane] Marking the node %s as control-plane by adding the labels: [%s %s]"
        % (name, CONTROL_PLANE_LABEL, EXCLUDE_LB_LABEL)
    )
    if taints:
        say(
            "[mark-control-plane] Marking the node %s as control-plane by adding the taints [%s]"
            % (name, " ".join("%s:%s" % (t["key"], t["effect"]) for t in taints))
        )
    _, node = api(client, "GET", "/api/v1/nodes/" + name)
    have = node.get("spec", {}).get("taints") or []
    keys = {(t.get("key"), t.get("effect")) for t in have}
    patch = {
        "metadata": {"labels": {CONTROL_PLANE_LABEL: "", EXCLUDE_LB_LABEL: ""}},
        "spec": {"taints": have + [t for t in taints if (t.get("key"), t.get("effect")) not in keys]},
    }
    api(client, "PATCH", "/api/v1/nodes/" + name, patch, ctype="application/strategic-merge-patch+json")


def write_kubeconfigs(ca, ca_pem, cluster_name, endpoint_url, local_url, super_admin):
    """admin.conf (at the control-plane endpoint), super-admin.conf (init only), and the
    controller-manager's and scheduler's kubeconfigs (at this control plane's own API)."""
    kc_pki = k3s_PKI(hp(ETC_K8S + "/.standin-kubeconfig-pki"))
    files = [("admin.conf", "kubernetes-admin", ["kubeadm:cluster-admins"], endpoint_url)]
    if super_admin:
        files.append(("super-admin.conf", "kubernetes-super-admin", ["system:masters"], endpoint_url))
    files += [
        ("controller-manager.conf", "system:kube-controller-manager", [], local_url),
        ("scheduler.conf", "system:kube-scheduler", [], local_url),
    ]
    for fname, cn, orgs, url in files:
        path = "%s/%s" % (ETC_K8S, fname)
        if os.path.exists(hp(path)):
            say('[kubeconfig] Using existing kubeconfig file: "%s"' % path)
            continue
        name = fname[:-5]
        kc_pki.ensure_leaf(name, ca, cn, orgs=orgs, server=False)
        cert_pem, key_pem = read_file(kc_pki.path(name + ".crt")), read_file(kc_pki.path(name + ".key"))
        text = kubeconfig_text(url, ca_pem, cluster_name, cn, cert_pem=cert_pem, key_pem=key_pem)
        atomic_write(hp(path), text, 0o600)
        say('[kubeconfig] Writing "%s" kubeconfig file' % fname)
    shutil.rmtree(hp(ETC_K8S + "/.standin-kubeconfig-pki"), ignore_errors=True)


def control_plane_certs(certs, cfg, ca):
    """The certificates of one control plane (the CAs exist): the API server's serving
    certificate for its names and addresses, its clients, and this etcd member's."""
    sans = [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc." + cfg.dns_domain,
        cfg.reg.name,
        cfg.service_ip,
        cfg.advertise,
        cfg.endpoint_host,
        *cfg.cert_sans,
    ]
    certs.leaf("apiserver", ca, "kube-apiserver", sans=dedupe(sans))
    certs.leaf("apiserver-kubelet-client", ca, "kube-apiserver-kubelet-client", orgs=["kubeadm:cluster-admins"], server=False)
    fp_ca = certs.ca("front-proxy-ca", "front-proxy-ca")
    certs.leaf("front-proxy-client", fp_ca, "front-proxy-client", server=False)
    etcd_ca = certs.ca("etcd/ca", "etcd-ca")
    etcd_sans = dedupe(["localhost", cfg.reg.name, cfg.advertise, "127.0.0.1", "::1"])
    certs.leaf("etcd/server", etcd_ca, cfg.reg.name, sans=etcd_sans)
    certs.leaf("etcd/peer", etcd_ca, cfg.reg.name, sans=etcd_sans)
    certs.leaf("etcd/healthcheck-client", etcd_ca, "kube-etcd-healthcheck-client", server=False)
    certs.leaf("apiserver-etcd-client", etcd_ca, "kube-apiserver-etcd-client", server=False)
    certs.service_account_key()


def phase_upload_certs(flags):
    """`kubeadm init phase upload-certs --upload-certs`: store the certificates of this control
    plane in a new kubeadm-certs Secret (its two hours start again), under the given key or a new
    one, talking to the cluster as admin."""
    if not flags.get("upload-certs"):
        say("[upload-certs] Skipping phase. Please see --upload-certs")
        return 0
    cfg = InitConfig(init_docs(flags), flags)
    client, _kc = admin_client(flags.get("kubeconfig", ADMIN_CONF))
    upload_certs(client, certificate_key(cfg, flags), print_key=not flags.get("skip-certificate-key-print"))
    return 0


def write_node_credentials(ca, ca_pem, node_name, server_url, cluster_name="kubernetes", cert_pem=None, key_pem=None):
    """The node's client certificate under /var/lib/kubelet/pki (kubelet-client-current.pem)
    and /etc/kubernetes/kubelet.conf pointing at it; made here from the CA (init) or given
    (join, signed by the cluster)."""
    c = crypto()
    if cert_pem is None:
        key = c.ec.generate_private_key(c.ec.SECP256R1())
        ca_cert, ca_key = ca
        cert_pem = sign_client_cert(ca_cert, ca_key, key.public_key(), "system:node:" + node_name, ["system:nodes"])
        key_pem = key.private_bytes(
            c.serialization.Encoding.PEM, c.serialization.PrivateFormat.TraditionalOpenSSL, c.serialization.NoEncryption()
        )
    pki = hp(KUBELET_PKI)
    os.makedirs(pki, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H-%M-%S")
    pem_name = "kubelet-client-%s.pem" % stamp
    atomic_write(os.path.join(pki, pem_name), cert_pem + key_pem, 0o600)
    current = os.path.join(pki, "kubelet-client-current.pem")
    tmp = current + ".tmp"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(pem_name, tmp)  # relative, so that it also resolves under K3S_STANDIN_ROOT
    os.replace(tmp, current)
    cur = KUBELET_PKI + "/kubelet-client-current.pem"
    text = kubeconfig_text(
        server_url,
        ca_pem,
        cluster_name,
        "system:node:" + node_name,
        context="system:node:%s@%s" % (node_name, cluster_name),
        cert_file=cur,
        key_file=cur,
    )
    atomic_write(hp(KUBELET_CONF), text, 0o600)


def write_kubelet_files(config, reg):
    say('[kubelet-start] Writing kubelet environment file with flags to file "%s"' % KUBEADM_FLAGS_ENV)
    args = ["--container-runtime-endpoint=" + reg.cri_socket]
    if reg.name != hostname().lower():
        args.append("--hostname-override=" + reg.name)
    args += ["--%s=%s" % kv for kv in reg.kubelet_extra]
    atomic_write(hp(KUBEADM_FLAGS_ENV), 'KUBELET_KUBEADM_ARGS="%s"\n' % " ".join(args), 0o644)
    say('[kubelet-start] Writing kubelet configuration to file "%s"' % KUBELET_CONFIG)
    atomic_write(hp(KUBELET_CONFIG), yaml().safe_dump(config, sort_keys=True), 0o644)


def restart_kubelet():
    say("[kubelet-start] Starting the kubelet")
    try:
        proc = subprocess.run(["systemctl", "restart", "kubelet"], capture_output=True, text=True, timeout=120)
    except OSError as e:
        raise KubeadmError("couldn't restart the kubelet: %s" % e, "kubelet-start")
    if proc.returncode != 0:
        raise KubeadmError("couldn't restart the kubelet: %s" % (proc.stderr.strip() or proc.returncode), "kubelet-start")
