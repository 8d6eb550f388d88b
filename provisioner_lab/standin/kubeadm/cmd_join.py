"""TEST DOUBLE (kubeadm stand-in, not the real kubeadm).

`kubeadm join`: discovery with the token's JWS and the CA pin, the node certificate,
kubelet files, kubelet restart, wait for the Node. A control plane (controlPlane in the
JoinConfiguration, or --control-plane) goes on in controlplane.py after reading kubeadm-config.

Upstream: kubernetes/kubernetes cmd/kubeadm/app/cmd/join.go, cmd/kubeadm/app/discovery/token/token.go
"""

from __future__ import annotations

import base64
import hmac
import os
import ssl
import urllib.parse

from ..k3s.util import add_secret, atomic_write, hp
from ..kubelet.client import ApiClient
from ..kubelet.kubeconfig import Kubeconfig, ca_public_key_hash, crypto, yaml
from ..kubelet.paths import BOOTSTRAP_TOKEN_RE, KUBELET_CONF, MANIFESTS
from ..kubelet.tokens import jws_detached, parse_go_duration
from ..kubelet.version import STANDIN_NOTE, STANDIN_VERSION
from .base import PKI, KubeadmError, say, wait_seconds
from .cluster import api, wait_for
from .cmd_init import restart_kubelet, write_kubelet_files, write_node_credentials
from .config import Registration, kubelet_config, load_config, parse_flags, split_endpoint
from .controlplane import join_control_plane
from .manifests import peer_port
from .preflight import Preflight, common_checks, port_free

JOIN_FLAGS = {
    "config",
    "ignore-preflight-errors",
    "v",
    "token",
    "discovery-token",
    "tls-bootstrap-token",
    "discovery-token-ca-cert-hash",
    "node-name",
    "cri-socket",
    "apiserver-advertise-address",
    "certificate-key",
    "apiserver-bind-port",
    "patches",
    "skip-phases",
}


class JoinConfig:
    def __init__(self, docs, flags, positional):
        if docs is None:
            endpoint = positional[0] if positional else ""
            hashes = [h for h in (flags.get("discovery-token-ca-cert-hash") or "").split(",") if h]
            token = flags.get("discovery-token") or flags.get("token") or ""
            doc = {
                "discovery": {
                    "bootstrapToken": {
                        "apiServerEndpoint": endpoint,
                        "token": token,
                        "caCertHashes": hashes,
                        "unsafeSkipCAVerification": bool(flags.get("discovery-token-unsafe-skip-ca-verification")),
                    },
                    "tlsBootstrapToken": flags.get("tls-bootstrap-token") or flags.get("token") or token,
                },
                "nodeRegistration": {k: v for k, v in (("name", flags.get("node-name")), ("criSocket", flags.get("cri-socket"))) if v},
            }
            if flags.get("control-plane"):
                lae = {k: v for k, v in (("advertiseAddress", flags.get("apiserver-advertise-address")),) if v}
                if flags.get("apiserver-bind-port"):
                    lae["bindPort"] = int(flags["apiserver-bind-port"])
                doc["controlPlane"] = {"localAPIEndpoint": lae, "certificateKey": flags.get("certificate-key", "")}
            version = "v1beta4"
        else:
            if "JoinConfiguration" not in docs:
                raise KubeadmError("no JoinConfiguration found in %s" % flags["config"])
            version, doc = docs["JoinConfiguration"]
        self.version = version
        #: controlPlane of the JoinConfiguration: None for a worker
        self.control_plane = doc.get("controlPlane")
        cp = self.control_plane or {}
        self.certificate_key = str(cp.get("certificateKey") or "")
        if self.certificate_key:
            add_secret(self.certificate_key)
        self.local_api_endpoint = dict(cp.get("localAPIEndpoint") or {})
        self.node_registration = dict(doc.get("nodeRegistration") or {})
        self.reg = Registration(doc, version, flags.get("ignore-preflight-errors"))
        disc = doc.get("discovery") or {}
        bt = disc.get("bootstrapToken") or {}
        self.endpoint = str(bt.get("apiServerEndpoint") or "")
        self.token = str(bt.get("token") or "")
        self.hashes = [str(h) for h in bt.get("caCertHashes") or []]
        self.unsafe_skip = bool(bt.get("unsafeSkipCAVerification"))
        self.tls_token = str(disc.get("tlsBootstrapToken") or self.token)
        timeouts = doc.get("timeouts") or {}
        t = disc.get("timeout") or timeouts.get("discovery") or "5m0s"
        self.discovery_timeout = min(parse_go_duration(t), wait_seconds())
        if not self.endpoint or not self.token:
            raise KubeadmError("discovery.bootstrapToken: apiServerEndpoint and token are required (stand-in: no file or https discovery)")
        if not BOOTSTRAP_TOKEN_RE.match(self.token):
            raise KubeadmError(
                'discovery.bootstrapToken.token: Invalid value: "%s": the bootstrap token is invalid' % mask_token(self.token)
            )
        add_secret(self.token.split(".")[1])
        if not self.hashes and not self.unsafe_skip:
            raise KubeadmError(
                'discovery.bootstrapToken: Invalid value: "": using token-based '
                "discovery without caCertHashes can be unsafe. Set "
                "unsafeSkipCAVerification as true in your kubeadm config file or "
                "pass --discovery-token-unsafe-skip-ca-verification flag to continue"
            )


