"""TEST DOUBLE (k3s stand-in, not the real k3s).

The HTTP application: anonymous endpoints, the k3s supervisor routes (/v1-k3s, /cacerts), the
Kubernetes API (discovery, list/watch/get/create/update/patch/delete, the scale and
pods/eviction subresources, DELETE with propagationPolicy Orphan), /openapi/v2.

Upstream: k3s-io/k3s pkg/server/router.go; kubernetes/kubernetes
staging/src/k8s.io/apiserver/pkg/endpoints/handlers/ (get.go, create.go, patch.go, watch.go),
pkg/registry/apps/deployment/storage/storage.go (the scale subresource),
pkg/registry/core/pod/storage/eviction.go (pods/eviction, in disruption.py)
"""

from __future__ import annotations

import collections
import hmac
import json
import threading
import time
import urllib.parse

from .config import _yaml
from .disruption import Disruption
from .etcd import quorum_lost, readyz_failure
from .httpserver import wants_table
from .selectors import field_match, json_patch, label_match, merge_patch, parse_field_selector, parse_label_selector
from .store import KINDS, ApiError, bad_request, kind_for, not_found
from .util import Fatal, version_info
from .version import STANDIN_VERSION


def unauthorized():
    return ApiError(401, "Unauthorized", "Unauthorized")


#: Readable without credentials, as RBAC lets system:anonymous read it on a kubeadm cluster.
ANONYMOUS_PATHS = ("/api/v1/namespaces/kube-public/configmaps/cluster-info",)


OPENAPI_PROTOBUF = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"


def _pb_varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _pb_bytes(field, data):
    if isinstance(data, str):
        data = data.encode()
    return _pb_varint(field << 3 | 2) + _pb_varint(len(data)) + data


def openapi_v2_protobuf(version):
    """A minimal OpenAPI v2 document in gnostic's protobuf encoding (openapi_v2.Document):
    swagger (field 1) = "2.0" and info (field 2: title 1, version 2), and no definitions, so
    kubectl finds no schema for any kind and skips client-side validation."""
    info = _pb_bytes(1, "Kubernetes (stand-in for testing)") + _pb_bytes(2, version)
    return _pb_bytes(1, "2.0") + _pb_bytes(2, info)


def scale_of(obj):
    """The autoscaling/v1 Scale of a Deployment or ReplicaSet."""
    md = obj["metadata"]
    selector = (obj.get("spec") or {}).get("selector") or {}
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {k: md[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in md},
        "spec": {"replicas": obj["spec"].get("replicas", 0)},
        "status": {
            "replicas": (obj.get("status") or {}).get("replicas", 0),
            "selector": ",".join("%s=%s" % kv for kv in sorted((selector.get("matchLabels") or {}).items())),
        },
    }


def resource_not_found():
    return ApiError(404, "NotFound", "the server could not find the requested resource")


