"""TEST DOUBLE (kubelet stand-in, not the real kubelet).

Bootstrap tokens (bootstrap-token-<id> Secrets) and the detached JWS of cluster-info.

Upstream: kubernetes/kubernetes staging/src/k8s.io/cluster-bootstrap/token/jws/jws.go,
staging/src/k8s.io/cluster-bootstrap/token/api/types.go
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import re
import secrets

from ..k3s.util import parse_ts, utcnow
from .kubeconfig import b64, b64url


def parse_go_duration(text):
    """Seconds in a Go duration ("15m0s", "24h", "1h30m", "0")."""
    text = str(text).strip()
    if text in ("0", ""):
        return 0.0
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise ValueError("time: invalid duration %r" % text)
    return sum(float(a) * units[b] for a, b in parts)


def jws_detached(content, token_id, token_secret):
    """The detached JWS (HS256, key = token secret, kid = token id) the bootstrap signer
    puts into cluster-info as ``jws-kubeconfig-<token id>``."""
    header = b64url(json.dumps({"alg": "HS256", "kid": token_id}, separators=(",", ":")))
    payload = b64url(content)
    sig = hmac.new(token_secret.encode(), ("%s.%s" % (header, payload)).encode(), hashlib.sha256).digest()
    return "%s..%s" % (header, b64url(sig))


def token_secret_object(
    token_id,
    token_secret,
    ttl_seconds,
    usages=("signing", "authentication"),
    groups=("system:bootstrappers:kubeadm:default-node-token",),
    description="",
):
    """The kube-system Secret holding a bootstrap token, as kubeadm creates it."""
    data = {"token-id": b64(token_id), "token-secret": b64(token_secret), "auth-extra-groups": b64(",".join(groups))}
    for u in usages:
        data["usage-bootstrap-%s" % u] = b64("true")
    if ttl_seconds:
        exp = utcnow() + datetime.timedelta(seconds=ttl_seconds)
        data["expiration"] = b64(exp.strftime("%Y-%m-%dT%H:%M:%SZ"))
    if description:
        data["description"] = b64(description)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "bootstrap.kubernetes.io/token",
        "metadata": {"name": "bootstrap-token-" + token_id, "namespace": "kube-system"},
        "data": data,
    }


def token_fields(secret):
    out = {}
    for k, v in (secret.get("data") or {}).items():
        try:
            out[k] = base64.b64decode(v).decode()
        except (ValueError, UnicodeDecodeError):
            out[k] = ""
    return out


def token_expired(fields):
    exp = fields.get("expiration")
    if not exp:
        return False
    when = parse_ts(exp)
    return when is None or when <= utcnow()


def new_token():
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    pick = lambda n: "".join(secrets.choice(alphabet) for _ in range(n))  # noqa: E731
    return "%s.%s" % (pick(6), pick(16))
