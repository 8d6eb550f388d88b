"""TEST DOUBLE (kubelet stand-in, not the real kubelet).

The API server in kubeadm mode (run by the kubelet for the kube-apiserver static pod
manifest): bootstrap-token authentication, cluster-info signatures, node certificates.

Upstream: kubernetes/kubernetes plugin/pkg/auth/authenticator/token/bootstrap/bootstrap.go,
pkg/controller/bootstrap/signer.go, cmd/kube-apiserver/app/options/options.go (flags)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import ssl
import threading
import urllib.parse

from ..k3s.api import ApiApp, resource_not_found, unauthorized
from ..k3s.certs import url_host
from ..k3s.etcd import PEER_PORT, EtcdMember, ReplicatedStore
from ..k3s.httpserver import Handler, TLSServer, server_ssl_context
from ..k3s.nodes import Cluster
from ..k3s.server import ensure_namespaces, leader_loop
from ..k3s.store import CONFIGMAP, SECRET, ApiError, Store, bad_request
from ..k3s.util import Fatal, env_float, hp, log, read_file
from .kubeconfig import cert_identity, crypto, load_cert, sign_client_cert, yaml
from .paths import API_STATE, APISERVER_MANIFEST, BOOTSTRAP_TOKEN_RE, CONTROLLER_MANAGER_MANIFEST, ETCD_MANIFEST, ETCD_MEMBER_DIR
from .tokens import jws_detached, token_expired, token_fields
from .version import STANDIN_NOTE, STANDIN_VERSION


class KubeadmApiApp(ApiApp):
    """The k3s stand-in's API with what a kubeadm cluster adds: no k3s supervisor routes;
    bootstrap-token (Bearer) authentication for the few reads `kubeadm join` makes; the
    cluster-info JWS signatures; the node certificate for a joining node; kubelet
    registration/heartbeats with node client certificates."""

    #: what a bootstrap token may read (GET), as kubeadm's RBAC rules allow
    TOKEN_READABLE = (
        re.compile(
            r"^/api/v1/namespaces/kube-system/configmaps/"
            r"(kubeadm-config|kubelet-config)$"
        ),
        re.compile(r"^/api/v1/nodes/[a-z0-9.-]+$"),
        re.compile(r"^/api/v1/namespaces/kube-public/configmaps/cluster-info$"),
        # copycerts' Role for the bootstrappers group: get on the kubeadm-certs Secret only
        re.compile(r"^/api/v1/namespaces/kube-system/secrets/kubeadm-certs$"),
    )

    def __init__(self, store, cluster, ca_pem, ca_key_pem, advertise, port, etcd=None):
        super().__init__(store, cluster, ca_pem, secrets.token_hex(16), None, advertise, port, etcd=etcd)
        self.git_version = STANDIN_VERSION
        c = crypto()
        self.ca_cert = load_cert(ca_pem)
        self.ca_key = c.serialization.load_pem_private_key(ca_key_pem, password=None)

    def token_ok(self, token, usage="authentication"):
        m = BOOTSTRAP_TOKEN_RE.match(token or "")
        if not m:
            return False
        sec = self.store.get(SECRET, "kube-system", "bootstrap-token-" + m.group(1))
        if sec is None or sec.get("type") != "bootstrap.kubernetes.io/token":
            return False
        f = token_fields(sec)
        return (
            hmac.compare_digest(f.get("token-secret", ""), m.group(2))
            and f.get("usage-bootstrap-" + usage) == "true"
            and not token_expired(f)
        )

    def view(self, kind, obj):
        """cluster-info carries a JWS of its kubeconfig for every valid signing token."""
        md = obj.get("metadata", {})
        if kind is CONFIGMAP and (md.get("namespace"), md.get("name")) == ("kube-public", "cluster-info"):
            data = obj.setdefault("data", {})
            for k in [k for k in data if k.startswith("jws-kubeconfig-")]:
                del data[k]
            for sec in self.store.list(SECRET, "kube-system")[0]:
                if sec.get("type") != "bootstrap.kubernetes.io/token":
                    continue
                f = token_fields(sec)
                if f.get("usage-bootstrap-signing") == "true" and not token_expired(f) and f.get("token-id") and "kubeconfig" in data:
                    data["jws-kubeconfig-" + f["token-id"]] = jws_detached(data["kubeconfig"], f["token-id"], f.get("token-secret", ""))
        return obj

    def handle(self, h, method):
        u = urllib.parse.urlsplit(h.path)
        path = u.path.rstrip("/") or "/"
        if path == "/cacerts" or path == "/ping" or path.startswith("/v1-k3s/"):
            h.read_body()
            raise resource_not_found()
        if path.startswith("/v1-standin/"):
            return self.standin(h, method, path, h.read_body())
        auth = h.headers.get("Authorization", "")
        if auth.startswith("Bearer ") and h.client_cert_identity() is None:
            body = h.read_body()
            if not self.token_ok(auth[7:].strip()):
                raise unauthorized()
            if method != "GET" or not any(r.match(path) for r in self.TOKEN_READABLE):
                raise ApiError(403, "Forbidden", "stand-in: a bootstrap token may not %s %s" % (method, path))
            q = {k: v[-1] for k, v in urllib.parse.parse_qs(u.query).items()}
            self.require_datastore()
            return self.kube_api(h, method, path, q, body)
        return super().handle(h, method)

    def standin(self, h, method, path, body):
        if method != "POST":
            raise ApiError(405, "MethodNotAllowed", "method not allowed")
        try:
            req = json.loads(body or b"{}")
        except ValueError:
            raise bad_request("invalid JSON body")
        if path in ("/v1-standin/kubelet/register", "/v1-standin/kubelet/heartbeat"):
            ident = h.client_cert_identity()
            if ident is None:
                raise unauthorized()
            name = req.get("nodeName", "")
            admin = {"system:masters", "kubeadm:cluster-admins"} & set(ident["groups"])
            if not admin and (ident["cn"] != "system:node:" + name or "system:nodes" not in ident["groups"]):
                raise ApiError(
                    403,
                    "Forbidden",
                    'nodes "%s" is forbidden: node "%s" is not allowed to modify node "%s"' % (name, ident["cn"].rpartition(":")[2], name),
                )
            node = self.cluster.register(req, None, create=path.endswith("/register"))
            return h.send_json(200, {"node": node})
        if path == "/v1-standin/kubeadm/node-certificate":
            auth = h.headers.get("Authorization", "")
            if not auth.startswith("Bearer ") or not self.token_ok(auth[7:].strip()):
                raise unauthorized()
            c = crypto()
            try:
                csr = c.x509.load_pem_x509_csr(req.get("csr", "").encode())
            except ValueError:
                raise bad_request("invalid certificate signing request")
            if not csr.is_signature_valid:
                raise bad_request("certificate signing request signature is invalid")
            cn, orgs = cert_identity(csr)
            if not cn.startswith("system:node:") or orgs != ["system:nodes"]:
                raise ApiError(403, "Forbidden", "stand-in CSR signer: only CN=system:node:<name>, O=system:nodes may be requested")
            pem = sign_client_cert(self.ca_cert, self.ca_key, csr.public_key(), cn, orgs)
            log("info", "Signed a node client certificate for %s" % cn)
            return h.send_json(200, {"certificate": pem.decode(), "ca": self.ca_pem.decode()})
        raise resource_not_found()

    def clean_tokens(self):
        """The token cleaner: delete expired bootstrap-token Secrets."""
        for sec in self.store.list(SECRET, "kube-system")[0]:
            if sec.get("type") == "bootstrap.kubernetes.io/token" and token_expired(token_fields(sec)):
                try:
                    self.store.delete(SECRET, "kube-system", sec["metadata"]["name"])
                    log("info", "Deleted expired bootstrap token %s" % sec["metadata"]["name"])
                except ApiError:
                    pass


def manifest_command(path):
    """(flags dict, raw) of the first container's command in a static pod manifest."""
    raw = read_file(hp(path))
    if raw is None:
        return None, None
    try:
        pod = yaml().safe_load(raw) or {}
        cmd = pod["spec"]["containers"][0].get("command") or []
    except (KeyError, IndexError, TypeError, ValueError) as e:
        log("error", "invalid static pod manifest %s: %s" % (path, e))
        return None, raw
    flags = {}
    for a in cmd[1:]:
        if a.startswith("--") and "=" in a:
            k, v = a[2:].split("=", 1)
            flags[k] = v
        elif a.startswith("--"):
            flags[a[2:]] = "true"
    return flags, raw


