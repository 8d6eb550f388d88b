"""TEST DOUBLE (kubelet stand-in, not the real kubelet).

A small HTTPS client to the API (kubelet and kubeadm) and the kubelet's node client.

Upstream: kubernetes/kubernetes pkg/kubelet/kubelet_node_status.go (registerWithAPIServer)
"""

from __future__ import annotations

import http.client
import json

from .version import STANDIN_VERSION


class ApiClient:
    """JSON over HTTPS to an API server: client certificate, bearer token or anonymous."""

    def __init__(self, host, port, ctx, token=None, timeout=15):
        self.host, self.port, self.ctx, self.token, self.timeout = host, port, ctx, token, timeout
        self.local_ip = None

    @classmethod
    def from_kubeconfig(cls, kc, **kw):
        return cls(kc.host, kc.port, kc.ssl_context(), **kw)

    def call(self, method, path, body=None, ctype="application/json", raw=False):
        headers = {"Accept": "application/json", "User-Agent": "kube-standin/" + STANDIN_VERSION}
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = ctype
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=self.timeout)
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
            if conn.sock:
                self.local_ip = conn.sock.getsockname()[0]
        finally:
            conn.close()
        if raw:
            return resp.status, payload
        try:
            parsed = json.loads(payload) if payload else {}
        except ValueError:
            parsed = {"message": payload.decode(errors="replace")}
        return resp.status, parsed


class KubeletNodeClient:
    """What k3s.NodeLoop needs: node_call(what, reg, password) over the kubelet's identity."""

    def __init__(self, client, url):
        self.client, self.url = client, url

    @property
    def local_ip(self):
        return self.client.local_ip

    def node_call(self, what, reg, password):
        return self.client.call("POST", "/v1-standin/kubelet/" + what, reg)