def kcm_doc_version(cluster_doc):
    """The kubeadm API version of the ClusterConfiguration kept in kubeadm-config."""
    return str(cluster_doc.get("apiVersion", "kubeadm.k8s.io/v1beta4")).rpartition("/")[2] or "v1beta4"


def mask_token(token):
    return token.split(".")[0] + ".****************" if "." in token else "******"


def discover(cfg):
    """Token discovery: fetch cluster-info without trusting the server, check the token's JWS
    signature and the CA pin, then fetch it again over verified TLS. Returns (server, CA PEM)."""
    host, port = split_endpoint(cfg.endpoint, 6443)
    token_id, token_secret = cfg.token.split(".")
    path = "/api/v1/namespaces/kube-public/configmaps/cluster-info"
    insecure = ssl._create_unverified_context()
    client = ApiClient(host, port, insecure)
    say('[discovery] Created cluster-info discovery client, requesting info from "%s"' % cfg.endpoint)

    def fetch():
        status, data = client.call("GET", path)
        if status != 200:
            say("[discovery] Failed to request cluster-info, will try again: %d %s" % (status, data.get("message", "")))
            return None
        return data

    info = wait_for("cluster-info from %s" % cfg.endpoint, fetch, cfg.discovery_timeout, 1.0)
    data = info.get("data") or {}
    kubeconfig = data.get("kubeconfig", "")
    jws = data.get("jws-kubeconfig-" + token_id)
    prefix = "couldn't validate the identity of the API Server: "
    if not jws:
        raise KubeadmError(
            prefix + 'token id "%s" is invalid for this cluster or it has expired. '
            'Use "kubeadm token create" on the control-plane node to create a new '
            "valid token" % token_id,
            "preflight",
        )
    if not hmac.compare_digest(jws, jws_detached(kubeconfig, token_id, token_secret)):
        raise KubeadmError(
            prefix + "failed to verify JWS signature of received cluster info object, can't trust this API Server", "preflight"
        )
    doc = yaml().safe_load(kubeconfig) or {}
    cluster = ((doc.get("clusters") or [{}])[0] or {}).get("cluster") or {}
    ca_pem = base64.b64decode(cluster.get("certificate-authority-data", ""))
    got = ca_public_key_hash(ca_pem)
    if not cfg.unsafe_skip and got not in cfg.hashes:
        raise KubeadmError(
            prefix + 'cluster CA found in cluster-info ConfigMap is invalid: none of the public keys "%s" are pinned' % got, "preflight"
        )
    secure = ApiClient(host, port, ssl.create_default_context(cadata=ca_pem.decode()))
    status, again = secure.call("GET", path)
    if status != 200 or (again.get("data") or {}).get("kubeconfig") != kubeconfig:
        raise KubeadmError(
            prefix + "the API server's cluster-info changed or is not served over a certificate signed by the pinned CA", "preflight"
        )
    say(
        "[discovery] Cluster info signature and contents are valid and TLS certificate validates "
        'against pinned roots, will use API Server "%s"' % cfg.endpoint
    )
    return cluster.get("server") or "https://" + cfg.endpoint, ca_pem


