"""TEST DOUBLE (k3s stand-in, not the real k3s).

The API's object store: Status errors, the registry of kinds (Nodes, Secrets, Leases,
DaemonSets, ...), server-side Tables, resourceVersions and watches, state.json persistence.

Upstream: kubernetes/kubernetes staging/src/k8s.io/apimachinery/pkg/api/errors/errors.go,
pkg/printers/internalversion/printers.go (Table columns)
"""

from __future__ import annotations

import collections
import copy
import json
import re
import secrets
import threading
import uuid

from .kinds import AGE_COL, NAME_COL, Kind, age, col, human_duration  # noqa: F401 (re-exported)
from .util import atomic_write, read_file, ts
from .version import STANDIN_VERSION
from .workload_kinds import POD_KIND, WORKLOAD_KINDS, InvalidObject


class ApiError(Exception):
    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self):
        s = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            s["details"] = self.details
        return s


def not_found(kind, name):
    return ApiError(
        404, "NotFound", '%s "%s" not found' % (kind.resource_label, name), {"name": name, "group": kind.group, "kind": kind.plural}
    )


def bad_request(message):
    return ApiError(400, "BadRequest", message)


def invalid(kind, name, message):
    """422 Invalid; the field error is also a cause (kubectl prints causes after the kind)."""
    field, _, detail = message.partition(": ")
    cause = {"reason": "FieldValueInvalid", "message": detail or message, "field": field}
    if detail.startswith("Required value"):
        cause["reason"] = "FieldValueRequired"
    return ApiError(
        422,
        "Invalid",
        '%s "%s" is invalid: %s' % (kind.kind, name, message),
        {"name": name, "group": kind.group, "kind": kind.kind, "causes": [cause]},
    )


NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


LABEL_NAME_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")


LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?)$")


def valid_label_key(key):
    if "/" in key:
        prefix, name = key.split("/", 1)
        if not prefix or len(prefix) > 253 or not NAME_RE.match(prefix):
            return False
    else:
        name = key
    return 0 < len(name) <= 63 and bool(LABEL_NAME_RE.match(name))


def valid_label_value(value):
    return len(value) <= 63 and bool(LABEL_VALUE_RE.match(value))


def node_status_text(node):
    status = "Unknown"
    for c in node.get("status", {}).get("conditions", []) or []:
        if c.get("type") == "Ready":
            status = "Ready" if c.get("status") == "True" else "NotReady"
    if node.get("spec", {}).get("unschedulable"):
        status += ",SchedulingDisabled"
    return status


def node_roles(node):
    roles = set()
    for k, v in (node.get("metadata", {}).get("labels") or {}).items():
        if k.startswith("node-role.kubernetes.io/"):
            role = k[len("node-role.kubernetes.io/") :]
            if role:
                roles.add(role)
        elif k == "kubernetes.io/role" and v:
            roles.add(v)
    return ",".join(sorted(roles)) or "<none>"


def node_address(node, typ):
    addrs = [a["address"] for a in node.get("status", {}).get("addresses", []) or [] if a.get("type") == typ]
    return ",".join(addrs) or "<none>"


def node_cells(n):
    info = n.get("status", {}).get("nodeInfo", {}) or {}
    return [
        n["metadata"]["name"],
        node_status_text(n),
        node_roles(n),
        age(n),
        info.get("kubeletVersion", ""),
        node_address(n, "InternalIP"),
        node_address(n, "ExternalIP"),
        info.get("osImage", "<unknown>"),
        info.get("kernelVersion", "<unknown>"),
        info.get("containerRuntimeVersion", "<unknown>"),
    ]


NODE_COLUMNS = [
    NAME_COL,
    col("Status", "The status of the node"),
    col("Roles", "The roles of the node"),
    AGE_COL,
    col("Version", "Kubelet Version reported by the node."),
    col("Internal-IP", "List of internal IPs for the node.", 1),
    col("External-IP", "List of external IPs for the node.", 1),
    col("OS-Image", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).", 1),
    col("Kernel-Version", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).", 1),
    col("Container-Runtime", "Container Runtime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).", 1),
]


UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"


UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"


def prepare_node(node, old):
    """What the node lifecycle controller keeps in sync: the unschedulable taint."""
    spec = node.setdefault("spec", {})
    taints = [t for t in spec.get("taints") or [] if t.get("key") != UNSCHEDULABLE_TAINT]
    if spec.get("unschedulable"):
        taints.append({"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule", "timeAdded": ts()})
    if taints:
        spec["taints"] = taints
    else:
        spec.pop("taints", None)