class ApiServer:
    """The stand-in kube-apiserver, run by the kubelet for the static pod manifest."""

    def __init__(self, flags, stop):
        self.flags, self.stop = flags, stop
        #: set by shutdown(): this server's own threads end with it (a new manifest starts a
        #: new ApiServer over a fresh Store; the old threads must not write the old one back)
        self.own_stop = threading.Event()
        self.httpd = None
        self.threads = []

    def start(self):
        f = self.flags
        port = int(f.get("secure-port", "6443"))
        bind = f.get("bind-address", "0.0.0.0")
        cert, key = hp(f.get("tls-cert-file", "")), hp(f.get("tls-private-key-file", ""))
        client_ca = hp(f.get("client-ca-file", ""))
        ca_key = hp(os.path.join(os.path.dirname(f.get("client-ca-file", "")), "ca.key"))
        ca_pem, ca_key_pem = read_file(client_ca), read_file(ca_key)
        if not (ca_pem and ca_key_pem and os.path.exists(cert) and os.path.exists(key)):
            raise Fatal("kube-apiserver: PKI files named in %s are missing" % APISERVER_MANIFEST)
        cm_flags, _ = manifest_command(CONTROLLER_MANAGER_MANIFEST)
        pod_network = (cm_flags or {}).get("cluster-cidr", "10.244.0.0/16")
        etcd_flags, _ = manifest_command(ETCD_MANIFEST)
        member = None
        if etcd_flags and etcd_flags.get("initial-advertise-peer-urls"):
            store = ReplicatedStore(hp(API_STATE))
            member = etcd_member(etcd_flags, store)
        else:  # a manifest of an older stand-in: the plain single-server store
            store = Store(hp(API_STATE))
            ensure_namespaces(store)
        store.flush()
        grace = env_float("K3S_STANDIN_NODE_GRACE_SECONDS", 40.0)
        cluster = Cluster(store, grace, mode="kubeadm", pod_network=pod_network)
        advertise = f.get("advertise-address") or "127.0.0.1"
        app = KubeadmApiApp(store, cluster, ca_pem, ca_key_pem, advertise, port, etcd=member)
        ctx = server_ssl_context(cert, key, client_ca)
        stop = self.own_stop
        if member is not None:
            peer = urllib.parse.urlsplit(etcd_flags.get("listen-peer-urls") or member.peer_url)
            peer_ctx = server_ssl_context(
                hp(etcd_flags["peer-cert-file"]), hp(etcd_flags["peer-key-file"]), hp(etcd_flags["peer-trusted-ca-file"])
            )
            try:
                member.start(stop, peer.hostname or "0.0.0.0", peer.port or PEER_PORT, peer_ctx)
            except OSError:
                stop.set()
                member.shutdown()
                raise
        try:
            self.httpd = TLSServer((bind, port), Handler, ctx, app)
        except OSError:
            stop.set()
            if member is not None:
                member.shutdown()
            raise
        self.app, self.store, self.member = app, store, member
        threading.Thread(target=lambda: (self.stop.wait(), self.own_stop.set()), daemon=True).start()

        def flusher():
            while not stop.wait(0.5):
                store.flush()

        self.threads = [
            threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True),
            threading.Thread(target=flusher, daemon=True),
            # the node monitor, the token cleaner and the controllers (k3s/server.py's leader loop)
            threading.Thread(target=leader_loop, args=(member, store, cluster, grace, stop, app.clean_tokens), daemon=True),
        ]
        for t in self.threads:
            t.start()
        log("info", "Stand-in kube-apiserver %s (%s) serving on https://%s:%d" % (STANDIN_VERSION, STANDIN_NOTE, url_host(bind), port))

    def shutdown(self):
        if self.httpd is not None:
            self.own_stop.set()
            self.app.stopping.set()
            self.httpd.shutdown()
            self.httpd.server_close()
            if self.member is not None:
                self.member.shutdown()
            self.store.flush()
            self.httpd = None


