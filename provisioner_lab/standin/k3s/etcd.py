"""TEST DOUBLE (k3s stand-in, not the real k3s, and not etcd).

A stand-in for the embedded etcd of k3s (and the stacked etcd of kubeadm): an etcd member list,
a full replica of the API's `Store` on every member, and quorum. It models what high
availability changes for a provisioning tool, not raft:

- **Members.** `EtcdMember.bootstrap()` starts a one-member cluster (k3s `cluster-init`);
  `EtcdMember.join(add)` asks a running member to add this one (`add_member`) (k3s: a server with
  `server:` and the token; kubeadm: `join --control-plane`). `remove(name)` removes a member
  (k3s: deleting the server's Node, its etcd member controller; kubeadm: `kubeadm reset`). The
  list is persisted in `<dir>/member.json` and copied to every member by replication.
- **Liveness and quorum.** Every member asks every other for `/standin-etcd/status` each
  `ETCD_STANDIN_HEARTBEAT_SECONDS` (1 s); a member not heard from for three heartbeats is down.
  A member has quorum while more than half of the members (itself included) are up.
- **Leader.** A member up and claiming leadership stays leader; otherwise the up member with
  the newest data (highest resourceVersion, then the lowest name) takes over with a new epoch —
  a crude stand-in for raft's election (the up-to-date log wins). Only a leader with quorum
  applies writes.
- **Writes.** `ReplicatedStore.create/update/delete` on the leader apply to its replica; on a
  follower they are sent to the leader (`/standin-etcd/write`) and return once the local replica
  has caught up (read-your-writes). Without a leader or quorum they wait `WRITE_WAIT_SECONDS`
  and then fail as kube-apiserver does when etcd times out: HTTP 500, reason unknown, message
  `etcdserver: request timed out` (kubectl: `Error from server: etcdserver: request timed out`).
- **Replication.** Followers long-poll the leader for events after their resourceVersion
  (`/standin-etcd/events`); a follower of another epoch, or too far behind, gets a full snapshot
  (so does a (re)started member). Reads and watches are served from the local replica.
- **What it does not do:** raft terms and logs, commit only after a majority acknowledged (a
  write the leader applied in the seconds before it lost quorum can be lost), learners, etcd's
  client port 2379 and gRPC, snapshots/defrag/alarms. Members talk HTTPS (JSON) on the peer port
  (2380), authenticated with one shared secret (`Authorization` header; k3s: the server token).

Interface for an API server (k3s `server.py`, the kubelet stand-in's kube-apiserver):

    store = ReplicatedStore(state_json_path)
    member = EtcdMember(name, peer_url, store, member_dir, auth_header, peer_client_ctx)
    member.bootstrap()  or  member.join(add)   (or neither: a restart; `add(name, peer_url)` asks
                                                a running member's `add_member` and returns its answer)
    member.start(stop, bind, port, peer_server_ctx)        # peer HTTPS server + threads
    member.is_leader()   -> run controllers only there
    member.healthy()     -> quorum and a leader: /readyz, API requests (else quorum_lost())
    member.remove(name)  -> on the leader (or forwarded to it)

Upstream: etcd-io/etcd server/etcdserver/errors.go (`etcdserver: request timed out`),
kubernetes/kubernetes staging/src/k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/status.go
(unknown errors become 500 with an empty reason), staging/src/k8s.io/apiserver/pkg/server/healthz
(`[-]etcd failed: reason withheld`), k3s-io/k3s pkg/etcd/etcd.go (member names `<node>-<hex>`,
peer port 2380), pkg/etcd/member_controller.go (a deleted etcd Node's member is removed)
"""

from __future__ import annotations

import copy
import hmac
import http.client
import json
import os
import secrets
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from .httpserver import Handler, TLSServer
from .store import KINDS, ApiError, Store
from .util import atomic_write, env_float, log, read_file

#: the etcd peer port
PEER_PORT = 2380
PREFIX = "/standin-etcd"
#: what a client waits for a leader with quorum before the request fails
WRITE_WAIT_SECONDS = 1.0
#: how long a write sent to a leader that went away waits for the next leader (etcd: a few seconds)
REQUEST_TIMEOUT_SECONDS = 5.0