def prepare_namespace(ns, old):
    ns.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    ns.setdefault("status", {}).setdefault("phase", "Active")
    ns["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = ns["metadata"]["name"]


def prepare_daemonset(ds, old):
    """What the API server and a (very) idle DaemonSet controller keep: generation bumps on
    spec changes, a status with zero pods (the stand-in runs no pods)."""
    md = ds["metadata"]
    gen = int((old or {}).get("metadata", {}).get("generation") or 0)
    if old is None or old.get("spec") != ds.get("spec"):
        gen += 1
    md["generation"] = gen or 1
    status = ds.setdefault("status", {})
    for k in ("currentNumberScheduled", "desiredNumberScheduled", "numberMisscheduled", "numberReady"):
        status.setdefault(k, 0)


def _ds_cells(o):
    st = o.get("status") or {}
    sel = ((o.get("spec") or {}).get("template") or {}).get("spec", {}).get("nodeSelector") or {}
    return [
        o["metadata"]["name"],
        st.get("desiredNumberScheduled", 0),
        st.get("currentNumberScheduled", 0),
        st.get("numberReady", 0),
        st.get("updatedNumberScheduled", 0),
        st.get("numberAvailable", 0),
        ",".join("%s=%s" % kv for kv in sorted(sel.items())) or "<none>",
        age(o),
    ]


def _crb_cells(o):
    ref = o.get("roleRef") or {}
    return [o["metadata"]["name"], "%s/%s" % (ref.get("kind", ""), ref.get("name", "")), age(o)]


KINDS = [
    Kind(
        "",
        "v1",
        "Namespace",
        "namespaces",
        False,
        ["ns"],
        columns=[NAME_COL, col("Status", "The status of the namespace"), AGE_COL],
        cells=lambda o: [o["metadata"]["name"], o.get("status", {}).get("phase", ""), age(o)],
        prepare=prepare_namespace,
    ),
    Kind("", "v1", "Node", "nodes", False, ["no"], columns=NODE_COLUMNS, cells=node_cells, prepare=prepare_node),
    Kind(
        "",
        "v1",
        "Secret",
        "secrets",
        True,
        status_subresource=False,
        columns=[
            NAME_COL,
            col("Type", "The type of the secret"),
            col("Data", "The number of entries in the secret", typ="integer"),
            AGE_COL,
        ],
        cells=lambda o: [o["metadata"]["name"], o.get("type", "Opaque"), len(o.get("data") or {}), age(o)],
    ),
    POD_KIND,
    Kind("", "v1", "Event", "events", True, ["ev"], status_subresource=False),
    Kind(
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        True,
        status_subresource=False,
        columns=[NAME_COL, col("Holder", "The holder of the lease"), AGE_COL],
        cells=lambda o: [o["metadata"]["name"], (o.get("spec") or {}).get("holderIdentity", ""), age(o)],
    ),
    # what `kubectl apply` of a CNI manifest (Flannel) and kubeadm's bootstrap need
    Kind(
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        True,
        ["cm"],
        status_subresource=False,
        columns=[NAME_COL, col("Data", "The number of entries in the config map", typ="integer"), AGE_COL],
        cells=lambda o: [o["metadata"]["name"], len(o.get("data") or {}) + len(o.get("binaryData") or {}), age(o)],
    ),
    Kind(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        True,
        ["sa"],
        status_subresource=False,
        columns=[NAME_COL, col("Secrets", "The number of secrets", typ="integer"), AGE_COL],
        cells=lambda o: [o["metadata"]["name"], len(o.get("secrets") or []), age(o)],
    ),
    Kind(
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        True,
        ["ds"],
        prepare=prepare_daemonset,
        columns=[
            NAME_COL,
            col("Desired", "The desired number of pods.", typ="integer"),
            col("Current", "The current number of pods.", typ="integer"),
            col("Ready", "The number of pods ready.", typ="integer"),
            col("Up-to-date", "The number of pods updated.", typ="integer"),
            col("Available", "The number of pods ready for at least minReadySeconds.", typ="integer"),
            col("Node Selector", "Which nodes the pods are scheduled on."),
            AGE_COL,
        ],
        cells=_ds_cells,
    ),
    Kind(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        False,
        status_subresource=False,
        columns=[NAME_COL, col("Created At", "Creation time of the cluster role.")],
        cells=lambda o: [o["metadata"]["name"], o["metadata"].get("creationTimestamp", "")],
    ),
    Kind(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        False,
        status_subresource=False,
        columns=[NAME_COL, col("Role", "The role of the binding."), AGE_COL],
        cells=_crb_cells,
    ),
    *WORKLOAD_KINDS,
]


def kind_for(group, version, plural):
    for k in KINDS:
        if k.group == group and k.version == version and k.plural == plural:
            return k
    return None


def kind_by_kind(kind_name):
    for k in KINDS:
        if k.kind == kind_name:
            return k
    return None


NODE = kind_by_kind("Node")


LEASE = kind_by_kind("Lease")


NAMESPACE = kind_by_kind("Namespace")


SECRET = kind_by_kind("Secret")


CONFIGMAP = kind_by_kind("ConfigMap")


DAEMONSET = kind_by_kind("DaemonSet")


POD = POD_KIND


DEPLOYMENT = kind_by_kind("Deployment")


REPLICASET = kind_by_kind("ReplicaSet")


PDB = kind_by_kind("PodDisruptionBudget")


PROTECTED_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class Store:
    """All API objects, persisted as one JSON file (atomic writes), with a watch log."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.write_lock = threading.Lock()
        self.objs = {k.key: {} for k in KINDS}
        self.rv = 0
        self.events = collections.deque(maxlen=20000)
        self.dirty = False
        self.delete_hooks = []
        raw = read_file(path)
        if raw:
            state = json.loads(raw)
            self.rv = int(state.get("resourceVersion", 0))
            for obj in state.get("objects", []):
                kind = kind_for(*_split_api_version(obj.get("apiVersion", "v1")), _plural_of(obj.get("kind", "")))
                if kind:
                    md = obj["metadata"]
                    self.objs[kind.key][(md.get("namespace"), md["name"])] = obj
        self.start_rv = self.rv

    # -- persistence
    def snapshot(self):
        with self.lock:
            objs = [o for k in KINDS for _, o in sorted(self.objs[k.key].items(), key=lambda kv: (kv[0][0] or "", kv[0][1]))]
            data = json.dumps({"standin": STANDIN_VERSION, "resourceVersion": self.rv, "objects": objs}, indent=1, sort_keys=True)
            self.dirty = False
        return data

    def flush(self):
        with self.write_lock:
            if self.dirty:
                atomic_write(self.path, self.snapshot(), 0o600)

    # -- helpers
    def _next_rv(self):
        self.rv += 1
        return str(self.rv)

    def _emit(self, kind, etype, obj):
        self.events.append((self.rv, kind.key, etype, copy.deepcopy(obj)))
        self.dirty = True
        self.cond.notify_all()

    def get(self, kind, ns, name):
        with self.lock:
            obj = self.objs[kind.key].get((ns if kind.namespaced else None, name))
            return copy.deepcopy(obj) if obj is not None else None

    def list(self, kind, ns=None):
        with self.lock:
            items = [o for (ons, _), o in self.objs[kind.key].items() if ns is None or ons == ns]
            items.sort(key=lambda o: (o["metadata"].get("namespace") or "", o["metadata"]["name"]))
            return copy.deepcopy(items), str(self.rv)

    def create(self, kind, obj, dry_run=False):
        with self.lock:
            md = obj.setdefault("metadata", {})
            ns = md.get("namespace") if kind.namespaced else None
            if not kind.namespaced:
                md.pop("namespace", None)
            name = md.get("name")
            if not name and md.get("generateName"):
                while True:
                    name = md["generateName"] + "".join(secrets.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
                    if (ns, name) not in self.objs[kind.key]:
                        break
                md["name"] = name
            if not name:
                raise invalid(kind, "", "metadata.name: Required value: name or generateName is required")
            if not NAME_RE.match(name) or len(name) > 253:
                raise invalid(
                    kind,
                    name,
                    'metadata.name: Invalid value: "%s": a lowercase '
                    "RFC 1123 subdomain must consist of lower case "
                    "alphanumeric characters, '-' or '.'" % name,
                )
            if kind.namespaced:
                if not ns:
                    raise bad_request("the namespace of the object does not match the namespace on the request")
                if (None, ns) not in self.objs[NAMESPACE.key]:
                    raise ApiError(404, "NotFound", 'namespaces "%s" not found' % ns, {"name": ns, "kind": "namespaces"})
            if (ns, name) in self.objs[kind.key]:
                raise ApiError(
                    409,
                    "AlreadyExists",
                    '%s "%s" already exists' % (kind.resource_label, name),
                    {"name": name, "group": kind.group, "kind": kind.plural},
                )
            self._check_labels(kind, obj)
            obj["kind"], obj["apiVersion"] = kind.kind, kind.api_version
            md["uid"] = str(uuid.uuid4())
            md["creationTimestamp"] = ts()
            for k in ("deletionTimestamp", "managedFields"):
                md.pop(k, None)
            self._prepare(kind, obj, None)
            if dry_run:
                md["resourceVersion"] = str(self.rv)
                return copy.deepcopy(obj)
            md["resourceVersion"] = self._next_rv()
            self.objs[kind.key][(ns, name)] = copy.deepcopy(obj)
            self._emit(kind, "ADDED", obj)
            return obj

    @staticmethod
    def _prepare(kind, obj, old):
        """The kind's defaults and validation; a refusal is the API server's 422 Invalid."""
        if kind.prepare:
            try:
                kind.prepare(obj, old)
            except InvalidObject as e:
                raise invalid(kind, obj["metadata"].get("name", ""), str(e))

    def _check_labels(self, kind, obj):
        name = obj["metadata"].get("name", "")
        for field in ("labels", "annotations"):
            value = obj["metadata"].get(field)
            if value is None:
                continue
            if not isinstance(value, dict):
                raise invalid(kind, name, "metadata.%s: must be a map" % field)
            for k, v in value.items():
                if not isinstance(v, str):
                    raise invalid(kind, name, "metadata.%s: Invalid value: %r" % (field, v))
                if not valid_label_key(k):
                    raise invalid(
                        kind, name, 'metadata.%s: Invalid value: "%s": name part must consist of alphanumeric characters' % (field, k)
                    )
                if field == "labels" and not valid_label_value(v):
                    raise invalid(
                        kind,
                        name,
                        'metadata.labels: Invalid value: "%s": a valid '
                        "label must be an empty string or consist of "
                        "alphanumeric characters" % v,
                    )

    def update(self, kind, obj, expect_rv=None, subresource=None, dry_run=False):
        """Replace an object. subresource 'status' only changes status; the main resource
        keeps status for kinds with a status subresource."""
        with self.lock:
            md = obj.setdefault("metadata", {})
            ns = md.get("namespace") if kind.namespaced else None
            name = md.get("name")
            old = self.objs[kind.key].get((ns, name))
            if old is None:
                raise not_found(kind, name)
            want_rv = expect_rv if expect_rv is not None else md.get("resourceVersion")
            if want_rv and want_rv != old["metadata"]["resourceVersion"]:
                raise ApiError(
                    409,
                    "Conflict",
                    'Operation cannot be fulfilled on %s "%s": the object has been '
                    "modified; please apply your changes to the latest version and "
                    "try again" % (kind.resource_label, name),
                    {"name": name, "group": kind.group, "kind": kind.plural},
                )
            if subresource == "status":
                new = copy.deepcopy(old)
                if "status" in obj:
                    new["status"] = obj["status"]
                obj = new
            elif kind.status_subresource and subresource != "all":
                if "status" in old:
                    obj["status"] = copy.deepcopy(old["status"])
                else:
                    obj.pop("status", None)
            md = obj["metadata"]
            for k in ("uid", "creationTimestamp", "namespace"):
                if k in old["metadata"]:
                    md[k] = old["metadata"][k]
            if not kind.namespaced:
                md.pop("namespace", None)
            self._check_labels(kind, obj)
            obj["kind"], obj["apiVersion"] = kind.kind, kind.api_version
            self._prepare(kind, obj, old)
            if dry_run:
                return copy.deepcopy(obj)
            md["resourceVersion"] = self._next_rv()
            self.objs[kind.key][(ns, name)] = copy.deepcopy(obj)
            self._emit(kind, "MODIFIED", obj)
            return obj

    def delete(self, kind, ns, name, dry_run=False):
        with self.lock:
            key = (ns if kind.namespaced else None, name)
            obj = self.objs[kind.key].get(key)
            if obj is None:
                raise not_found(kind, name)
            if kind is NAMESPACE and name in PROTECTED_NAMESPACES[:3]:
                raise ApiError(
                    403,
                    "Forbidden",
                    'namespaces "%s" is forbidden: this namespace may not be deleted' % name,
                    {"name": name, "kind": "namespaces"},
                )
            if dry_run:
                return copy.deepcopy(obj)
            del self.objs[kind.key][key]
            obj = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = self._next_rv()
            self._emit(kind, "DELETED", obj)
            if kind is NAMESPACE:
                for k in KINDS:
                    if k.namespaced:
                        for okey in [x for x in self.objs[k.key] if x[0] == name]:
                            self.delete(k, okey[0], okey[1])
            for hook in self.delete_hooks:
                hook(kind, obj)
            return obj


def _split_api_version(api_version):
    if "/" in api_version:
        return tuple(api_version.split("/", 1))
    return "", api_version


def _plural_of(kind_name):
    k = kind_by_kind(kind_name)
    return k.plural if k else ""
