"""TEST DOUBLE (k3s stand-in, not the real k3s).

Client side: how agents (and joining servers) talk to a server: CA from /cacerts checked
against the token, the node password, registration and the heartbeat loop.

Upstream: k3s-io/k3s pkg/agent/config/config.go (getCACerts, node password), pkg/clientaccess/token.go
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import secrets
import ssl
import urllib.parse

from .config import basic_auth, parse_token, sha256_hex
from .util import NODE_PASSWORD_FILE, Fatal, add_secret, atomic_write, env_float, hostname, hp, log, read_file
from .version import STANDIN_VERSION


class NodeClient:
    def __init__(self, url, token, force_user=None):
        u = urllib.parse.urlsplit(url)
        if u.scheme != "https" or not u.hostname:
            raise Fatal("invalid server url %r: must be https://<host>:<port>" % url)
        self.url, self.host, self.port = url, u.hostname, u.port or 6443
        self.ca_hash, user, self.secret = parse_token(token)
        self.user = force_user or user
        self.ctx = None
        self.local_ip = None

    def _conn(self, ctx, timeout=15):
        return http.client.HTTPSConnection(self.host, self.port, context=ctx, timeout=timeout)

    def fetch_cacerts(self):
        conn = self._conn(ssl._create_unverified_context())
        try:
            conn.request("GET", "/cacerts")
            resp = conn.getresponse()
            data = resp.read()
            self.local_ip = conn.sock.getsockname()[0] if conn.sock else self.local_ip
        finally:
            conn.close()
        if resp.status != 200:
            raise OSError("GET %s/cacerts: %d %s" % (self.url, resp.status, resp.reason))
        return data

    def trust(self, ca_pem):
        got = sha256_hex(ca_pem)
        if self.ca_hash and got != self.ca_hash:
            raise Fatal("token CA hash does not match the Cluster CA certificate hash: %s != %s" % (self.ca_hash, got))
        self.ctx = ssl.create_default_context(cadata=ca_pem.decode())
        return got

    def call(self, method, path, body=None, headers=None, ctx=None):
        hdrs = {"Authorization": basic_auth(self.user, self.secret), "User-Agent": "k3s-standin/" + STANDIN_VERSION}
        hdrs.update(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        conn = self._conn(ctx or self.ctx)
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            raw = resp.read()
            if conn.sock:
                self.local_ip = conn.sock.getsockname()[0]
        finally:
            conn.close()
        try:
            parsed = json.loads(raw) if raw else {}
        except ValueError:
            parsed = {"message": raw.decode(errors="replace")}
        return resp.status, parsed

    def node_call(self, what, reg, password):
        return self.call("POST", "/v1-k3s/standin/" + what, reg, {"K3s-Node-Name": reg["nodeName"], "K3s-Node-Password": password})


def load_node_password():
    path = hp(NODE_PASSWORD_FILE)
    data = read_file(path)
    if data and data.strip():
        pw = data.decode().strip()
    else:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        pw = secrets.token_hex(16)
        atomic_write(path, pw + "\n", 0o600)
    add_secret(pw)
    return pw


def resolve_node_name(cfg):
    name = (cfg.get("node-name") or hostname()).lower()
    if cfg.get("with-node-id"):
        path = hp("/etc/rancher/node/node-id")
        nid = (read_file(path) or b"").decode().strip()
        if not nid:
            nid = secrets.token_hex(4)
            atomic_write(path, nid + "\n", 0o600)
        name = "%s-%s" % (name, nid)
    return name


class NodeLoop:
    """Register a node with a server, then heartbeat; re-register when the server lost it, unless
    ``reregister`` is False: then, as the upstream kubelet does (registrationCompleted is set once
    per process in pkg/kubelet/kubelet_node_status.go; kubernetes/kubernetes#71398, #115761), a
    deleted Node stays deleted and only a restart registers it again."""

    def __init__(self, client, reg_fn, password, stop, on_first_ready=None, reregister=True):
        self.client, self.reg_fn, self.password, self.stop = client, reg_fn, password, stop
        self.on_first_ready = on_first_ready
        self.reregister = reregister
        self.hb = env_float("K3S_STANDIN_HEARTBEAT_SECONDS", 10.0)
        self.retry = env_float("K3S_STANDIN_RETRY_SECONDS", 5.0)
        self.registered = False
        self.ready_sent = False

    def step(self):
        """One register/heartbeat; returns seconds to wait before the next one."""
        reg = self.reg_fn(self.client.local_ip)
        what = "heartbeat" if self.registered else "register"
        try:
            status, data = self.client.node_call(what, reg, self.password)
        except ssl.SSLCertVerificationError as e:
            log("error", "Failed to validate connection to cluster at %s: %s" % (self.client.url, e.verify_message or e))
            return self.retry
        except (OSError, http.client.HTTPException) as e:
            log("info", "Waiting to retrieve agent configuration; server is not ready: %s" % e)
            return self.retry
        msg = data.get("message", "") if isinstance(data, dict) else ""
        if status == 200:
            if not self.registered:
                log("info", "Node %s registered with server %s" % (reg["nodeName"], self.client.url))
                self.registered = True
            if not self.ready_sent:
                self.ready_sent = True
                if self.on_first_ready:
                    self.on_first_ready()
            return self.hb
        if status == 404 and self.registered and not self.reregister:
            log("error", 'Error updating node status, will retry: error getting node "%s": nodes "%s" not found' % ((reg["nodeName"],) * 2))
            return self.hb
        if status == 404 and self.registered:
            log("info", "Node %s not found on the server; registering again" % reg["nodeName"])
            self.registered = False
            return 0
        self.registered = False
        if status == 403:
            log("error", "Waiting to retrieve agent configuration; server is not ready: %s" % msg)
        elif status == 401:
            log(
                "error", "Failed to validate connection to cluster at %s: token rejected by the server (401 Unauthorized)" % self.client.url
            )
        else:
            log("error", "Unexpected response from %s: %d %s" % (self.client.url, status, msg))
        return self.retry

    def run(self):
        while not self.stop.is_set():
            wait = self.step()
            if wait:
                self.stop.wait(wait)