def quorum_lost() -> ApiError:
    """kube-apiserver's answer when etcd does not answer in time (no quorum): its Status for an
    error that is not an API status is code 500 with an empty reason."""
    return ApiError(500, "", "etcdserver: request timed out")


def readyz_failure(endpoint: str = "readyz") -> bytes:
    """The body of a failing /readyz, /livez or /healthz: every check, etcd's withheld reason."""
    return ("[+]ping ok\n[+]log ok\n[-]etcd failed: reason withheld\n%s check failed\n" % endpoint).encode()


def member_name(node_name: str) -> str:
    """k3s names an etcd member after its node plus a random suffix."""
    return "%s-%s" % (node_name, secrets.token_hex(4))


def _kind_by_key(key: str):
    for k in KINDS:
        if k.key == key:
            return k
    raise ApiError(400, "BadRequest", "stand-in etcd: unknown kind %r" % key)


class ReplicatedStore(Store):
    """The API's Store as one etcd member's replica: writes go through the member (the leader
    applies them; followers forward them), reads stay local. Without a member (`member is
    None`) it is the plain single-server Store."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.member: EtcdMember | None = None
        #: bumped when a snapshot replaces the replica: open watches end (clients re-list)
        self.generation = 0

    # -- the write path
    def create(self, kind, obj, dry_run=False):
        if dry_run or self.member is None or self.member.applying():
            return super().create(kind, obj, dry_run)
        return self.member.write("create", kind, obj, {})

    def update(self, kind, obj, expect_rv=None, subresource=None, dry_run=False):
        if dry_run or self.member is None or self.member.applying():
            return super().update(kind, obj, expect_rv, subresource, dry_run)
        return self.member.write("update", kind, obj, {"expect_rv": expect_rv, "subresource": subresource})

    def delete(self, kind, ns, name, dry_run=False):
        if dry_run or self.member is None or self.member.applying():
            return super().delete(kind, ns, name, dry_run)
        return self.member.write("delete", kind, None, {"ns": ns, "name": name})

    def apply_local(self, op: str, kind, obj, args: dict) -> dict:
        """Run one write on this replica (the leader's path)."""
        if op == "create":
            return Store.create(self, kind, obj)
        if op == "update":
            return Store.update(self, kind, obj, args.get("expect_rv"), args.get("subresource"))
        if op == "delete":
            return Store.delete(self, kind, args.get("ns"), args["name"])
        raise ApiError(400, "BadRequest", "stand-in etcd: unknown operation %r" % op)

    # -- the replication path (followers)
    def apply_events(self, events: list) -> None:
        """Apply the leader's events (rv, kind key, type, object) in order."""
        with self.lock:
            for rv, key, etype, obj in events:
                if rv <= self.rv:
                    continue
                md = obj["metadata"]
                kind = _kind_by_key(key)
                ident = (md.get("namespace") if kind.namespaced else None, md["name"])
                if etype == "DELETED":
                    self.objs[key].pop(ident, None)
                else:
                    self.objs[key][ident] = copy.deepcopy(obj)
                self.rv = rv
                self.events.append((rv, key, etype, copy.deepcopy(obj)))
                self.dirty = True
            self.cond.notify_all()

    def install_snapshot(self, state: dict) -> None:
        """Replace the replica with the leader's (a state.json document)."""
        with self.lock:
            self.objs = {k.key: {} for k in KINDS}
            for obj in state.get("objects", []):
                kind = next((k for k in KINDS if k.api_version == obj.get("apiVersion") and k.kind == obj.get("kind")), None)
                if kind is not None:
                    md = obj["metadata"]
                    self.objs[kind.key][(md.get("namespace") if kind.namespaced else None, md["name"])] = obj
            self.rv = int(state.get("resourceVersion", 0))
            self.start_rv = self.rv
            self.events.clear()
            self.generation += 1
            self.dirty = True
            self.cond.notify_all()


class PeerClient:
    """HTTPS to one peer (kept open between calls)."""

    def __init__(self, url: str, ctx: ssl.SSLContext, auth_header: str) -> None:
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname or "", u.port or PEER_PORT
        self.ctx, self.auth = ctx, auth_header
        self.lock = threading.Lock()
        self.conn: http.client.HTTPSConnection | None = None

    def call(self, method: str, path: str, body: Any = None, timeout: float = 5.0) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": self.auth, "Content-Type": "application/json"}
        with self.lock:
            for attempt in (1, 2):
                if self.conn is None:
                    self.conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=timeout)
                try:
                    self.conn.timeout = timeout
                    if self.conn.sock is not None:
                        self.conn.sock.settimeout(timeout)
                    self.conn.request(method, PREFIX + path, body=data, headers=headers)
                    resp = self.conn.getresponse()
                    raw = resp.read()
                    return resp.status, json.loads(raw or b"null")
                except (OSError, http.client.HTTPException, ValueError):
                    self.conn.close()
                    self.conn = None
                    if attempt == 2:
                        raise
        raise OSError("unreachable")

    def close(self) -> None:
        with self.lock:
            if self.conn is not None:
                self.conn.close()
                self.conn = None


