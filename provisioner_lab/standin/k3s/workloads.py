"""TEST DOUBLE (k3s stand-in, not the real k3s).

The workload controllers of the stand-in's controller manager, each a level-triggered sync of
the whole store (small clusters only):

- Deployment: one ReplicaSet per pod template (`<name>-<pod-template-hash>`, the hash label on
  its selector and pods, revision annotations); the current one is scaled to spec.replicas and
  older ones to 0 at once (no surge/unavailable pacing -- pods here start instantly); status
  replicas/updated/ready/available/unavailable, observedGeneration and the conditions
  Available (MinimumReplicasAvailable) and Progressing (NewReplicaSetAvailable once complete),
  which is what `kubectl rollout status` waits for.
- ReplicaSet: creates pods from the template (generateName `<rs>-`, ownerReference controller:
  true) or deletes surplus ones (unscheduled, then not ready, then on the busiest node, then the
  newest); status replicas/fullyLabeled/ready/available, observedGeneration.
- DaemonSet: one pod per node whose labels, affinity and taints admit it (with the tolerations
  the DaemonSet controller adds: not-ready/unreachable NoExecute, unschedulable and the
  pressure taints NoSchedule, so cordoned nodes keep theirs), pinned with node affinity on
  metadata.name; status counts and observedGeneration.
- Garbage collector: an object whose owners (ownerReferences, by uid) are all gone is deleted
  (background propagation; orphaning is done by the DELETE handler in api.py).

Upstream: kubernetes/kubernetes pkg/controller/deployment/ (sync.go, rolling.go, progress.go,
util/deployment_util.go), pkg/controller/replicaset/replica_set.go,
pkg/controller/daemon/daemon_controller.go, pkg/controller/daemon/util/daemonset_util.go,
pkg/controller/garbagecollector/garbagecollector.go, pkg/controller/controller_utils.go
(ActivePods ranking)
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from .kinds import Kind
from .scheduler import controller_of, node_selected, untolerated_taint
from .store import DAEMONSET, DEPLOYMENT, KINDS, NODE, POD, REPLICASET, ApiError, Store
from .util import log, ts
from .workload_kinds import parse_int_or_percent, pod_ready

Obj = dict[str, Any]

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

#: the tolerations the DaemonSet controller adds to its pods (AddOrUpdateDaemonPodTolerations)
DAEMON_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
]
HOST_NETWORK_TOLERATION = {"key": "node.kubernetes.io/network-unavailable", "operator": "Exists", "effect": "NoSchedule"}


def template_hash(template: Obj) -> str:
    """A stable 10-character hash of a pod template (the role of ComputeHash)."""
    digest = int(hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest(), 16)
    out = ""
    for _ in range(10):
        digest, i = divmod(digest, len(SAFE_ALPHABET))
        out += SAFE_ALPHABET[i]
    return out


def owner_ref(kind: Kind, obj: Obj) -> Obj:
    return {
        "apiVersion": kind.api_version,
        "kind": kind.kind,
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def owned_by(obj: Obj, owner: Obj) -> bool:
    ref = controller_of(obj)
    return ref is not None and ref.get("uid") == owner["metadata"]["uid"]


def _set_condition(status: Obj, typ: str, value: str, reason: str, message: str) -> None:
    """A Deployment condition: lastUpdateTime on every change, lastTransitionTime when the
    status flips (deploymentutil.SetDeploymentCondition)."""
    now = ts()
    conds = status.setdefault("conditions", [])
    for c in conds:
        if c.get("type") == typ:
            if c.get("status") == value and c.get("reason") == reason:
                return
            if c.get("status") != value:
                c["lastTransitionTime"] = now
            c.update({"status": value, "reason": reason, "message": message, "lastUpdateTime": now})
            return
    conds.append({"type": typ, "status": value, "reason": reason, "message": message, "lastUpdateTime": now, "lastTransitionTime": now})


class Controllers:
    """The workload controllers over one store (call sync() with the store lock held)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- helpers
    def _create(self, kind: Kind, obj: Obj) -> Obj | None:
        try:
            return self.store.create(kind, obj)
        except ApiError as e:
            log("debug", "controller: create %s: %s" % (kind.kind, e.message))
            return None

    def _update(self, kind: Kind, obj: Obj, subresource: str | None = None) -> None:
        try:
            self.store.update(kind, obj, expect_rv="", subresource=subresource)
        except ApiError as e:
            log("debug", "controller: update %s: %s" % (kind.kind, e.message))

    def _delete(self, kind: Kind, obj: Obj) -> None:
        try:
            self.store.delete(kind, obj["metadata"].get("namespace"), obj["metadata"]["name"])
        except ApiError:
            pass

    def _pods_of(self, owner: Obj, pods: list[Obj]) -> list[Obj]:
        return [p for p in pods if owned_by(p, owner) and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]

    def sync(self) -> None:
        self.collect_garbage()
        for d in self.store.list(DEPLOYMENT)[0]:
            self.sync_deployment_replicasets(d)
        pods = self.store.list(POD)[0]
        for rs in self.store.list(REPLICASET)[0]:
            self.sync_replicaset_pods(rs, pods)
        nodes = self.store.list(NODE)[0]
        for ds in self.store.list(DAEMONSET)[0]:
            self.sync_daemonset_pods(ds, nodes, pods)

    def sync_status(self) -> None:
        """Status of every ReplicaSet, Deployment and DaemonSet from their pods (run after the
        scheduler so a pass reports the pods it started)."""
        pods = self.store.list(POD)[0]
        for rs in self.store.list(REPLICASET)[0]:
            self.sync_replicaset_status(rs, pods)
        for d in self.store.list(DEPLOYMENT)[0]:
            self.sync_deployment_status(d)
        nodes = self.store.list(NODE)[0]
        for ds in self.store.list(DAEMONSET)[0]:
            self.sync_daemonset_status(ds, nodes, pods)

    # -- garbage collector
    def collect_garbage(self) -> None:
        uids = {o["metadata"].get("uid") for k in KINDS for o in self.store.objs[k.key].values()}
        for kind in KINDS:
            for obj in list(self.store.objs[kind.key].values()):
                refs = obj["metadata"].get("ownerReferences") or []
                if not refs:
                    continue
                if not any(r.get("uid") in uids for r in refs):
                    log("debug", "garbage collector: deleting %s %s" % (kind.kind, obj["metadata"]["name"]))
                    self._delete(kind, obj)

    # -- Deployment
    def _replicasets_of(self, d: Obj) -> list[Obj]:
        ns = d["metadata"].get("namespace")
        return [rs for rs in self.store.list(REPLICASET, ns)[0] if owned_by(rs, d)]

    def sync_deployment_replicasets(self, d: Obj) -> None:
        spec = d.get("spec") or {}
        md = d["metadata"]
        template = copy.deepcopy(spec.get("template") or {})
        template.setdefault("metadata", {}).get("labels", {}).pop(HASH_LABEL, None)
        h = template_hash(template)
        owned = self._replicasets_of(d)
        new = next((rs for rs in owned if (rs["metadata"].get("labels") or {}).get(HASH_LABEL) == h), None)
        revisions = [int((rs["metadata"].get("annotations") or {}).get(REVISION, "0") or 0) for rs in owned]
        revision = str(max(revisions, default=0) + (0 if new is not None else 1))
        if new is not None:
            revision = (new["metadata"].get("annotations") or {}).get(REVISION, revision)
        replicas = int(spec.get("replicas", 1))
        if new is None:
            labels = dict(template["metadata"].get("labels") or {}, **{HASH_LABEL: h})
            template["metadata"]["labels"] = labels
            selector = copy.deepcopy(spec.get("selector") or {})
            selector.setdefault("matchLabels", {})[HASH_LABEL] = h
            new = self._create(
                REPLICASET,
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "metadata": {
                        "name": "%s-%s" % (md["name"], h),
                        "namespace": md.get("namespace"),
                        "labels": labels,
                        "ownerReferences": [owner_ref(DEPLOYMENT, d)],
                        "annotations": {
                            REVISION: revision,
                            "deployment.kubernetes.io/desired-replicas": str(replicas),
                            "deployment.kubernetes.io/max-replicas": str(replicas),
                        },
                    },
                    "spec": {
                        "replicas": replicas,
                        "selector": selector,
                        "template": template,
                        "minReadySeconds": spec.get("minReadySeconds", 0),
                    },
                },
            )
            if new is not None:
                log("info", "Deployment %s/%s: created ReplicaSet %s" % (md.get("namespace"), md["name"], new["metadata"]["name"]))
        for rs in owned:
            want = replicas if new is not None and rs["metadata"]["uid"] == new["metadata"]["uid"] else 0
            ann = rs["metadata"].setdefault("annotations", {})
            if rs["spec"].get("replicas") != want or (want and ann.get("deployment.kubernetes.io/desired-replicas") != str(want)):
                rs["spec"]["replicas"] = want
                if want:
                    ann["deployment.kubernetes.io/desired-replicas"] = str(want)
                    ann["deployment.kubernetes.io/max-replicas"] = str(want)
                self._update(REPLICASET, rs)
        history = int(spec.get("revisionHistoryLimit", 10))
        old = sorted(
            (rs for rs in owned if new is None or rs["metadata"]["uid"] != new["metadata"]["uid"]),
            key=lambda rs: int((rs["metadata"].get("annotations") or {}).get(REVISION, "0") or 0),
        )
        for rs in old[: max(0, len(old) - history)]:
            if not (rs.get("status") or {}).get("replicas"):
                self._delete(REPLICASET, rs)
        if (md.get("annotations") or {}).get(REVISION) != revision:
            md.setdefault("annotations", {})[REVISION] = revision
            self._update(DEPLOYMENT, d)

    def sync_deployment_status(self, d: Obj) -> None:
        spec = d.get("spec") or {}
        replicas = int(spec.get("replicas", 1))
        owned = self._replicasets_of(d)
        template = copy.deepcopy(spec.get("template") or {})
        template.setdefault("metadata", {}).get("labels", {}).pop(HASH_LABEL, None)
        h = template_hash(template)
        new = next((rs for rs in owned if (rs["metadata"].get("labels") or {}).get(HASH_LABEL) == h), None)
        total = sum(int((rs.get("status") or {}).get("replicas", 0)) for rs in owned)
        ready = sum(int((rs.get("status") or {}).get("readyReplicas", 0)) for rs in owned)
        available = sum(int((rs.get("status") or {}).get("availableReplicas", 0)) for rs in owned)
        updated = int((new.get("status") or {}).get("replicas", 0)) if new else 0
        new_available = int((new.get("status") or {}).get("availableReplicas", 0)) if new else 0
        status = copy.deepcopy(d.get("status") or {})
        status.update(
            {
                "observedGeneration": d["metadata"].get("generation", 1),
                "replicas": total,
                "updatedReplicas": updated,
                "readyReplicas": ready,
                "availableReplicas": available,
            }
        )
        unavailable = max(0, replicas - available)
        if unavailable:
            status["unavailableReplicas"] = unavailable
        else:
            status.pop("unavailableReplicas", None)
        for k in ("readyReplicas", "availableReplicas", "updatedReplicas", "replicas"):
            if not status[k]:
                status.pop(k)  # omitempty, as the API server returns them
        ru = (spec.get("strategy") or {}).get("rollingUpdate") or {}
        max_unavailable = 0
        if (spec.get("strategy") or {}).get("type", "RollingUpdate") == "RollingUpdate":
            value, pct = parse_int_or_percent(ru.get("maxUnavailable", "25%"), "maxUnavailable")
            max_unavailable = replicas * value // 100 if pct else value
        if available >= replicas - max_unavailable:
            _set_condition(status, "Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
        else:
            _set_condition(status, "Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
        if new is not None:
            name = new["metadata"]["name"]
            if updated == replicas and new_available == replicas and total == replicas:
                _set_condition(
                    status, "Progressing", "True", "NewReplicaSetAvailable", 'ReplicaSet "%s" has successfully progressed.' % name
                )
            else:
                _set_condition(status, "Progressing", "True", "ReplicaSetUpdated", 'ReplicaSet "%s" is progressing.' % name)
        status["conditions"].sort(key=lambda c: c["type"] != "Available")
        if status != (d.get("status") or {}):
            d["status"] = status
            self._update(DEPLOYMENT, d, "status")

    # -- ReplicaSet
    def sync_replicaset_pods(self, rs: Obj, pods: list[Obj]) -> None:
        mine = self._pods_of(rs, pods)
        want = int((rs.get("spec") or {}).get("replicas", 1))
        md = rs["metadata"]
        if len(mine) < want:
            template = copy.deepcopy((rs.get("spec") or {}).get("template") or {})
            tmd = template.get("metadata") or {}
            for _ in range(want - len(mine)):
                pod = {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "generateName": md["name"] + "-",
                        "namespace": md.get("namespace"),
                        "labels": dict(tmd.get("labels") or {}),
                        "ownerReferences": [owner_ref(REPLICASET, rs)],
                    },
                    "spec": copy.deepcopy(template.get("spec") or {}),
                }
                if tmd.get("annotations"):
                    pod["metadata"]["annotations"] = dict(tmd["annotations"])
                created = self._create(POD, pod)
                if created is not None:
                    pods.append(created)
        elif len(mine) > want:
            per_node: dict[str, int] = {}
            for p in mine:
                n = (p.get("spec") or {}).get("nodeName") or ""
                per_node[n] = per_node.get(n, 0) + 1

            def rank(p: Obj) -> tuple[Any, ...]:
                node = (p.get("spec") or {}).get("nodeName") or ""
                phase = (p.get("status") or {}).get("phase", "Pending")
                return (
                    bool(node),
                    phase == "Running",
                    pod_ready(p),
                    -per_node.get(node, 0),
                    [-ord(c) for c in p["metadata"].get("creationTimestamp", "")],
                )

            for p in sorted(mine, key=rank)[: len(mine) - want]:
                self._delete(POD, p)

    def sync_replicaset_status(self, rs: Obj, pods: list[Obj]) -> None:
        mine = self._pods_of(rs, pods)
        labels = ((rs.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}
        ready = sum(1 for p in mine if pod_ready(p))
        status = {
            "replicas": len(mine),
            "observedGeneration": rs["metadata"].get("generation", 1),
            "fullyLabeledReplicas": sum(1 for p in mine if all((p["metadata"].get("labels") or {}).get(k) == v for k, v in labels.items())),
            "readyReplicas": ready,
            "availableReplicas": ready,
        }
        for k in ("fullyLabeledReplicas", "readyReplicas", "availableReplicas"):
            if not status[k]:
                status.pop(k)
        if status != (rs.get("status") or {}):
            rs["status"] = status
            self._update(REPLICASET, rs, "status")

    # -- DaemonSet
    @staticmethod
    def _daemon_pod_spec(ds: Obj) -> Obj:
        spec = copy.deepcopy(((ds.get("spec") or {}).get("template") or {}).get("spec") or {})
        tol = spec.setdefault("tolerations", [])
        extra = DAEMON_TOLERATIONS + ([HOST_NETWORK_TOLERATION] if spec.get("hostNetwork") else [])
        for t in extra:
            if not any(x.get("key") == t["key"] and x.get("effect") == t["effect"] for x in tol):
                tol.append(dict(t))
        return spec

    def _should_run(self, ds: Obj, node: Obj, running: bool = False) -> bool:
        """nodeShouldRunDaemonPod: a new pod needs every NoSchedule/NoExecute taint
        tolerated; a running one is only removed by an untolerated NoExecute taint."""
        spec = self._daemon_pod_spec(ds)
        effects = ("NoExecute",) if running else ("NoSchedule", "NoExecute")
        return node_selected(spec, node) and untolerated_taint(spec, node, effects) is None

    def sync_daemonset_pods(self, ds: Obj, nodes: list[Obj], pods: list[Obj]) -> None:
        mine = self._pods_of(ds, pods)
        md = ds["metadata"]
        generation = str(md.get("generation", 1))
        template = (ds.get("spec") or {}).get("template") or {}
        revision = template_hash(template)
        by_node: dict[str, list[Obj]] = {}
        for p in mine:
            by_node.setdefault(_pinned_node(p), []).append(p)
        for node in nodes:
            name = node["metadata"]["name"]
            have = by_node.pop(name, [])
            if not self._should_run(ds, node, running=bool(have)):
                for p in have:
                    self._delete(POD, p)
                continue
            current = [p for p in have if (p["metadata"].get("labels") or {}).get("controller-revision-hash") == revision]
            for p in [p for p in have if p not in current] + current[1:]:
                self._delete(POD, p)  # OnDelete-free rolling update: replace at once
            if current:
                continue
            spec = self._daemon_pod_spec(ds)
            spec.setdefault("affinity", {})["nodeAffinity"] = {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [name]}]}]
                }
            }
            labels = dict((template.get("metadata") or {}).get("labels") or {})
            labels.update({"controller-revision-hash": revision, "pod-template-generation": generation})
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "generateName": md["name"] + "-",
                    "namespace": md.get("namespace"),
                    "labels": labels,
                    "ownerReferences": [owner_ref(DAEMONSET, ds)],
                },
                "spec": spec,
            }
            created = self._create(POD, pod)
            if created is not None:
                pods.append(created)
        for stale in by_node.values():  # pods of nodes that are gone
            for p in stale:
                self._delete(POD, p)

    def sync_daemonset_status(self, ds: Obj, nodes: list[Obj], pods: list[Obj]) -> None:
        mine = self._pods_of(ds, pods)
        revision = template_hash((ds.get("spec") or {}).get("template") or {})
        scheduled = {(p.get("spec") or {}).get("nodeName") for p in mine} - {None, ""}
        wanted = {n["metadata"]["name"] for n in nodes if self._should_run(ds, n, running=n["metadata"]["name"] in scheduled)}
        ready = [p for p in mine if pod_ready(p) and (p.get("spec") or {}).get("nodeName") in wanted]
        updated = [
            p
            for p in mine
            if (p["metadata"].get("labels") or {}).get("controller-revision-hash") == revision
            and (p.get("spec") or {}).get("nodeName") in wanted
        ]
        status = dict(ds.get("status") or {})
        status.update(
            {
                "desiredNumberScheduled": len(wanted),
                "currentNumberScheduled": len(scheduled & wanted),
                "numberMisscheduled": len(scheduled - wanted),
                "numberReady": len(ready),
                "numberAvailable": len(ready),
                "updatedNumberScheduled": len(updated),
                "observedGeneration": ds["metadata"].get("generation", 1),
            }
        )
        unavailable = len(wanted) - len(ready)
        if unavailable > 0:
            status["numberUnavailable"] = unavailable
        else:
            status.pop("numberUnavailable", None)
        if status != (ds.get("status") or {}):
            ds["status"] = status
            self._update(DAEMONSET, ds, "status")


def _pinned_node(pod: Obj) -> str:
    """The node a DaemonSet pod is for: its nodeName, else its metadata.name affinity."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return spec["nodeName"]
    terms = (((spec.get("affinity") or {}).get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get(
        "nodeSelectorTerms"
    ) or []
    for term in terms:
        for f in term.get("matchFields") or []:
            if f.get("key") == "metadata.name" and f.get("values"):
                return f["values"][0]
    return ""