class ApiApp:
    def __init__(self, store, cluster, ca_pem, secret, agent_secret, advertise, port, bootstrap=None, etcd=None):
        self.store, self.cluster = store, cluster
        self.ca_pem, self.secret, self.agent_secret = ca_pem, secret, agent_secret
        self.advertise, self.port = advertise, port
        #: the stand-in etcd member (etcd.py) whose replica `store` is; None: a single server's store
        self.bootstrap, self.etcd = bootstrap, etcd
        self.stopping = threading.Event()
        self.git_version = STANDIN_VERSION
        self.disruption = Disruption(store) if store is not None else None

    def view(self, kind, obj):
        """Hook for subclasses: how a single object looks on GET (default: as stored)."""
        return obj

    # -- entry point
    def handle(self, h, method):
        u = urllib.parse.urlsplit(h.path)
        path = u.path.rstrip("/") or "/"
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(u.query, keep_blank_values=True).items()}
        body = h.read_body()
        if path == "/cacerts":
            return h.send_bytes(200, self.ca_pem, "text/plain; charset=utf-8")
        if path == "/ping":
            return h.send_bytes(200, b"pong", "text/plain; charset=utf-8")
        if path.split("/")[1] in ("readyz", "livez", "healthz"):
            return self.health(h, path.split("/")[1])
        if path == "/version":
            return h.send_json(200, version_info(self.git_version))
        if path.startswith("/v1-k3s/"):
            return self.supervisor(h, method, path, body)
        anonymous_ok = method == "GET" and path in ANONYMOUS_PATHS
        if not anonymous_ok and h.client_cert_identity() is None:
            raise unauthorized()
        self.require_datastore()
        return self.kube_api(h, method, path, q, body)

    def health(self, h, endpoint):
        """/readyz, /livez, /healthz: ok, or 500 listing the failed etcd check (no quorum)."""
        if self.etcd is not None and not self.etcd.healthy():
            return h.send_bytes(500, readyz_failure(endpoint), "text/plain; charset=utf-8")
        return h.send_bytes(200, b"ok", "text/plain; charset=utf-8")

    def require_datastore(self):
        """Without etcd quorum every request that needs the datastore fails (after a short
        wait for a leader), as kube-apiserver's do when etcd times out."""
        if self.etcd is not None and not self.etcd.wait_healthy():
            raise quorum_lost()

    # -- /v1-k3s: node registration with basic auth
    def auth_basic(self, h):
        user, pw = h.basic_credentials()
        if user is None:
            raise unauthorized()
        if user == "server" and hmac.compare_digest(pw.encode(), self.secret.encode()):
            return "server"
        if user == "node" and any(hmac.compare_digest(pw.encode(), s.encode()) for s in {self.secret, self.agent_secret}):
            return "node"
        raise unauthorized()

    def supervisor(self, h, method, path, body):
        role = self.auth_basic(h)
        if path == "/v1-k3s/readyz":
            return h.send_bytes(200, b"ok", "text/plain; charset=utf-8")
        if path == "/v1-k3s/standin/bootstrap" and method == "GET":
            if role != "server":
                raise ApiError(403, "Forbidden", "only servers may fetch bootstrap data")
            return h.send_json(200, self.bootstrap)
        if path == "/v1-k3s/standin/etcd/members" and method == "POST":
            # a joining server asks to become an etcd member (k3s: /db/info, then member add)
            if role != "server":
                raise ApiError(403, "Forbidden", "only servers may join etcd")
            if self.etcd is None:
                raise ApiError(400, "BadRequest", "this server is not running embedded etcd")
            try:
                req = json.loads(body or b"{}")
            except ValueError:
                raise bad_request("invalid JSON body")
            return h.send_json(200, self.etcd.add_member(req.get("name", ""), req.get("peerURL", "")))
        self.require_datastore()
        if path in ("/v1-k3s/standin/register", "/v1-k3s/standin/heartbeat") and method == "POST":
            name = h.headers.get("K3s-Node-Name", "")
            password = h.headers.get("K3s-Node-Password", "")
            if not password:
                raise bad_request("missing K3s-Node-Password header")
            try:
                reg = json.loads(body or b"{}")
            except ValueError:
                raise bad_request("invalid JSON body")
            if reg.get("nodeName") != name:
                raise bad_request("K3s-Node-Name header does not match the body")
            if reg.get("role") == "control-plane" and role != "server":
                raise ApiError(403, "Forbidden", "only servers may register control-plane nodes")
            node = self.cluster.register(reg, password, create=path.endswith("/register"))
            return h.send_json(200, {"node": node})
        raise resource_not_found()

    # -- Kubernetes API
    def groups(self):
        out = collections.OrderedDict()
        for k in KINDS:
            if k.group:
                out.setdefault(k.group, [])
                if k.version not in out[k.group]:
                    out[k.group].append(k.version)
        return out

    def api_group(self, name, versions):
        vs = [{"groupVersion": "%s/%s" % (name, v), "version": v} for v in versions]
        return {"name": name, "versions": vs, "preferredVersion": vs[0]}

    def kube_api(self, h, method, path, q, body):
        segs = [s for s in path.split("/") if s]
        if path == "/version":
            return h.send_json(200, version_info(self.git_version))
        if segs == ["openapi", "v2"] and method == "GET":
            if "protobuf" in (h.headers.get("Accept") or ""):
                # the media type itself has an '@' that Go's mime parser refuses in a reply
                return h.send_bytes(200, openapi_v2_protobuf(self.git_version), "application/octet-stream")
            return h.send_json(
                200,
                {
                    "swagger": "2.0",
                    "info": {"title": "Kubernetes (stand-in for testing)", "version": self.git_version},
                    "paths": {},
                    "definitions": {},
                },
            )
        if segs == ["api"]:
            return h.send_json(
                200,
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "%s:%d" % (self.advertise, self.port)}],
                },
            )
        if segs == ["apis"]:
            return h.send_json(
                200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [self.api_group(g, vs) for g, vs in self.groups().items()]}
            )
        if len(segs) >= 2 and segs[0] == "api":
            if segs[1] != "v1":
                raise resource_not_found()
            group, version, rest = "", "v1", segs[2:]
        elif len(segs) >= 2 and segs[0] == "apis":
            group = segs[1]
            if group not in self.groups():
                raise resource_not_found()
            if len(segs) == 2:
                return h.send_json(200, dict(kind="APIGroup", apiVersion="v1", **self.api_group(group, self.groups()[group])))
            version, rest = segs[2], segs[3:]
        else:
            raise resource_not_found()
        kinds = [k for k in KINDS if k.group == group and k.version == version]
        if not kinds:
            raise resource_not_found()
        if not rest:
            if method != "GET":
                raise ApiError(405, "MethodNotAllowed", "method not allowed")
            resources = [r for k in kinds for r in k.discovery()]
            return h.send_json(
                200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": kinds[0].api_version, "resources": resources}
            )
        return self.resource(h, method, group, version, rest, q, body)

    def decode(self, h, body):
        ctype = (h.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        try:
            if ctype in ("application/yaml", "application/x-yaml", "text/yaml"):
                obj = _yaml().safe_load(body)
            elif ctype in ("application/json", "*/*", ""):
                obj = json.loads(body or b"null")
            else:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml",
                )
        except (ValueError, Fatal) as e:
            raise bad_request("the body of the request could not be decoded: %s" % e)
        if not isinstance(obj, dict):
            raise bad_request("the body of the request must be an object")
        return obj

    def resource(self, h, method, group, version, rest, q, body):
        store = self.store
        watch = False
        if rest[0] == "watch":
            watch, rest = True, rest[1:]
        ns = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            k = kind_for(group, version, rest[2])
            if k is not None and k.namespaced:
                ns, rest = rest[1], rest[2:]
        kind = kind_for(group, version, rest[0]) if rest else None
        if kind is None or len(rest) > 3:
            raise resource_not_found()
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub is not None and not kind.has_subresource(sub):
            raise resource_not_found()
        if kind.namespaced and name is not None and ns is None:
            raise resource_not_found()
        if q.get("watch") in ("true", "1"):
            watch = True
        dry = q.get("dryRun") == "All"
        if sub == "eviction":
            if method != "POST":
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
            return h.send_json(201, self.disruption.evict(ns, name, self.decode(h, body), dry))
        if sub == "scale":
            return self.scale(h, method, kind, ns, name, body, dry)
        if method == "GET":
            if watch:
                return self.watch(h, kind, ns, name, q)
            if name is None:
                return self.list(h, kind, ns, q)
            obj = store.get(kind, ns, name)
            if obj is None:
                raise not_found(kind, name)
            obj = self.view(kind, obj)
            tv = wants_table(h.headers.get("Accept"))
            if tv:
                return h.send_json(200, self.table(kind, [obj], obj["metadata"]["resourceVersion"], q, tv))
            return h.send_json(200, obj)
        if method == "POST":
            if name is not None:
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
            obj = self.decode(h, body)
            if kind.namespaced:
                bns = obj.get("metadata", {}).get("namespace")
                if bns and bns != ns:
                    raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
                obj.setdefault("metadata", {})["namespace"] = ns
            self._check_type(kind, obj)
            return h.send_json(201, store.create(kind, obj, dry))
        if method == "PUT":
            if name is None:
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
            obj = self.decode(h, body)
            self._check_type(kind, obj)
            md = obj.setdefault("metadata", {})
            if md.get("name", name) != name:
                raise bad_request("the name of the object (%s) does not match the name on the URL (%s)" % (md.get("name"), name))
            md["name"] = name
            if kind.namespaced:
                md["namespace"] = ns
            return h.send_json(200, store.update(kind, obj, subresource=sub, dry_run=dry))
        if method == "PATCH":
            if name is None:
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
            ctype = (h.headers.get("Content-Type") or "").split(";")[0].strip()
            try:
                patch = json.loads(body or b"null")
            except ValueError as e:
                raise bad_request("the body of the request could not be decoded: %s" % e)
            with store.lock:
                cur = store.get(kind, ns, name)
                if cur is None:
                    raise not_found(kind, name)
                if ctype == "application/merge-patch+json":
                    new = merge_patch(cur, patch)
                elif ctype == "application/strategic-merge-patch+json":
                    new = merge_patch(cur, patch, strategic=True)
                elif ctype == "application/json-patch+json":
                    new = json_patch(cur, patch)
                else:
                    raise ApiError(
                        415,
                        "UnsupportedMediaType",
                        "the body of the request was in an unknown format - accepted "
                        "media types include: application/json-patch+json, "
                        "application/merge-patch+json, "
                        "application/strategic-merge-patch+json",
                    )
                if not isinstance(new, dict):
                    raise bad_request("patch did not produce an object")
                want_rv = ""
                if isinstance(patch, dict):
                    want_rv = (patch.get("metadata") or {}).get("resourceVersion") or ""
                md = new.setdefault("metadata", {})
                md["name"] = name
                if kind.namespaced:
                    md["namespace"] = ns
                return h.send_json(200, store.update(kind, new, expect_rv=want_rv, subresource=sub, dry_run=dry))
        if method == "DELETE":
            if sub is not None:
                raise ApiError(405, "MethodNotAllowed", "method not allowed")
            if name is None:
                items, _ = store.list(kind, ns)
                ls = parse_label_selector(q.get("labelSelector"))
                fs = parse_field_selector(q.get("fieldSelector"))
                deleted = []
                for o in items:
                    if label_match(ls, o["metadata"].get("labels")) and field_match(fs, o):
                        try:
                            deleted.append(store.delete(kind, o["metadata"].get("namespace"), o["metadata"]["name"], dry))
                        except ApiError:
                            pass
                return h.send_json(
                    200,
                    {
                        "kind": kind.kind + "List",
                        "apiVersion": kind.api_version,
                        "metadata": {"resourceVersion": str(store.rv)},
                        "items": deleted,
                    },
                )
            options = self.decode(h, body) if body and body.strip() else {}
            if options.get("propagationPolicy") == "Orphan" and not dry:
                self.orphan_dependents(kind, ns, name)
            obj = store.delete(kind, ns, name, dry)
            return h.send_json(
                200,
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": {"name": name, "group": kind.group, "kind": kind.plural, "uid": obj["metadata"].get("uid", "")},
                },
            )
        raise ApiError(405, "MethodNotAllowed", "method not allowed")

    def orphan_dependents(self, kind, ns, name):
        """DELETE with propagationPolicy Orphan: dependents lose their ownerReference to the
        object, so the garbage collector keeps them (background/foreground: it deletes them)."""
        with self.store.lock:
            owner = self.store.get(kind, ns, name)
            if owner is None:
                return
            uid = owner["metadata"]["uid"]
            for k in KINDS:
                for obj in self.store.list(k)[0]:
                    refs = obj["metadata"].get("ownerReferences") or []
                    if any(r.get("uid") == uid for r in refs):
                        obj["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != uid]
                        self.store.update(k, obj, expect_rv="")

    def scale(self, h, method, kind, ns, name, body, dry):
        """The scale subresource (autoscaling/v1 Scale) of Deployments and ReplicaSets:
        GET, PUT and PATCH (merge or strategic merge) change spec.replicas."""
        store = self.store
        with store.lock:
            obj = store.get(kind, ns, name)
            if obj is None:
                raise not_found(kind, name)
            if method == "GET":
                return h.send_json(200, scale_of(obj))
            if method == "PUT":
                new = self.decode(h, body)
            elif method == "PATCH":
                ctype = (h.headers.get("Content-Type") or "").split(";")[0].strip()
                try:
                    patch = json.loads(body or b"null")
                except ValueError as e:
                    raise bad_request("the body of the request could not be decoded: %s" % e)
                if ctype == "application/json-patch+json":
                    new = json_patch(scale_of(obj), patch)
                else:
                    new = merge_patch(scale_of(obj), patch, strategic=ctype == "application/strategic-merge-patch+json")
            else:
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
            replicas = ((new or {}).get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise ApiError(
                    422,
                    "Invalid",
                    'Scale.autoscaling "%s" is invalid: '
                    "spec.replicas: Invalid value: %r: must be greater than or "
                    "equal to 0" % (name, replicas),
                )
            want_rv = (new.get("metadata") or {}).get("resourceVersion") or ""
            obj["spec"]["replicas"] = replicas
            updated = store.update(kind, obj, expect_rv=want_rv, dry_run=dry)
            return h.send_json(200, scale_of(updated))

    @staticmethod
    def _check_type(kind, obj):
        if obj.get("apiVersion") and obj["apiVersion"] != kind.api_version:
            raise bad_request(
                "the API version in the data (%s) does not match the expected API version (%s)" % (obj["apiVersion"], kind.api_version)
            )
        if obj.get("kind") and obj["kind"] != kind.kind:
            raise bad_request("the kind in the data (%s) does not match the expected kind (%s)" % (obj["kind"], kind.kind))

    def list(self, h, kind, ns, q):
        items, rv = self.store.list(kind, ns)
        ls = parse_label_selector(q.get("labelSelector"))
        fs = parse_field_selector(q.get("fieldSelector"))
        items = [o for o in items if label_match(ls, o["metadata"].get("labels")) and field_match(fs, o)]
        tv = wants_table(h.headers.get("Accept"))
        if tv:
            return h.send_json(200, self.table(kind, items, rv, q, tv))
        for o in items:
            o.pop("kind", None)
            o.pop("apiVersion", None)
        return h.send_json(
            200, {"kind": kind.kind + "List", "apiVersion": kind.api_version, "metadata": {"resourceVersion": rv}, "items": items}
        )

    @staticmethod
    def table(kind, items, rv, q, version):
        include = q.get("includeObject", "Metadata")
        rows = []
        for o in items:
            row = {"cells": kind.cells(o)}
            if include == "Object":
                row["object"] = o
            elif include != "None":
                row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/" + version, "metadata": o["metadata"]}
            rows.append(row)
        return {
            "kind": "Table",
            "apiVersion": "meta.k8s.io/" + version,
            "metadata": {"resourceVersion": rv},
            "columnDefinitions": kind.columns,
            "rows": rows,
        }

    def watch(self, h, kind, ns, name, q):
        store = self.store
        ls = parse_label_selector(q.get("labelSelector"))
        fs = parse_field_selector(q.get("fieldSelector"))
        try:
            timeout = max(1, int(q.get("timeoutSeconds") or 1800))
        except ValueError:
            raise bad_request("invalid timeoutSeconds")
        rv = q.get("resourceVersion", "")

        def matches(obj):
            md = obj["metadata"]
            if ns is not None and md.get("namespace") != ns:
                return False
            if name is not None and md.get("name") != name:
                return False
            return label_match(ls, md.get("labels")) and field_match(fs, obj)

        initial = []
        with store.lock:
            if rv in ("", "0"):
                cursor = store.rv
                initial = [("ADDED", o) for o in store.list(kind, ns)[0] if matches(o)]
            else:
                try:
                    cursor = int(rv)
                except ValueError:
                    raise bad_request("invalid resourceVersion %r" % rv)
                oldest = store.events[0][0] - 1 if store.events else store.rv
                if cursor < max(oldest, store.start_rv):
                    initial = [("ERROR", ApiError(410, "Expired", "too old resource version: %s (%d)" % (rv, store.start_rv)).status())]
                    cursor = None
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.send_header("Cache-Control", "no-cache, private")
        h.end_headers()

        table_version = wants_table(h.headers.get("Accept"))
        first = [True]

        def send(etype, obj):
            if table_version and etype != "ERROR":
                obj = self.table(kind, [obj], obj["metadata"].get("resourceVersion", ""), q, table_version)
                if not first[0]:
                    obj["columnDefinitions"] = []
                first[0] = False
            data = (json.dumps({"type": etype, "object": obj}) + "\n").encode()
            h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            h.wfile.flush()

        for etype, obj in initial:
            send(etype, obj)
        deadline = time.monotonic() + timeout
        generation = getattr(store, "generation", 0)
        while cursor is not None and not self.stopping.is_set() and getattr(store, "generation", 0) == generation:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            with store.cond:
                evs = [e for e in store.events if e[0] > cursor]
                if not evs:
                    store.cond.wait(timeout=min(2.0, remaining))
                    evs = [e for e in store.events if e[0] > cursor]
            for erv, key, etype, obj in evs:
                cursor = erv
                if key == kind.key and matches(obj):
                    send(etype, obj)
        h.wfile.write(b"0\r\n\r\n")
        h.wfile.flush()