class EtcdMember:
    """One member of the stand-in etcd cluster (see the module docstring)."""

    def __init__(
        self, name: str, peer_url: str, store: ReplicatedStore, member_dir: str, auth_header: str, client_ctx: ssl.SSLContext
    ) -> None:
        self.name, self.peer_url, self.store, self.dir = name, peer_url, store, member_dir
        self.auth, self.client_ctx = auth_header, client_ctx
        self.lock = threading.RLock()
        self.members: dict[str, str] = {}
        self.members_version = 0
        self.leader: str | None = None
        self.epoch = ""  # the leader epoch this replica follows (or leads)
        self.peer_status: dict[str, dict] = {}
        self.last_seen: dict[str, float] = {}
        self.acked: dict[str, float] = {}
        self.clients: dict[str, PeerClient] = {}
        self.heartbeat = env_float("ETCD_STANDIN_HEARTBEAT_SECONDS", 1.0)
        self.local = threading.local()
        self.synced = False
        self.httpd: TLSServer | None = None
        store.member = self
        raw = read_file(self.path)
        if raw:
            saved = json.loads(raw)
            self.members = dict(saved.get("members") or {})
            self.members_version = int(saved.get("membersVersion") or 0)

    # -- persistence
    @property
    def path(self) -> str:
        return os.path.join(self.dir, "member.json")

    @staticmethod
    def saved_name(member_dir: str) -> str | None:
        """The member name of an existing member directory (None: this host is no member yet)."""
        raw = read_file(os.path.join(member_dir, "member.json"))
        return json.loads(raw).get("name") if raw else None

    def _save(self) -> None:
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        doc = {"name": self.name, "peerURL": self.peer_url, "members": self.members, "membersVersion": self.members_version}
        atomic_write(self.path, json.dumps(doc, indent=1, sort_keys=True), 0o600)

    # -- membership
    def bootstrap(self) -> None:
        """A new one-member cluster (cluster-init). Already done: member.json exists."""
        with self.lock:
            if not self.members:
                self.members = {self.name: self.peer_url}
                self.members_version = 1
                self._save()
                log("info", "stand-in etcd: new cluster, member %s at %s" % (self.name, self.peer_url))

    def join(self, add: Callable[[str, str], dict]) -> None:
        """Become a member of a running cluster: ``add(name, peer_url)`` asks one of its members
        (k3s: through the supervisor API of the server in ``server:``) and returns the new list.
        Already done: this member is in the saved list (a restart)."""
        if self.name in self.members:
            return
        body = add(self.name, self.peer_url)
        with self.lock:
            self.members = dict(body["members"])
            self.members_version = int(body["membersVersion"])
            self._save()
        log("info", "stand-in etcd: joined as %s; members %s" % (self.name, ", ".join(sorted(self.members))))

    def add_member(self, name: str, peer_url: str) -> dict:
        """Add a member (on the leader; a follower forwards it): {"members", "membersVersion"}."""
        return self._leader_call("POST", "/members", {"name": name, "peerURL": peer_url})

    def remove(self, name: str) -> None:
        """Remove member ``name`` (on the leader; a follower forwards it)."""
        self._leader_call("DELETE", "/members/" + urllib.parse.quote(name), None)

    def member_list(self) -> dict[str, str]:
        with self.lock:
            return dict(self.members)

    def _set_members(self, members: dict[str, str], version: int) -> None:
        with self.lock:
            if version > self.members_version:
                self.members, self.members_version = dict(members), version
                self._save()

    def _change_members(self, add: tuple[str, str] | None = None, remove: str | None = None) -> dict:
        """Leader only: change the list and hand it out with the next replication poll."""
        with self.lock:
            if not self.is_leader():
                raise quorum_lost()
            members = dict(self.members)
            if add is not None:
                for other, url in list(members.items()):
                    if url == add[1] and other != add[0]:
                        raise ApiError(409, "", "etcdserver: Peer URLs already exists")
                members[add[0]] = add[1]
                log("info", "stand-in etcd: added member %s at %s" % add)
            if remove is not None:
                if remove not in members:
                    raise ApiError(404, "", "etcdserver: member not found")
                del members[remove]
                log("info", "stand-in etcd: removed member %s" % remove)
            self.members, self.members_version = members, self.members_version + 1
            self._save()
            self.store.cond.acquire()
            self.store.cond.notify_all()
            self.store.cond.release()
            return {"members": self.members, "membersVersion": self.members_version}

    # -- liveness, quorum, leader
    def up_members(self) -> set[str]:
        now = time.monotonic()
        with self.lock:
            up = {n for n in self.members if n == self.name or now - self.last_seen.get(n, -1e9) < 3 * self.heartbeat + 0.5}
        return up

    def has_quorum(self) -> bool:
        with self.lock:
            if self.name not in self.members:
                return False
            return len(self.up_members()) * 2 > len(self.members)

    def is_leader(self) -> bool:
        return self.leader == self.name and self.has_quorum()

    def healthy(self) -> bool:
        """Quorum and a leader whose data this replica has: the API may answer."""
        return self.has_quorum() and self.leader is not None and (self.leader == self.name or self.synced)

    def wait_healthy(self, seconds: float = WRITE_WAIT_SECONDS) -> bool:
        deadline = time.monotonic() + seconds
        while not self.healthy():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def status(self) -> dict:
        with self.lock:
            return {
                "name": self.name,
                "leader": self.leader,
                "epoch": self.epoch,
                "rv": self.store.rv,
                "members": self.members,
                "membersVersion": self.members_version,
                "quorum": self.has_quorum(),
            }

    def _client(self, name: str, url: str) -> PeerClient:
        c = self.clients.get(name)
        if c is None or (c.host, c.port) != (urllib.parse.urlsplit(url).hostname, urllib.parse.urlsplit(url).port or PEER_PORT):
            c = self.clients[name] = PeerClient(url, self.client_ctx, self.auth)
        return c

    def _probe(self, name: str, url: str) -> None:
        try:
            code, body = self._client(name, url).call("GET", "/status", timeout=max(0.5, self.heartbeat))
        except ConnectionRefusedError:
            self.mark_down(name)  # nothing listens: its process is gone, no need to wait
            return
        except (OSError, http.client.HTTPException, ValueError):
            return
        if code == 200 and isinstance(body, dict):
            with self.lock:
                self.last_seen[name] = time.monotonic()
                self.peer_status[name] = body
            self._set_members(body.get("members") or {}, int(body.get("membersVersion") or 0))

    def mark_down(self, name: str) -> None:
        """A member found unreachable for sure (connection refused): down at once."""
        with self.lock:
            self.last_seen.pop(name, None)
            self.peer_status.pop(name, None)

    def heartbeat_once(self) -> None:
        """Ask every other member for its status (in parallel), then decide the leader."""
        with self.lock:
            peers = [(n, u) for n, u in self.members.items() if n != self.name]
        threads = [threading.Thread(target=self._probe, args=p, daemon=True) for p in peers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(self.heartbeat + 1.0)
        self.elect()

    def elect(self) -> None:
        with self.lock:
            before = self.leader
            if not self.has_quorum():
                self.leader = None
            else:
                up = self.up_members()
                claims = sorted(n for n in up if n != self.name and (self.peer_status.get(n) or {}).get("leader") == n)
                if self.leader == self.name:
                    pass  # keep leading while the quorum holds
                elif claims:
                    self.leader = claims[0]
                else:
                    rv = {n: int((self.peer_status.get(n) or {}).get("rv") or 0) for n in up if n != self.name}
                    rv[self.name] = self.store.rv
                    best = sorted(up, key=lambda n: (-rv[n], n))[0]
                    if best == self.name:
                        self.leader = self.name
                        self.epoch = secrets.token_hex(8)
                    else:
                        self.leader = None  # wait for it to claim
            if self.leader != before:
                log("info", "stand-in etcd: %s" % ("leader is %s" % self.leader if self.leader else "no leader (lost quorum)"))
                if self.leader != self.name:
                    self.synced = False

    # -- writes
    def applying(self) -> bool:
        """True inside a write this member applies as leader (nested writes stay local)."""
        return bool(getattr(self.local, "depth", 0))

    def write(self, op: str, kind, obj: dict | None, args: dict) -> dict:
        if not self.wait_healthy():
            raise quorum_lost()
        if self.is_leader():
            self.local.depth = getattr(self.local, "depth", 0) + 1
            try:
                with self.store.lock:
                    return self.store.apply_local(op, kind, obj, args)
            finally:
                self.local.depth -= 1
        body = self._leader_call("POST", "/write", {"op": op, "kind": kind.key, "obj": obj, "args": args})
        result = body["object"]
        self._wait_rv(int(body["rv"]))
        if obj is not None:
            obj.clear()
            obj.update(copy.deepcopy(result))
        return result

    def _wait_rv(self, rv: int, seconds: float = 5.0) -> None:
        deadline = time.monotonic() + seconds
        with self.store.cond:
            while self.store.rv < rv and time.monotonic() < deadline:
                self.store.cond.wait(0.2)

    def _leader_call(self, method: str, path: str, body: Any) -> dict:
        """Send a request to the leader (or serve it here). A leader that does not answer is
        marked down and the request waits for the next one, up to `REQUEST_TIMEOUT_SECONDS`."""
        deadline = time.monotonic() + REQUEST_TIMEOUT_SECONDS
        while True:
            if not self.wait_healthy(max(0.0, min(WRITE_WAIT_SECONDS, deadline - time.monotonic()))):
                if time.monotonic() >= deadline or not self.has_quorum():
                    raise quorum_lost()
                continue
            with self.lock:
                leader = self.leader
                url = self.members.get(leader or "")
            if leader == self.name:
                return self._serve_leader(method, path, body)
            if not leader or not url:
                raise quorum_lost()
            try:
                code, resp = self._client(leader, url).call(method, path, body, timeout=10)
                break
            except (OSError, http.client.HTTPException, ValueError):
                self.mark_down(leader)
                self.elect()
                if time.monotonic() >= deadline:
                    raise quorum_lost()
                time.sleep(0.1)
        if code != 200:
            resp = resp or {}
            raise ApiError(code, resp.get("reason", ""), resp.get("message", "etcdserver: request failed"), resp.get("details"))
        return resp

    def _serve_leader(self, method: str, path: str, body: Any) -> dict:
        if not self.is_leader():
            raise quorum_lost()
        if method == "POST" and path == "/write":
            kind = _kind_by_key(body["kind"])
            self.local.depth = getattr(self.local, "depth", 0) + 1
            try:
                with self.store.lock:
                    obj = self.store.apply_local(body["op"], kind, body.get("obj"), body.get("args") or {})
                    return {"object": obj, "rv": self.store.rv}
            finally:
                self.local.depth -= 1
        if method == "POST" and path == "/members":
            return self._change_members(add=(body["name"], body["peerURL"]))
        if method == "DELETE" and path.startswith("/members/"):
            return self._change_members(remove=urllib.parse.unquote(path[len("/members/") :]))
        raise ApiError(404, "NotFound", "stand-in etcd: no route %s %s" % (method, path))

    # -- replication
    def events_since(self, member: str, epoch: str, after: int, wait: float) -> dict:
        """Leader: the events after ``after`` for a follower of ``epoch``, or a snapshot."""
        if not self.is_leader():
            raise quorum_lost()
        store = self.store
        deadline = time.monotonic() + wait
        with store.cond:
            while True:
                with self.lock:
                    self.acked[member] = time.monotonic()
                    out: dict[str, Any] = {
                        "leader": self.name,
                        "epoch": self.epoch,
                        "members": self.members,
                        "membersVersion": self.members_version,
                    }
                oldest = store.events[0][0] - 1 if store.events else store.rv
                if epoch != self.epoch or after > store.rv or after < max(oldest, store.start_rv):
                    out["snapshot"] = json.loads(store.snapshot())
                    store.dirty = True
                    return out
                evs = [list(e) for e in store.events if e[0] > after]
                remaining = deadline - time.monotonic()
                if evs or remaining <= 0:
                    out["events"] = evs
                    return out
                store.cond.wait(min(remaining, 0.5))

    def replicate_once(self) -> None:
        """Follower: one long poll of the leader; apply events or install the snapshot."""
        with self.lock:
            leader, url = self.leader, self.members.get(self.leader or "")
        if not leader or leader == self.name or not url:
            return
        q = urllib.parse.urlencode({"member": self.name, "epoch": self.epoch, "after": self.store.rv})
        try:
            code, body = self._client("replication:" + leader, url).call("GET", "/events?" + q, timeout=10)
        except (OSError, http.client.HTTPException, ValueError):
            time.sleep(0.2)
            return
        if code != 200 or not isinstance(body, dict) or body.get("leader") != leader:
            time.sleep(0.2)
            return
        self._set_members(body.get("members") or {}, int(body.get("membersVersion") or 0))
        if "snapshot" in body:
            self.store.install_snapshot(body["snapshot"])
            log("info", "stand-in etcd: installed a snapshot from %s at resourceVersion %d" % (leader, self.store.rv))
        else:
            self.store.apply_events(body.get("events") or [])
        with self.lock:
            if self.leader == leader:
                self.epoch = body["epoch"]
                self.synced = True

    # -- the peer server
    def handle(self, h, method: str) -> None:
        """Peer requests (the HTTPS app of the peer port)."""
        body = h.read_body()
        if not hmac.compare_digest((h.headers.get("Authorization") or "").encode(), self.auth.encode()):
            raise ApiError(401, "Unauthorized", "Unauthorized")
        u = urllib.parse.urlsplit(h.path)
        path = u.path[len(PREFIX) :] if u.path.startswith(PREFIX) else u.path
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(u.query).items()}
        if method == "GET" and path == "/status":
            return h.send_json(200, self.status())
        if method == "GET" and path == "/events":
            return h.send_json(200, self.events_since(q.get("member", ""), q.get("epoch", ""), int(q.get("after") or 0), 2.0))
        try:
            data = json.loads(body) if body else None
        except ValueError:
            raise ApiError(400, "BadRequest", "invalid JSON")
        if method == "POST" and path == "/members" and self.leader != self.name:
            return h.send_json(200, self._leader_call(method, path, data))
        return h.send_json(200, self._serve_leader(method, path, data))

    def start(self, stop: threading.Event, bind: str, port: int, server_ctx: ssl.SSLContext) -> None:
        """Serve the peer port and run the heartbeat and replication loops until ``stop``."""
        try:
            self.httpd = TLSServer((bind, port), Handler, server_ctx, self)
        except OSError as e:
            raise OSError("stand-in etcd: failed to listen on %s:%d: %s" % (bind, port, e))
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="etcd-peer", daemon=True).start()

        def heartbeats() -> None:
            while not stop.is_set():
                started = time.monotonic()
                self.heartbeat_once()
                stop.wait(max(0.05, self.heartbeat - (time.monotonic() - started)))

        def replication() -> None:
            while not stop.is_set():
                if self.leader and self.leader != self.name:
                    self.replicate_once()
                else:
                    stop.wait(0.1)

        threading.Thread(target=heartbeats, name="etcd-heartbeat", daemon=True).start()
        threading.Thread(target=replication, name="etcd-replication", daemon=True).start()
        log("info", "stand-in etcd: member %s serving peers on %s" % (self.name, self.peer_url))

    def shutdown(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None
        for c in list(self.clients.values()):
            c.close()
