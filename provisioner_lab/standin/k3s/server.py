"""TEST DOUBLE (k3s stand-in, not the real k3s).

`k3s server`: PKI, tokens, kubeconfig, the API server, embedded etcd (the stand-in of etcd.py)
with `cluster-init` or when joining a server, READY=1.

A server with `cluster-init` starts a one-member etcd cluster; a server with `server:` fetches
the CAs from that server, becomes an etcd member through it and then serves the API itself from
its own replica. Joining a server that runs without etcd (SQLite) is refused. Controllers and
the node monitor run on the etcd leader only (k3s: leader election of the controllers).

Upstream: k3s-io/k3s pkg/cli/server/server.go, pkg/server/server.go, pkg/cluster/managed.go,
pkg/etcd/etcd.go (join: member add through a running server), pkg/etcd/member_controller.go
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
import time

from .api import ApiApp
from .certs import PKI, kubeconfig_yaml, serving_sans, url_host
from .config import basic_auth, parse_token, resolve_token, sha256_hex
from .controllermanager import ControllerManager
from .etcd import PEER_PORT, EtcdMember, ReplicatedStore, member_name
from .httpserver import Handler, TLSServer, server_ssl_context
from .netaddr import default_route_address
from .nodeloop import NodeClient, load_node_password, resolve_node_name
from .nodes import ETCD_NAME_ANNOTATION, Cluster, node_registration
from .store import NAMESPACE, NODE, PROTECTED_NAMESPACES, ApiError, Store
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
    if not data.get("etcd"):
        raise Fatal(
            "failed to join cluster at %s: that server does not run embedded etcd (it was started "
            "without cluster-init and uses SQLite); restart it with cluster-init before joining "
            "servers (stand-in message)" % url
        )
    pki.install_ca("server-ca", data["server-ca.crt"], data["server-ca.key"])
    pki.install_ca("client-ca", data["client-ca.crt"], data["client-ca.key"])
    log("info", "Joined cluster at %s; certificate authorities installed" % url)
    return client, data


def etcd_member_add(client, name, peer_url, stop):
    """Ask the server we join to add us as an etcd member; retried while it has no quorum."""
    retry = env_float("K3S_STANDIN_RETRY_SECONDS", 5.0)
    while True:
        try:
            status, data = client.call("POST", "/v1-k3s/standin/etcd/members", {"name": name, "peerURL": peer_url})
            if status == 200:
                return data
            log("error", "Failed to add etcd member %s: %d %s" % (name, status, data.get("message", "")))
        except (OSError, http.client.HTTPException) as e:
            log("info", "Waiting to add etcd member %s: %s" % (name, e))
        if stop.wait(retry):
            raise Fatal("stopped before joining etcd")


def ensure_namespaces(store):
    """The namespaces every cluster has. Already done: each exists."""
    for ns in PROTECTED_NAMESPACES:
        if store.get(NAMESPACE, None, ns) is None:
            store.create(NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})


def remove_etcd_member(member, kind, obj):
    """k3s's etcd member controller: deleting an etcd server's Node removes its member."""
    if kind is not NODE:
        return
    name = (obj["metadata"].get("annotations") or {}).get(ETCD_NAME_ANNOTATION)
    if name and name in member.member_list():
        try:
            member.remove(name)
            log("info", "Removed etcd member %s of deleted node %s" % (name, obj["metadata"]["name"]))
        except ApiError as e:
            log("error", "Failed to remove etcd member %s: %s" % (name, e.message))


def leader_loop(member, store, cluster, grace, stop, on_monitor=None):
    """What runs on the etcd leader only (on every API server of a single-server store, when
    ``member`` is None): namespaces, the node monitor (and ``on_monitor`` with it), the
    controllers. Upstream: leader election of kube-controller-manager."""
    cm = ControllerManager(store)
    last_monitor = 0.0
    while not stop.is_set():
        if member is not None and not member.is_leader():
            stop.wait(0.3)
            continue
        before = store.rv
        try:
            if member is not None:
                ensure_namespaces(store)
            if time.monotonic() - last_monitor >= min(1.0, grace / 4):
                last_monitor = time.monotonic()
                cluster.monitor_once()
                if on_monitor is not None:
                    on_monitor()
            cm.sync_once()
        except ApiError as e:
            log("info", "controllers: %s" % e.message)
        except Exception as e:  # noqa: BLE001 -- a bad object must not stop the loop
            log("error", "controllers: %s" % e)
        if store.rv == before:
            stop.wait(0.3)


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
    etcd_dir = os.path.join(server_dir, "db", "etcd")
    saved_member = EtcdMember.saved_name(etcd_dir)
    use_etcd = bool(cfg.get("cluster-init") or join_url or saved_member)
    state = os.path.join(server_dir, "db", "state.json")
    store = ReplicatedStore(state) if use_etcd else Store(state)
    member = None
    if use_etcd:
        peer_host = bind if bind not in ("0.0.0.0", "::") else advertise
        peer_port = int(os.environ.get("K3S_STANDIN_ETCD_PEER_PORT") or PEER_PORT)
        peer_ctx = ssl.create_default_context(cadata=ca_pem.decode())
        member = EtcdMember(
            saved_member or member_name(node_name),
            "https://%s:%d" % (url_host(peer_host), peer_port),
            store,
            etcd_dir,
            basic_auth("server", secret),
            peer_ctx,
        )
        if join_url and client is not None:
            member.join(lambda name, url: etcd_member_add(client, name, url, stop))
        elif not saved_member:
            member.bootstrap()
    else:
        ensure_namespaces(store)
    store.flush()
    cluster = Cluster(store, grace)
    if member is not None:
        store.delete_hooks.append(lambda kind, obj: remove_etcd_member(member, kind, obj))
    bootstrap = {
        "server-ca.crt": ca_pem.decode(),
        "server-ca.key": read_file(pki.path("server-ca.key")).decode(),
        "client-ca.crt": read_file(pki.path("client-ca.crt")).decode(),
        "client-ca.key": read_file(pki.path("client-ca.key")).decode(),
        "etcd": use_etcd,
    }
    app = ApiApp(store, cluster, ca_pem, secret, agent_secret, advertise, port, bootstrap=bootstrap, etcd=member)
    ctx = server_ssl_context(pki.path("serving-kube-apiserver.crt"), pki.path("serving-kube-apiserver.key"), pki.path("client-ca.crt"))
    try:
        httpd = TLSServer((bind, port), Handler, ctx, app)
    except OSError as e:
        raise Fatal("failed to listen on %s:%d: %s" % (bind, port, e))
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="https", daemon=True).start()
    log("info", "Stand-in k3s %s (%s) serving on https://%s:%d" % (STANDIN_VERSION, STANDIN_NOTE, url_host(bind), port))

    if member is not None:
        member.start(stop, bind, peer_port, ctx)

    def flusher():
        while not stop.wait(0.5):
            store.flush()

    threads = [threading.Thread(target=flusher, name="flush", daemon=True)]
    if member is None:

        def monitor():
            while not stop.wait(min(1.0, grace / 4)):
                cluster.monitor_once()

        threads += [
            threading.Thread(target=monitor, name="monitor", daemon=True),
            threading.Thread(target=ControllerManager(store).run, args=(stop,), name="controllers", daemon=True),
        ]
    else:
        threads.append(threading.Thread(target=leader_loop, args=(member, store, cluster, grace, stop), name="leader", daemon=True))

    def notify_ready():
        sd_notify("READY=1")
        log("info", "k3s is up and running")

    if cfg.get("disable-agent"):
        notify_ready()
    else:
        password = load_node_password()

        hb = env_float("K3S_STANDIN_HEARTBEAT_SECONDS", 10.0)
        retry = env_float("K3S_STANDIN_RETRY_SECONDS", 5.0)

        def registration():
            reg = node_registration(node_name, "control-plane", cfg, node_args, advertise)
            reg["etcd"] = use_etcd
            if member is not None:
                reg["etcdMember"] = {"name": member.name, "address": member.peer_url}
            return reg

        def own_node():
            """Register this server's Node and heartbeat it (through etcd: while it has quorum)."""
            ready = False
            while not stop.is_set():
                try:
                    cluster.register(registration(), password)
                    if not ready:
                        ready = True
                        notify_ready()
                    wait = hb
                except ApiError as e:
                    log("error", "Failed to register node %s: %s" % (node_name, e.message))
                    wait = retry
                stop.wait(wait)

        threads.append(threading.Thread(target=own_node, name="node", daemon=True))
    for t in threads:
        t.start()
    while not stop.wait(1.0):
        pass
    app.stopping.set()
    httpd.shutdown()
    httpd.server_close()
    if member is not None:
        member.shutdown()
    store.flush()
    log("info", "Stand-in k3s server stopped")
    return 0
