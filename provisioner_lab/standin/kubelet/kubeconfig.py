"""TEST DOUBLE (kubelet stand-in, not the real kubelet).

YAML, kubeconfig reading and writing, certificates signed by the cluster CA, the CA
public-key pin (sha256 over the SubjectPublicKeyInfo).

Upstream: kubernetes/kubernetes cmd/kubeadm/app/util/kubeconfig/kubeconfig.go,
cmd/kubeadm/app/util/pubkeypin/pubkeypin.go
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import os
import ssl
import tempfile
import urllib.parse

from ..k3s.certs import _Crypto
from ..k3s.config import _yaml
from ..k3s.util import hp, read_file, utcnow


def yaml():
    return _yaml()


def b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def b64url(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def kubeconfig_text(
    server, ca_pem, cluster="kubernetes", user=None, context=None, cert_pem=None, key_pem=None, cert_file=None, key_file=None
):
    """A kubeconfig as kubeadm writes it: one cluster, and (unless user is None) one user and
    one context. Client credentials either embedded (*_pem) or as file paths (*_file)."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": cluster, "cluster": {"certificate-authority-data": b64(ca_pem), "server": server}}],
    }
    if user is None:
        doc.update({"contexts": None, "current-context": "", "users": None})
        doc["clusters"][0]["name"] = ""
    else:
        context = context or "%s@%s" % (user, cluster)
        creds = {}
        if cert_pem is not None:
            creds = {"client-certificate-data": b64(cert_pem), "client-key-data": b64(key_pem)}
        else:
            creds = {"client-certificate": cert_file, "client-key": key_file}
        doc.update(
            {
                "contexts": [{"name": context, "context": {"cluster": cluster, "user": user}}],
                "current-context": context,
                "users": [{"name": user, "user": creds}],
            }
        )
    return yaml().safe_dump(doc, default_flow_style=False, sort_keys=True)


class Kubeconfig:
    """The current context of a kubeconfig file: server, CA and client credentials."""

    def __init__(self, path):
        self.path = path
        raw = read_file(hp(path))
        if raw is None:
            raise FileNotFoundError(path)
        doc = yaml().safe_load(raw) or {}
        ctx_name = doc.get("current-context") or ""
        ctxs = {c.get("name"): c.get("context") or {} for c in doc.get("contexts") or []}
        ctx = ctxs.get(ctx_name) or (next(iter(ctxs.values())) if ctxs else {})
        clusters = {c.get("name"): c.get("cluster") or {} for c in doc.get("clusters") or []}
        users = {u.get("name"): u.get("user") or {} for u in doc.get("users") or []}
        cluster = clusters.get(ctx.get("cluster")) or (next(iter(clusters.values())) if clusters else {})
        user = users.get(ctx.get("user")) or {}
        self.server = cluster.get("server", "")
        if cluster.get("certificate-authority-data"):
            self.ca_pem = base64.b64decode(cluster["certificate-authority-data"])
        elif cluster.get("certificate-authority"):
            self.ca_pem = read_file(hp(cluster["certificate-authority"])) or b""
        else:
            self.ca_pem = b""
        self.cert_pem = self.key_pem = None
        if user.get("client-certificate-data"):
            self.cert_pem = base64.b64decode(user["client-certificate-data"])
            self.key_pem = base64.b64decode(user.get("client-key-data", ""))
        elif user.get("client-certificate"):
            self.cert_pem = read_file(hp(user["client-certificate"]))
            self.key_pem = read_file(hp(user.get("client-key") or user["client-certificate"]))
            if self.cert_pem is None or self.key_pem is None:
                raise FileNotFoundError("%s: cannot read the client certificate or key %s" % (path, user["client-certificate"]))
        self.token = user.get("token")
        u = urllib.parse.urlsplit(self.server)
        self.host, self.port = u.hostname or "", u.port or 443

    def ssl_context(self, client_cert=True):
        ctx = ssl.create_default_context(cadata=self.ca_pem.decode()) if self.ca_pem else ssl.create_default_context()
        if client_cert and self.cert_pem:
            load_cert_chain(ctx, self.cert_pem, self.key_pem)
        return ctx


def load_cert_chain(ctx, cert_pem, key_pem):
    """ssl wants files: write the pair to a private temporary file for the load."""
    with tempfile.TemporaryDirectory(prefix="standin-cert-") as d:
        path = os.path.join(d, "pair.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(cert_pem + (b"" if cert_pem.endswith(b"\n") else b"\n") + key_pem)
        ctx.load_cert_chain(path)


def crypto():
    return _Crypto.load()


def load_cert(pem):
    return crypto().x509.load_pem_x509_certificate(pem)


def ca_public_key_hash(ca_pem):
    """kubeadm's discovery hash: sha256 over the CA certificate's SubjectPublicKeyInfo (DER)."""
    c = crypto()
    spki = load_cert(ca_pem).public_key().public_bytes(c.serialization.Encoding.DER, c.serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def cert_identity(cert):
    c = crypto()
    cn = [a.value for a in cert.subject.get_attributes_for_oid(c.NameOID.COMMON_NAME)]
    orgs = [a.value for a in cert.subject.get_attributes_for_oid(c.NameOID.ORGANIZATION_NAME)]
    return (cn[0] if cn else ""), orgs


def sign_client_cert(ca_cert, ca_key, public_key, cn, orgs, days=365):
    """A client certificate for ``public_key`` signed by the cluster CA (what the CSR signer
    does for an approved kubelet CSR)."""
    c = crypto()
    attrs = [c.x509.NameAttribute(c.NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(c.x509.NameAttribute(c.NameOID.COMMON_NAME, cn))
    now = utcnow()
    cert = (
        c.x509.CertificateBuilder()
        .subject_name(c.x509.Name(attrs))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(c.x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(c.x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            c.x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(c.x509.ExtendedKeyUsage([c.EKU.CLIENT_AUTH]), critical=False)
        .add_extension(c.x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, c.hashes.SHA256())
    )
    return cert.public_bytes(c.serialization.Encoding.PEM)
