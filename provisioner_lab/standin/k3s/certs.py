"""TEST DOUBLE (k3s stand-in, not the real k3s).

Certificates: the CAs, the serving certificate and its SANs, client certificates, the admin
kubeconfig (python3-cryptography, imported lazily).

Upstream: k3s-io/k3s pkg/daemons/control/deps/deps.go (CAs, SANs), pkg/cli/server/server.go
(write-kubeconfig)
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
import time

from .netaddr import host_interface_addresses
from .util import Fatal, atomic_write, hostname, log, read_file, utcnow


class _Crypto:
    _loaded = False

    @classmethod
    def load(cls):
        if cls._loaded:
            return cls
        try:
            from cryptography import x509
            from cryptography.hazmat.primitives import hashes, serialization
            from cryptography.hazmat.primitives.asymmetric import ec
            from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
        except ImportError:
            raise Fatal("python3-cryptography is required (apt-get install python3-cryptography)")
        cls.x509, cls.hashes, cls.serialization, cls.ec = x509, hashes, serialization, ec
        cls.NameOID, cls.EKU = NameOID, ExtendedKeyUsageOID
        cls._loaded = True
        return cls


def _not_after(cert):
    value = getattr(cert, "not_valid_after_utc", None)
    if value is None:
        value = cert.not_valid_after.replace(tzinfo=datetime.UTC)
    return value


class PKI:
    def __init__(self, tls_dir):
        self.dir = tls_dir
        self.c = _Crypto.load()

    def path(self, name):
        return os.path.join(self.dir, name)

    def _key_pem(self, key):
        s = self.c.serialization
        return key.private_bytes(s.Encoding.PEM, s.PrivateFormat.TraditionalOpenSSL, s.NoEncryption())

    def _load(self, name):
        c = self.c
        crt, key = read_file(self.path(name + ".crt")), read_file(self.path(name + ".key"))
        if crt is None or key is None:
            return None, None
        return (c.x509.load_pem_x509_certificate(crt), c.serialization.load_pem_private_key(key, password=None))

    def _write(self, name, cert, key):
        atomic_write(self.path(name + ".key"), self._key_pem(key), 0o600)
        atomic_write(self.path(name + ".crt"), cert.public_bytes(self.c.serialization.Encoding.PEM), 0o644)

    def ensure_ca(self, name, cn_prefix):
        cert, key = self._load(name)
        if cert is not None:
            return cert, key
        if os.path.exists(self.path(name + ".crt")):
            raise Fatal("%s exists but its key is missing" % self.path(name + ".crt"))
        c = self.c
        key = c.ec.generate_private_key(c.ec.SECP256R1())
        subject = c.x509.Name([c.x509.NameAttribute(c.NameOID.COMMON_NAME, "%s@%d" % (cn_prefix, int(time.time())))])
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
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(c.x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, c.hashes.SHA256())
        )
        self._write(name, cert, key)
        log("info", "Generated %s certificate authority %s" % (name, self.path(name + ".crt")))
        return cert, key

    def install_ca(self, name, crt_pem, key_pem):
        if read_file(self.path(name + ".crt")) != crt_pem.encode():
            atomic_write(self.path(name + ".key"), key_pem, 0o600)
            atomic_write(self.path(name + ".crt"), crt_pem, 0o644)

    def _signed_by(self, cert, ca_cert, ca_key):
        if cert.issuer != ca_cert.subject:
            return False
        try:
            ca_key.public_key().verify(cert.signature, cert.tbs_certificate_bytes, self.c.ec.ECDSA(cert.signature_hash_algorithm))
            return True
        except Exception:  # noqa: BLE001 - any failure to verify means "not signed by this CA"
            return False

    @staticmethod
    def split_sans(sans):
        ips, dns = [], []
        for s in sans:
            try:
                ips.append(str(ipaddress.ip_address(s)))
            except ValueError:
                dns.append(s.lower())
        return ips, dns

    def cert_sans(self, cert):
        try:
            ext = cert.extensions.get_extension_for_class(self.c.x509.SubjectAlternativeName)
        except self.c.x509.ExtensionNotFound:
            return set()
        ips = {str(ip) for ip in ext.value.get_values_for_type(self.c.x509.IPAddress)}
        return ips | {d.lower() for d in ext.value.get_values_for_type(self.c.x509.DNSName)}

    def ensure_leaf(self, name, ca, cn, orgs=(), sans=None, server=True):
        """Create or renew a leaf certificate; returns True when (re)generated."""
        c = self.c
        ca_cert, ca_key = ca
        cert, key = self._load(name)
        want = None
        if sans is not None:
            ips, dns = self.split_sans(sans)
            want = set(ips) | set(dns)
        if cert is not None:
            fresh = _not_after(cert) > utcnow() + datetime.timedelta(days=90)
            if fresh and self._signed_by(cert, ca_cert, ca_key) and (want is None or self.cert_sans(cert) == want):
                return False
            if want is not None and self.cert_sans(cert) != want:
                log("info", "Updating TLS secret for %s (SANs changed)" % name)
        key = c.ec.generate_private_key(c.ec.SECP256R1())
        attrs = [c.x509.NameAttribute(c.NameOID.ORGANIZATION_NAME, o) for o in orgs]
        attrs.append(c.x509.NameAttribute(c.NameOID.COMMON_NAME, cn))
        now = utcnow()
        b = (
            c.x509.CertificateBuilder()
            .subject_name(c.x509.Name(attrs))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(c.x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=365))
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
            .add_extension(c.x509.ExtendedKeyUsage([c.EKU.SERVER_AUTH] if server else [c.EKU.CLIENT_AUTH]), critical=False)
            .add_extension(c.x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if sans is not None:
            ips, dns = self.split_sans(sans)
            names = [c.x509.DNSName(d) for d in dns]
            names += [c.x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
            b = b.add_extension(c.x509.SubjectAlternativeName(names), critical=False)
        cert = b.sign(ca_key, c.hashes.SHA256())
        self._write(name, cert, key)
        return True


def dedupe(items):
    seen, out = set(), []
    for it in items:
        if not it:
            continue
        try:
            it = str(ipaddress.ip_address(it))
        except ValueError:
            it = it.lower()
        if it not in seen:
            seen.add(it)
            out.append(it)
    return out


def first_service_ip(cfg):
    cidrs = cfg.get("service-cidr") or []
    for c in cidrs:
        for part in c.split(","):
            try:
                net = ipaddress.ip_network(part.strip(), strict=False)
                return str(net.network_address + 1)
            except ValueError:
                continue
    return "10.43.0.1"


def serving_sans(cfg):
    domain = cfg.get("cluster-domain") or "cluster.local"
    sans = [
        "127.0.0.1",
        "localhost",
        "::1",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc." + domain,
        first_service_ip(cfg),
    ]
    sans += [a for _, a in host_interface_addresses()]
    sans.append(hostname())
    for key in ("tls-san", "node-ip", "node-external-ip"):
        for v in cfg.get(key) or []:
            sans += [x.strip() for x in v.split(",")]
    for key in ("advertise-address", "bind-address"):
        v = cfg.get(key)
        if v and v not in ("0.0.0.0", "::"):
            sans.append(v)
    return dedupe(sans)


def kubeconfig_yaml(server_url, ca_pem, cert_pem, key_pem):
    b = lambda d: base64.b64encode(d).decode()  # noqa: E731
    return (
        "apiVersion: v1\n"
        "clusters:\n"
        "- cluster:\n"
        "    certificate-authority-data: %s\n"
        "    server: %s\n"
        "  name: default\n"
        "contexts:\n"
        "- context:\n"
        "    cluster: default\n"
        "    user: default\n"
        "  name: default\n"
        "current-context: default\n"
        "kind: Config\n"
        "preferences: {}\n"
        "users:\n"
        "- name: default\n"
        "  user:\n"
        "    client-certificate-data: %s\n"
        "    client-key-data: %s\n"
    ) % (b(ca_pem), server_url, b(cert_pem), b(key_pem))


def url_host(host):
    return "[%s]" % host if ":" in host else host
