"""TEST DOUBLE (k3s stand-in, not the real k3s).

The scheduler and the node side of pods. The scheduler binds each pending pod to a node that
passes the default filters -- spec.unschedulable (cordon), taints with NoSchedule/NoExecute
against the pod's tolerations (so kubeadm's node-role.kubernetes.io/control-plane:NoSchedule
keeps ordinary pods off the control plane, and NotReady nodes carry the not-ready/unreachable
taints), nodeSelector and required node affinity -- and spreads pods: the node with the fewest
pods of the same controller first, then the fewest pods, then the name.

NO CONTAINERS RUN: a pod bound to a stand-in node turns Running and Ready at once (podIP from
the node's podCIDR, hostIP, container statuses "running"), as if its images had been pulled and
started. While its node is not Ready (agent/kubelet stopped: Ready=Unknown; kubeadm without a CNI:
Ready=False) its pods are Ready=False, as the node lifecycle controller marks them; they are
Ready again when the node is. Pods are not evicted from a dead node after 300 s (no taint
manager), and pods bound to a deleted node are deleted (the pod garbage collector).

Upstream: kubernetes/kubernetes pkg/scheduler/framework/plugins/ (nodeunschedulable,
tainttoleration, nodeaffinity, podtopologyspread default spreading),
staging/src/k8s.io/api/core/v1/toleration.go (ToleratesTaint),
pkg/controller/util/node/controller_utils.go (MarkPodsNotReady),
pkg/kubelet/status/generate.go (pod conditions), pkg/controller/podgc/gc_controller.go
"""

from __future__ import annotations

import collections
import hashlib
import ipaddress
from typing import Any

from .kinds import Kind
from .selectors import selector_matches
from .store import NODE, POD, UNSCHEDULABLE_TAINT, ApiError, Store
from .util import log, ts

Obj = dict[str, Any]


