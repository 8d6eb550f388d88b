"""TEST DOUBLE (kubeadm stand-in, not the real kubeadm).

The cluster PKI under /etc/kubernetes/pki (ECDSA P-256).

Upstream: kubernetes/kubernetes cmd/kubeadm/app/phases/certs/certlist.go
"""

from __future__ import annotations

import datetime
import ipaddress
import os

from ..k3s.certs import PKI as k3s_PKI
from ..k3s.util import atomic_write, read_file, utcnow
from ..kubelet.kubeconfig import crypto
from .base import say


class Certs:
    """The kubeadm PKI under /etc/kubernetes/pki, ECDSA P-256 (kubeadm's ECDSA-P256 option)."""

    def __init__(self, pki_dir):
        self.dir = pki_dir
        self.pki = k3s_PKI(pki_dir)
        self.c = crypto()

    def ca(self, name, cn):
        """Create the CA ``name`` (CN ``cn``) unless it exists; returns (cert, key)."""
        cert, key = self.pki._load(name)
        if cert is not None:
            say("[certs] Using existing %s certificate authority" % name)
            return cert, key
        c = self.c
        key = c.ec.generate_private_key(c.ec.SECP256R1())
        subject = c.x509.Name([c.x509.NameAttribute(c.NameOID.COMMON_NAME, cn)])
        now = utcnow()
        cert = (
            c.x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(c.x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(c.x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                c.x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=True,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(c.x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, c.hashes.SHA256())
        )
        self.pki._write(name, cert, key)
        say('[certs] Generating "%s" certificate and key' % name)
        return cert, key

    def leaf(self, name, ca, cn, orgs=(), sans=None, server=True):
        os.makedirs(os.path.dirname(self.pki.path(name)), exist_ok=True)
        if self.pki.ensure_leaf(name, ca, cn, orgs=list(orgs), sans=sans, server=server):
            say('[certs] Generating "%s" certificate and key' % name)
            if sans:
                say(
                    "[certs] %s serving cert is signed for DNS names [%s] and IPs [%s]"
                    % (name, " ".join(d for d in sans if not _is_ip(d)), " ".join(d for d in sans if _is_ip(d)))
                )
        return self.pair(name)

    def pair(self, name):
        return read_file(self.pki.path(name + ".crt")), read_file(self.pki.path(name + ".key"))

    def service_account_key(self):
        if os.path.exists(self.pki.path("sa.key")):
            return
        c = self.c
        key = c.ec.generate_private_key(c.ec.SECP256R1())
        atomic_write(self.pki.path("sa.key"), self.pki._key_pem(key), 0o600)
        atomic_write(
            self.pki.path("sa.pub"),
            key.public_key().public_bytes(c.serialization.Encoding.PEM, c.serialization.PublicFormat.SubjectPublicKeyInfo),
            0o644,
        )
        say('[certs] Generating "sa" key and public key')


def _is_ip(s):
    try:
        ipaddress.ip_address(s)
        return True
    except ValueError:
        return False
