"""TEST DOUBLE (kubeadm stand-in, not the real kubeadm).

The certificates shared by the control planes of a stacked cluster, handed over through the
kube-system Secret `kubeadm-certs`: `init --upload-certs` (or `init phase upload-certs`)
encrypts the CAs and the service-account key with the certificate key (AES-256-GCM, the 12-byte
nonce in front of the sealed bytes, as kubeadm's EncryptBytes does) and stores them in the
Secret, owned by a bootstrap token that lives two hours; when the token expires the token
cleaner deletes it and the Secret with it (upstream: the garbage collector). `join
--control-plane` downloads and decrypts them with the key from its JoinConfiguration.

Upstream: kubernetes/kubernetes cmd/kubeadm/app/phases/copycerts/copycerts.go,
cmd/kubeadm/app/util/crypto/crypto.go, cmd/kubeadm/app/constants/constants.go
(CertificateKeySize 32, DefaultCertTokenDuration 2h, KubeadmCertsSecret "kubeadm-certs").
"""

from __future__ import annotations

import base64
import os
import re
import secrets

from ..k3s.util import atomic_write, hp, read_file
from .base import PKI, KubeadmError, say
from .cluster import api, create_or_replace, create_token

SECRET_NAME = "kubeadm-certs"
TOKEN_TTL_SECONDS = 2 * 3600.0
TOKEN_DESCRIPTION = "Proxy for managing TTL for the kubeadm-certs secret"
#: name in the Secret -> file under /etc/kubernetes/pki (a "/" becomes "-" in the Secret)
SHARED = {
    "ca.crt": "ca.crt",
    "ca.key": "ca.key",
    "front-proxy-ca.crt": "front-proxy-ca.crt",
    "front-proxy-ca.key": "front-proxy-ca.key",
    "sa.pub": "sa.pub",
    "sa.key": "sa.key",
    "etcd-ca.crt": "etcd/ca.crt",
    "etcd-ca.key": "etcd/ca.key",
}
KEY_SIZE = 32
EXPIRED_HINT = (
    'Secret "kubeadm-certs" was not found in the "kube-system" Namespace. This Secret might have '
    "expired. Please, run `kubeadm init phase upload-certs --upload-certs` on a control plane to generate a new one"
)


def new_certificate_key():
    """kubeadm certs certificate-key: 32 random bytes as hex."""
    return secrets.token_hex(KEY_SIZE)


def decode_key(key):
    """The AES key of a hex certificate key, or kubeadm's error."""
    try:
        raw = bytes.fromhex(key)
    except ValueError as e:
        raise KubeadmError("error decoding certificate key: encoding/hex: %s" % e)
    if len(raw) != KEY_SIZE:
        raise KubeadmError("error decoding certificate key: crypto/aes: invalid key size %d" % len(raw))
    return raw


def valid_key(key):
    return bool(re.fullmatch(r"[0-9a-fA-F]{64}", key or ""))


def _aesgcm(raw):
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(raw)


def encrypt(data, raw_key):
    nonce = os.urandom(12)
    return nonce + _aesgcm(raw_key).encrypt(nonce, data, None)


def decrypt(blob, raw_key):
    from cryptography.exceptions import InvalidTag

    if len(blob) < 12:
        raise KubeadmError("size of data is less than the nonce")
    try:
        return _aesgcm(raw_key).decrypt(blob[:12], blob[12:], None)
    except InvalidTag:
        raise KubeadmError("cipher: message authentication failed")


def upload_certs(client, key, print_key=True):
    """Store the shared certificates in the kubeadm-certs Secret, encrypted with ``key``, owned
    by a new bootstrap token of two hours."""
    say('[upload-certs] Storing the certificates in Secret "%s" in the "kube-system" Namespace' % SECRET_NAME)
    raw = decode_key(key)
    token = create_token(client, ttl=TOKEN_TTL_SECONDS, usages=(), groups=(), description=TOKEN_DESCRIPTION)
    token_id = token.split(".")[0]
    _, owner = api(client, "GET", "/api/v1/namespaces/kube-system/secrets/bootstrap-token-" + token_id)
    data = {}
    for name, rel in SHARED.items():
        content = read_file(hp(PKI + "/" + rel))
        data[name] = base64.b64encode(encrypt(content, raw) if content is not None else b"").decode()
    create_or_replace(
        client,
        "/api/v1/namespaces/kube-system/secrets",
        SECRET_NAME,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": SECRET_NAME,
                "namespace": "kube-system",
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "Secret",
                        "name": owner["metadata"]["name"],
                        "uid": owner["metadata"].get("uid", ""),
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "data": data,
        },
    )
    if print_key:
        say("[upload-certs] Using certificate key:")
        say(key)


def download_certs(client, key):
    """Fetch the kubeadm-certs Secret, decrypt every entry with ``key`` and write the files
    (keys 0600). Errors as kubeadm words them (wrapped as "error downloading certs")."""
    say('[download-certs] Downloading the certificates in Secret "%s" in the "kube-system" Namespace' % SECRET_NAME)
    try:
        raw = decode_key(key)
    except KubeadmError as e:
        raise KubeadmError("error downloading certs: %s" % e.message, "control-plane-prepare/download-certs")
    status, secret = client.call("GET", "/api/v1/namespaces/kube-system/secrets/" + SECRET_NAME)
    if status == 404:
        raise KubeadmError("error downloading certs: error downloading the secret: " + EXPIRED_HINT, "control-plane-prepare/download-certs")
    if status != 200:
        raise KubeadmError(
            "error downloading certs: error downloading the secret: %d %s" % (status, secret.get("message", "")),
            "control-plane-prepare/download-certs",
        )
    plain = {}
    for name, value in (secret.get("data") or {}).items():
        blob = base64.b64decode(value)
        try:
            plain[name] = decrypt(blob, raw) if blob else b""
        except KubeadmError as e:
            raise KubeadmError(
                "error downloading certs: error decoding secret data with provided key: %s" % e.message,
                "control-plane-prepare/download-certs",
            )
    for name, rel in SHARED.items():
        if name not in plain:
            raise KubeadmError(
                "error downloading certs: the Secret does not include the required certificate or key - name: %s, path: %s"
                % (rel, PKI + "/" + rel),
                "control-plane-prepare/download-certs",
            )
        if plain[name]:
            path = hp(PKI + "/" + rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            atomic_write(path, plain[name], 0o600 if rel.endswith(".key") else 0o644)
