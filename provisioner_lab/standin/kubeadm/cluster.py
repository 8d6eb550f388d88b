"""TEST DOUBLE (kubeadm stand-in, not the real kubeadm).

Talking to the cluster: the admin client, waits, create-or-replace, bootstrap tokens, the
join command.

Upstream: kubernetes/kubernetes cmd/kubeadm/app/util/apiclient/idempotency.go,
cmd/kubeadm/app/cmd/util/join.go
"""

from __future__ import annotations

import ssl
import time

from ..k3s.util import add_secret
from ..kubelet.client import ApiClient
from ..kubelet.kubeconfig import Kubeconfig, ca_public_key_hash
from ..kubelet.paths import BOOTSTRAP_TOKEN_RE
from ..kubelet.tokens import new_token, token_secret_object
from .base import ADMIN_CONF, KubeadmError


def admin_client(path=ADMIN_CONF):
    try:
        kc = Kubeconfig(path)
    except FileNotFoundError:
        raise KubeadmError("failed to load admin kubeconfig: open %s: no such file or directory" % path)
    return ApiClient.from_kubeconfig(kc), kc


def api(client, method, path, body=None, ok=(200, 201), ctype="application/json"):
    try:
        status, data = client.call(method, path, body, ctype=ctype)
    except (OSError, ssl.SSLError) as e:
        raise KubeadmError("unable to reach the API server at %s:%d: %s" % (client.host, client.port, e))
    if status not in ok:
        raise KubeadmError("%s %s: %d %s" % (method, path, status, data.get("message", "")))
    return status, data


def wait_for(what, fn, timeout, interval=0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            got = fn()
            if got:
                return got
        except (OSError, ssl.SSLError, KubeadmError) as e:
            last = e
        time.sleep(interval)
    raise KubeadmError("timed out after %s waiting for %s%s" % ("%dm%ds" % divmod(int(timeout), 60), what, ": %s" % last if last else ""))


def create_or_replace(client, path, name, obj):
    status, cur = client.call("GET", "%s/%s" % (path, name))
    if status == 200:
        obj.setdefault("metadata", {})["resourceVersion"] = cur["metadata"]["resourceVersion"]
        api(client, "PUT", "%s/%s" % (path, name), obj)
    else:
        api(client, "POST", path, obj)


def create_token(
    client,
    token=None,
    ttl=86400.0,
    usages=("signing", "authentication"),
    groups=("system:bootstrappers:kubeadm:default-node-token",),
    description="",
):
    token = token or new_token()
    m = BOOTSTRAP_TOKEN_RE.match(token)
    if not m:
        raise KubeadmError('the bootstrap token "%s" was not of the form "%s"' % (token, r"\A([a-z0-9]{6})\.([a-z0-9]{16})\z"))
    add_secret(m.group(2))
    obj = token_secret_object(m.group(1), m.group(2), ttl, usages, groups, description)
    create_or_replace(client, "/api/v1/namespaces/kube-system/secrets", obj["metadata"]["name"], obj)
    return token


def join_command(endpoint, token, ca_pem):
    return "kubeadm join %s --token %s --discovery-token-ca-cert-hash %s " % (endpoint, token, ca_public_key_hash(ca_pem))