def etcd_auth(etcd_ca_key_pem):
    """What members present to each other on the peer port: a digest of the etcd CA's key,
    which only control planes hold (real etcd: peer certificates of that CA)."""
    return "Bearer " + hashlib.sha256(b"stand-in etcd peer\n" + etcd_ca_key_pem).hexdigest()


def etcd_member(flags, store):
    """The stand-in etcd member of this control plane, from the etcd static pod's flags: a new
    one-member cluster (init), or a member kubeadm join already added (initial-cluster-state
    existing, initial-cluster listing the members). Restarted: its saved member.json."""
    ca_file = hp(flags.get("peer-trusted-ca-file", ""))
    ca_key = read_file(os.path.join(os.path.dirname(ca_file), "ca.key"))
    ca_pem = read_file(ca_file)
    if not ca_key or not ca_pem:
        raise Fatal("etcd: the etcd CA named in %s is missing" % ETCD_MANIFEST)
    client_ctx = ssl.create_default_context(cadata=ca_pem.decode())
    name = flags.get("name") or "default"
    member = EtcdMember(name, flags["initial-advertise-peer-urls"], store, hp(ETCD_MEMBER_DIR), etcd_auth(ca_key), client_ctx)
    if flags.get("initial-cluster-state") == "existing":
        initial = dict(kv.split("=", 1) for kv in (flags.get("initial-cluster") or "").split(",") if "=" in kv)
        member.join(lambda _name, _url: {"members": initial, "membersVersion": 0})
    else:
        member.bootstrap()
    return member