def cmd_join(args):
    flags, positional = parse_flags(args, JOIN_FLAGS, ("discovery-token-unsafe-skip-ca-verification", "control-plane", "dry-run"))
    if flags.get("config"):
        mixed = [f for f in flags if f not in ("config", "ignore-preflight-errors", "v", "skip-phases", "dry-run", "patches")]
        if mixed or positional:
            raise KubeadmError("can not mix '--config' with arguments %s" % sorted(mixed + positional))
        docs = load_config(flags["config"])
    else:
        docs = None
    cfg = JoinConfig(docs, flags, positional)
    control_plane = cfg.control_plane is not None
    say("[preflight] Running pre-flight checks")
    pf = Preflight(cfg.reg.ignore)
    common_checks(pf, cfg.reg, control_plane=control_plane)
    files = [KUBELET_CONF, PKI + "/ca.crt"]
    if control_plane:
        files += ["%s/%s.yaml" % (MANIFESTS, n) for n in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd")]
        port = int(cfg.local_api_endpoint.get("bindPort") or 6443)
        if not port_free(port):
            pf.error("Port-%d" % port, "Port %d is in use" % port)
        if not port_free(peer_port(), str(cfg.local_api_endpoint.get("advertiseAddress") or "")):
            pf.error("Port-%d" % peer_port(), "Port %d is in use" % peer_port())
        etcd_dir = hp("/var/lib/etcd")
        if os.path.isdir(etcd_dir) and os.listdir(etcd_dir):
            pf.error("DirAvailable--var-lib-etcd", "/var/lib/etcd is not empty")
    for path in files:
        if os.path.exists(hp(path)):
            pf.error("FileAvailable-" + path.replace("/", "-"), "%s already exists" % path)
    pf.finish()
    server, ca_pem = discover(cfg)
    u = urllib.parse.urlsplit(server)
    host, port = u.hostname, u.port or 443
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    boot = ApiClient(host, port, ctx, token=cfg.tls_token)
    say("[preflight] Reading configuration from the cluster...")
    say("[preflight] FYI: You can look at this config file with 'kubectl -n kube-system get cm kubeadm-config -o yaml'")
    _, kcm = api(boot, "GET", "/api/v1/namespaces/kube-system/configmaps/kubeadm-config")
    cluster_doc = yaml().safe_load((kcm.get("data") or {}).get("ClusterConfiguration", "")) or {}
    _, klc = api(boot, "GET", "/api/v1/namespaces/kube-system/configmaps/kubelet-config")
    kubelet_cfg = yaml().safe_load((klc.get("data") or {}).get("kubelet", "")) or kubelet_config({})
    name = cfg.reg.name
    status, node = boot.call("GET", "/api/v1/nodes/" + name)
    if status == 200:
        ready = [c for c in (node.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready" and c.get("status") == "True"]
        if ready:
            raise KubeadmError(
                'a Node with name "%s" and status "Ready" already exists in the '
                "cluster. You must delete the existing Node or change the name of "
                "this new joining Node" % name,
                "kubelet-start",
            )
    if control_plane:
        cluster_version = str(kcm_doc_version(cluster_doc))
        join_control_plane(cfg, boot, ca_pem, cluster_doc, kubelet_cfg, cluster_version)
        say("(kubeadm %s: %s)" % (STANDIN_VERSION, STANDIN_NOTE))
        return 0
    write_kubelet_files(kubelet_cfg, cfg.reg)
    # TLS bootstrap (stand-in endpoint instead of the CSR API + approver + signer)
    c = crypto()
    key = c.ec.generate_private_key(c.ec.SECP256R1())
    csr = (
        c.x509.CertificateSigningRequestBuilder()
        .subject_name(
            c.x509.Name(
                [
                    c.x509.NameAttribute(c.NameOID.ORGANIZATION_NAME, "system:nodes"),
                    c.x509.NameAttribute(c.NameOID.COMMON_NAME, "system:node:" + name),
                ]
            )
        )
        .sign(key, c.hashes.SHA256())
    )
    _, signed = api(boot, "POST", "/v1-standin/kubeadm/node-certificate", {"csr": csr.public_bytes(c.serialization.Encoding.PEM).decode()})
    key_pem = key.private_bytes(
        c.serialization.Encoding.PEM, c.serialization.PrivateFormat.TraditionalOpenSSL, c.serialization.NoEncryption()
    )
    atomic_write(hp(PKI + "/ca.crt"), ca_pem, 0o644)
    write_node_credentials(
        None, ca_pem, name, server, cluster_doc.get("clusterName") or "kubernetes", cert_pem=signed["certificate"].encode(), key_pem=key_pem
    )
    restart_kubelet()
    say('[kubelet-check] Waiting for the kubelet to register node "%s" (stand-in: checked through the API server)' % name)
    say("[kubelet-start] Waiting for the kubelet to perform the TLS Bootstrap")
    node_client = ApiClient.from_kubeconfig(Kubeconfig(KUBELET_CONF))
    wait_for('the node "%s" to register' % name, lambda: node_client.call("GET", "/api/v1/nodes/" + name)[0] == 200, wait_seconds())
    say()
    say("This node has joined the cluster:")
    say("* A node client certificate was obtained from the API server with the bootstrap token.")
    say("* The kubelet was started with the new secure connection details.")
    say()
    say("Run 'kubectl get nodes' on the control-plane to see this node join the cluster.")
    say("(kubeadm %s: %s)" % (STANDIN_VERSION, STANDIN_NOTE))
    return 0
