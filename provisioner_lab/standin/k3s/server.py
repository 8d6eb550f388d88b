"""TEST DOUBLE (k3s stand-in, not the real k3s).

`k3s server`: PKI, tokens, kubeconfig, the API server, joining a first server, READY=1.

Upstream: k3s-io/k3s pkg/cli/server/server.go, pkg/server/server.go
"""

from __future__ import annotations

import http.client
import http.server
import os
import secrets
import shutil
import signal
import ssl
import threading

from .api import ApiApp
from .certs import PKI, kubeconfig_yaml, serving_sans, url_host
from .config import parse_token, resolve_token, sha256_hex
from .controllermanager import ControllerManager
from .httpserver import Handler, TLSServer, server_ssl_context
from .netaddr import default_route_address
from .nodeloop import NodeClient, NodeLoop, load_node_password, resolve_node_name
from .nodes import Cluster, node_registration
from .store import NAMESPACE, PROTECTED_NAMESPACES, ApiError, Store
from .util import DEFAULT_DATA_DIR, DEFAULT_KUBECONFIG, Fatal, add_secret, atomic_write, env_float, hp, log, read_file, sd_notify
from .version import STANDIN_NOTE, STANDIN_VERSION


def install_signal_handlers(stop):
    def handler(signum, frame):
        log("info", "Received %s, shutting down" % signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def write_kubeconfig(cfg, pki, port, bind):
    path = hp(cfg.get("write-kubeconfig") or DEFAULT_KUBECONFIG)
    mode = 0o600
    if cfg.get("write-kubeconfig-mode"):
        try:
            mode = int(str(cfg["write-kubeconfig-mode"]), 8)
        except ValueError:
            raise Fatal("invalid write-kubeconfig-mode %r" % cfg["write-kubeconfig-mode"])
    host = bind if bind and bind not in ("0.0.0.0", "::") else "127.0.0.1"
    url = "https://%s:%d" % (url_host(host), port)
    content = kubeconfig_yaml(
        url, read_file(pki.path("server-ca.crt")), read_file(pki.path("client-admin.crt")), read_file(pki.path("client-admin.key"))
    )
    atomic_write(path, content, mode)
    os.chmod(path, mode)
    if cfg.get("write-kubeconfig-group"):
        try:
            shutil.chown(path, group=cfg["write-kubeconfig-group"])
        except (LookupError, OSError) as e:
            log("warning", "failed to set group of %s: %s" % (path, e))
    log("info", "Wrote kubeconfig %s" % path)


def join_cluster(url, token, pki, stop):
    """Joining server: trust the first server's CA, fetch the cluster CAs."""
    if not token:
        raise Fatal("token is required to join a cluster (--token, K3S_TOKEN or 'token:')")
    client = NodeClient(url, token, force_user="server")
    retry = env_float("K3S_STANDIN_RETRY_SECONDS", 5.0)
    while not stop.is_set():
        try:
            ca = client.fetch_cacerts()
            break
        except (OSError, http.client.HTTPException) as e:
            log("info", "Waiting to join cluster at %s: %s" % (url, e))
            stop.wait(retry)
    else:
        return None, None
    client.trust(ca)
    while not stop.is_set():
        try:
            status, data = client.call("GET", "/v1-k3s/standin/bootstrap")
            if status == 200:
                break
            log("error", "Failed to fetch bootstrap data from %s: %d %s" % (url, status, data.get("message", "")))
        except (OSError, http.client.HTTPException) as e:
            log("info", "Waiting to join cluster at %s: %s" % (url, e))
        stop.wait(retry)
    else:
        return None, None
    pki.install_ca("server-ca", data["server-ca.crt"], data["server-ca.key"])
    pki.install_ca("client-ca", data["client-ca.crt"], data["client-ca.key"])
    log("info", "Joined cluster at %s; certificate authorities installed" % url)
    return client, data


def run_server(cfg, node_args, stop):
    data_dir = cfg.get("data-dir") or DEFAULT_DATA_DIR
    server_dir = hp(os.path.join(data_dir, "server"))
    os.makedirs(server_dir, exist_ok=True)
    os.chmod(server_dir, 0o700)
    port = int(cfg.get("https-listen-port") or 6443)
    bind = cfg.get("bind-address") or "0.0.0.0"
    node_name = resolve_node_name(cfg)
    token = resolve_token(cfg)
    agent_token = resolve_token(cfg, "agent-token", "agent-token-file")
    join_url = cfg.get("server")
    pki = PKI(os.path.join(server_dir, "tls"))
    client = bootstrap = None
    if join_url:
        client, bootstrap = join_cluster(join_url, token, pki, stop)
        if client is None:
            return 0
    server_ca = pki.ensure_ca("server-ca", "k3s-server-ca")
    client_ca = pki.ensure_ca("client-ca", "k3s-client-ca")
    ca_pem = read_file(pki.path("server-ca.crt"))
    ca_hash = sha256_hex(ca_pem)

    token_file = os.path.join(server_dir, "token")
    if token:
        thash, _, secret = parse_token(token)
        if thash and thash != ca_hash:
            raise Fatal("token CA hash does not match the Cluster CA certificate hash: %s != %s" % (thash, ca_hash))
    else:
        existing = (read_file(token_file) or b"").decode().strip()
        if existing.startswith("K10") and "::" in existing:
            secret = parse_token(existing)[2]
        else:
            secret = secrets.token_hex(16)
            log("info", "Generated a random cluster token secret")
    add_secret(secret)
    full_token = "K10%s::server:%s\n" % (ca_hash, secret)
    for name in ("token", "node-token"):
        atomic_write(os.path.join(server_dir, name), full_token, 0o600)
    agent_secret = parse_token(agent_token)[2] if agent_token else secret
    add_secret(agent_secret)
    if agent_token:
        atomic_write(os.path.join(server_dir, "agent-token"), "K10%s::node:%s\n" % (ca_hash, agent_secret), 0o600)

    sans = serving_sans(cfg)
    if pki.ensure_leaf("serving-kube-apiserver", server_ca, "kube-apiserver", orgs=["k3s"], sans=sans):
        log("info", "Generated serving certificate with SANs: %s" % ",".join(sans))
    pki.ensure_leaf("client-admin", client_ca, "system:admin", orgs=["system:masters"], server=False)
    write_kubeconfig(cfg, pki, port, bind)

    node_ips = [x.strip() for v in cfg.get("node-ip") or [] for x in v.split(",") if x.strip()]
    advertise = (
        cfg.get("advertise-address")
        or (node_ips[0] if node_ips else "")
        or (bind if bind not in ("0.0.0.0", "::", "127.0.0.1", "::1") else "")
        or default_route_address()
    )
    grace = env_float("K3S_STANDIN_NODE_GRACE_SECONDS", 40.0)
    store = cluster = upstream = None
    if join_url:
        up_ctx = ssl.create_default_context(cadata=ca_pem.decode())
        up_ctx.load_cert_chain(pki.path("client-admin.crt"), pki.path("client-admin.key"))
        upstream = (client.host, client.port, up_ctx)
    else:
        store = Store(os.path.join(server_dir, "db", "state.json"))
        for ns in PROTECTED_NAMESPACES:
            if store.get(NAMESPACE, None, ns) is None:
                store.create(NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        store.flush()
        cluster = Cluster(store, grace)
        bootstrap = {
            "server-ca.crt": ca_pem.decode(),
            "server-ca.key": read_file(pki.path("server-ca.key")).decode(),
            "client-ca.crt": read_file(pki.path("client-ca.crt")).decode(),
            "client-ca.key": read_file(pki.path("client-ca.key")).decode(),
            "etcd": bool(cfg.get("cluster-init")),
        }
    app = ApiApp(store, cluster, ca_pem, secret, agent_secret, advertise, port, bootstrap=bootstrap, upstream=upstream)
    ctx = server_ssl_context(pki.path("serving-kube-apiserver.crt"), pki.path("serving-kube-apiserver.key"), pki.path("client-ca.crt"))
    try:
        httpd = TLSServer((bind, port), Handler, ctx, app)
    except OSError as e:
        raise Fatal("failed to listen on %s:%d: %s" % (bind, port, e))
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="https", daemon=True).start()
    log("info", "Stand-in k3s %s (%s) serving on https://%s:%d" % (STANDIN_VERSION, STANDIN_NOTE, url_host(bind), port))

    threads = []
    if store is not None:

        def flusher():
            while not stop.wait(0.5):
                store.flush()

        def monitor():
            while not stop.wait(min(1.0, grace / 4)):
                cluster.monitor_once()

        threads += [
            threading.Thread(target=flusher, name="flush", daemon=True),
            threading.Thread(target=monitor, name="monitor", daemon=True),
            threading.Thread(target=ControllerManager(store).run, args=(stop,), name="controllers", daemon=True),
        ]

    def notify_ready():
        sd_notify("READY=1")
        log("info", "k3s is up and running")

    if cfg.get("disable-agent"):
        notify_ready()
    else:
        password = load_node_password()
        etcd = bool(cfg.get("cluster-init")) or bool(bootstrap and bootstrap.get("etcd"))

        def reg_fn(local_ip):
            reg = node_registration(
                node_name,
                "control-plane",
                cfg,
                node_args,
                advertise if not join_url or not local_ip else (node_ips[0] if node_ips else local_ip),
            )
            reg["etcd"] = etcd
            return reg

        if store is not None:
            hb = env_float("K3S_STANDIN_HEARTBEAT_SECONDS", 10.0)
            retry = env_float("K3S_STANDIN_RETRY_SECONDS", 5.0)

            def own_node():
                ready = False
                while not stop.is_set():
                    try:
                        cluster.register(reg_fn(None), password)
                        if not ready:
                            ready = True
                            notify_ready()
                        wait = hb
                    except ApiError as e:
                        log("error", "Failed to register node %s: %s" % (node_name, e.message))
                        wait = retry
                    stop.wait(wait)

            threads.append(threading.Thread(target=own_node, name="node", daemon=True))
        else:
            loop = NodeLoop(client, reg_fn, password, stop, on_first_ready=notify_ready)
            threads.append(threading.Thread(target=loop.run, name="node", daemon=True))
    for t in threads:
        t.start()
    while not stop.wait(1.0):
        pass
    app.stopping.set()
    httpd.shutdown()
    httpd.server_close()
    if store is not None:
        store.flush()
    log("info", "Stand-in k3s server stopped")
    return 0