def tolerates(tolerations: list[Obj], taint: Obj) -> bool:
    """ToleratesTaint: a toleration matches the taint's effect (or has none) and its key
    (Exists with an empty key tolerates everything; Equal also compares the value)."""
    for t in tolerations or []:
        if t.get("effect") and t.get("effect") != taint.get("effect"):
            continue
        op = t.get("operator") or "Equal"
        if op == "Exists" and not t.get("key"):
            return True
        if t.get("key") != taint.get("key"):
            continue
        if op == "Exists" or (t.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def _term_matches(term: Obj, node: Obj) -> bool:
    labels = node["metadata"].get("labels") or {}
    for expr in term.get("matchExpressions") or []:
        if not selector_matches({"matchExpressions": [expr]}, labels):
            return False
    for expr in term.get("matchFields") or []:
        if expr.get("key") != "metadata.name":
            return False
        sel = {"matchExpressions": [dict(expr, key="name")]}
        if not selector_matches(sel, {"name": node["metadata"]["name"]}):
            return False
    return bool(term.get("matchExpressions") or term.get("matchFields"))


def node_selected(pod_spec: Obj, node: Obj) -> bool:
    """nodeSelector and requiredDuringSchedulingIgnoredDuringExecution node affinity."""
    labels = node["metadata"].get("labels") or {}
    for k, v in (pod_spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return False
    required = ((pod_spec.get("affinity") or {}).get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    terms = required.get("nodeSelectorTerms")
    if terms is not None:
        return any(_term_matches(t, node) for t in terms)
    return True


def untolerated_taint(pod_spec: Obj, node: Obj, effects: tuple[str, ...] = ("NoSchedule", "NoExecute")) -> Obj | None:
    """The first taint of the node with one of these effects the pod does not tolerate."""
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") in effects and not tolerates(pod_spec.get("tolerations") or [], taint):
            return taint
    return None


def unschedulable(pod_spec: Obj, node: Obj) -> bool:
    """A cordoned node (spec.unschedulable) takes only pods tolerating its taint."""
    return bool((node.get("spec") or {}).get("unschedulable")) and not tolerates(
        pod_spec.get("tolerations") or [], {"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"}
    )


def node_condition(node: Obj | None, typ: str = "Ready") -> str:
    for c in ((node or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == typ:
            return c.get("status") or "Unknown"
    return "Unknown"


def controller_of(obj: Obj) -> Obj | None:
    """The ownerReference with controller: true (metav1.GetControllerOf)."""
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def _why_not(pod_spec: Obj, node: Obj) -> str | None:
    if unschedulable(pod_spec, node):
        return "node(s) were unschedulable"
    if not node_selected(pod_spec, node):
        return "node(s) didn't match Pod's node affinity/selector"
    taint = untolerated_taint(pod_spec, node)
    if taint is not None:
        return "node(s) had untolerated taint {%s: %s}" % (taint.get("key"), taint.get("value", ""))
    return None


def _set_condition(status: Obj, typ: str, value: str, reason: str = "", message: str = "") -> bool:
    """Set one pod condition; True when it changed."""
    conds = status.setdefault("conditions", [])
    for c in conds:
        if c.get("type") == typ:
            if c.get("status") == value and c.get("reason", "") == reason:
                return False
            c.update({"status": value, "lastTransitionTime": ts(), "lastProbeTime": None})
            c.pop("reason", None)
            c.pop("message", None)
            if reason:
                c["reason"] = reason
            if message:
                c["message"] = message
            return True
    cond = {"type": typ, "status": value, "lastProbeTime": None, "lastTransitionTime": ts()}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    conds.append(cond)
    return True


class Scheduler:
    """Binds pending pods; keeps bound pods' status as their (stand-in) node would."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def sync(self) -> None:
        nodes = {n["metadata"]["name"]: n for n in self.store.list(NODE)[0]}
        pods = self.store.list(POD)[0]
        per_node: dict[str, int] = collections.Counter()
        per_owner: dict[tuple[str, str], int] = collections.Counter()
        for p in pods:
            node_name = (p.get("spec") or {}).get("nodeName")
            if node_name:
                per_node[node_name] += 1
                ref = controller_of(p)
                if ref:
                    per_owner[(ref.get("uid", ""), node_name)] += 1
        for pod in pods:
            spec = pod.get("spec") or {}
            node_name = spec.get("nodeName")
            if not node_name:
                chosen = self._bind(pod, nodes, per_node, per_owner)
                if chosen:
                    per_node[chosen] += 1
                    ref = controller_of(pod)
                    if ref:
                        per_owner[(ref.get("uid", ""), chosen)] += 1
            elif node_name not in nodes:
                self._delete_orphan(pod, node_name)
            else:
                self._sync_status(pod, nodes[node_name], pods)

    def _write(self, kind: Kind, obj: Obj, subresource: str | None = None) -> None:
        try:
            self.store.update(kind, obj, expect_rv="", subresource=subresource)
        except ApiError as e:
            log("debug", "scheduler: %s" % e.message)

    def _bind(self, pod: Obj, nodes: dict[str, Obj], per_node: dict[str, int], per_owner: dict[tuple[str, str], int]) -> str | None:
        spec = pod.get("spec") or {}
        if (pod.get("status") or {}).get("phase", "Pending") != "Pending":
            return None
        reasons: dict[str, int] = collections.Counter()
        fits = []
        for name, node in nodes.items():
            why = _why_not(spec, node)
            if why:
                reasons[why] += 1
            else:
                fits.append(name)
        status = pod.setdefault("status", {})
        if not fits:
            message = "0/%d nodes are available: %s." % (
                len(nodes),
                ", ".join("%d %s" % (n, why) for why, n in sorted(reasons.items())) or "no nodes",
            )
            if _set_condition(status, "PodScheduled", "False", "Unschedulable", message):
                self._write(POD, pod, "status")
            return None
        ref = controller_of(pod)
        owner = ref.get("uid", "") if ref else ""
        chosen = min(fits, key=lambda n: (per_owner[(owner, n)] if owner else 0, per_node[n], n))
        pod["spec"]["nodeName"] = chosen
        _set_condition(status, "PodScheduled", "True")
        try:
            self.store.update(POD, pod, expect_rv="", subresource="all")
            log("debug", "scheduler: bound %s/%s to %s" % (pod["metadata"].get("namespace"), pod["metadata"]["name"], chosen))
        except ApiError:
            return None
        return chosen

    def _delete_orphan(self, pod: Obj, node_name: str) -> None:
        """The pod garbage collector: pods bound to a node that no longer exists go."""
        try:
            self.store.delete(POD, pod["metadata"].get("namespace"), pod["metadata"]["name"])
            log("info", "Deleted pod %s/%s of deleted node %s" % (pod["metadata"].get("namespace"), pod["metadata"]["name"], node_name))
        except ApiError:
            pass

    @staticmethod
    def _pod_ip(pod: Obj, node: Obj, pods: list[Obj]) -> str:
        spec = pod.get("spec") or {}
        addrs = [a["address"] for a in (node.get("status") or {}).get("addresses") or [] if a.get("type") == "InternalIP"]
        if spec.get("hostNetwork"):
            return addrs[0] if addrs else ""
        try:
            net = ipaddress.ip_network((node.get("spec") or {}).get("podCIDR") or "", strict=False)
        except ValueError:
            return ""
        used = {(p.get("status") or {}).get("podIP") for p in pods if (p.get("spec") or {}).get("nodeName") == node["metadata"]["name"]}
        for i, ip in enumerate(net.hosts()):
            if i >= 1 and str(ip) not in used:  # .1 is the bridge, as with Flannel's cni0
                return str(ip)
        return ""

    def _sync_status(self, pod: Obj, node: Obj, pods: list[Obj]) -> None:
        status = pod.setdefault("status", {})
        phase = status.get("phase", "Pending")
        if phase in ("Succeeded", "Failed") or pod["metadata"].get("deletionTimestamp"):
            return
        spec = pod.get("spec") or {}
        node_ready = node_condition(node)
        alive = node_ready == "True" or (spec.get("hostNetwork") and node_ready == "False")
        changed = False
        if phase == "Pending":
            if node_ready == "Unknown":
                return
            now = ts()
            addrs = [a["address"] for a in (node.get("status") or {}).get("addresses") or [] if a.get("type") == "InternalIP"]
            ip = self._pod_ip(pod, node, pods)
            status.update(
                {"phase": "Running", "startTime": now, "hostIP": addrs[0] if addrs else "", "hostIPs": [{"ip": a} for a in addrs[:1]]}
            )
            if ip:
                status["podIP"], status["podIPs"] = ip, [{"ip": ip}]
            status["containerStatuses"] = [
                {
                    "name": c.get("name", ""),
                    "image": c.get("image", ""),
                    "imageID": "%s@sha256:%s" % (c.get("image", ""), hashlib.sha256(c.get("image", "").encode()).hexdigest()),
                    "containerID": "containerd://"
                    + hashlib.sha256((pod["metadata"].get("uid", "") + c.get("name", "")).encode()).hexdigest(),
                    "ready": False,
                    "restartCount": 0,
                    "started": True,
                    "state": {"running": {"startedAt": now}},
                    "lastState": {},
                }
                for c in spec.get("containers") or []
            ]
            for typ in ("PodReadyToStartContainers", "Initialized", "PodScheduled"):
                _set_condition(status, typ, "True")
            changed = True
        ready = "True" if alive else "False"
        reason = "" if alive else "ContainersNotReady"
        for typ in ("Ready", "ContainersReady"):
            changed = _set_condition(status, typ, ready, reason) or changed
        for cs in status.get("containerStatuses") or []:
            if cs.get("ready") != alive:
                cs["ready"] = bool(alive)
                changed = True
        if changed:
            self._write(POD, pod, "status")
