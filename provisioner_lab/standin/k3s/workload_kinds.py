"""TEST DOUBLE (k3s stand-in, not the real k3s).

The workload kinds of the stand-in API: Pods, apps/v1 Deployments and ReplicaSets, policy/v1
PodDisruptionBudgets -- their defaults and validation on write (what the real API server's
registry strategies do) and the Table columns `kubectl get` (and `-o wide`) prints.
The controllers that act on them are in workloads.py, scheduler.py and disruption.py.

Upstream: kubernetes/kubernetes pkg/printers/internalversion/printers.go (printPod,
printDeployment, printReplicaSet, printPodDisruptionBudget), pkg/apis/apps/v1/defaults.go,
pkg/apis/core/v1/defaults.go, pkg/registry/apps/deployment/strategy.go (generation),
pkg/registry/policy/poddisruptionbudget/strategy.go,
staging/src/k8s.io/apimachinery/pkg/apis/meta/v1/helpers.go (FormatLabelSelector)
"""

from __future__ import annotations

from typing import Any

from .kinds import AGE_COL, NAME_COL, Kind, age, col

Obj = dict[str, Any]


class InvalidObject(ValueError):
    """A write the API server's validation refuses (turned into a 422 by the store)."""


def bump_generation(obj: Obj, old: Obj | None) -> None:
    """metadata.generation: 1 on create, +1 whenever spec changes (status writes keep it)."""
    gen = int(((old or {}).get("metadata") or {}).get("generation") or 0)
    if old is None or old.get("spec") != obj.get("spec"):
        gen += 1
    obj["metadata"]["generation"] = gen or 1


def format_label_selector(sel: Obj | None) -> str:
    """A LabelSelector as kubectl prints it: `app=nginx,tier in (a,b)`; `<none>` if empty."""
    if not sel:
        return "<none>"
    parts = ["%s=%s" % kv for kv in sorted((sel.get("matchLabels") or {}).items())]
    for expr in sel.get("matchExpressions") or []:
        op, key, values = expr.get("operator", ""), expr.get("key", ""), expr.get("values") or []
        if op == "In":
            parts.append("%s in (%s)" % (key, ",".join(values)))
        elif op == "NotIn":
            parts.append("%s notin (%s)" % (key, ",".join(values)))
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append("!" + key)
    return ",".join(parts) or "<none>"


def _containers(template_spec: Obj | None) -> tuple[str, str]:
    cs = (template_spec or {}).get("containers") or []
    return (",".join(c.get("name", "") for c in cs) or "<none>", ",".join(c.get("image", "") for c in cs) or "<none>")


# -- Pods -------------------------------------------------------------------------------------


def default_pod_spec(spec: Obj) -> None:
    """The defaults the API server fills into a pod spec (core/v1 SetDefaults_PodSpec)."""
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for c in spec.get("containers") or []:
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        c.setdefault(
            "imagePullPolicy",
            "Always"
            if str(c.get("image", "")).endswith(":latest") or ":" not in str(c.get("image", "")).rsplit("/", 1)[-1]
            else "IfNotPresent",
        )
        c.setdefault("resources", {})


def prepare_pod(pod: Obj, old: Obj | None) -> None:
    spec = pod.setdefault("spec", {})
    if old is None:
        if not spec.get("containers"):
            raise InvalidObject("spec.containers: Required value")
        default_pod_spec(spec)
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("priority", 0)
        # the DefaultTolerationSeconds admission plugin
        tol = spec.setdefault("tolerations", [])
        for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
            if not any(t.get("key") == key and t.get("effect") in (None, "", "NoExecute") for t in tol):
                tol.append({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300})
    status = pod.setdefault("status", {})
    status.setdefault("phase", "Pending")
    status.setdefault("qosClass", "BestEffort")


def pod_ready(pod: Obj) -> bool:
    """IsPodReady: the Ready condition is True."""
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in (pod.get("status") or {}).get("conditions") or [])


def _pod_cells(o: Obj) -> list[Any]:
    spec, status = o.get("spec") or {}, o.get("status") or {}
    total = len(spec.get("containers") or [])
    ready = sum(1 for c in status.get("containerStatuses") or [] if c.get("ready"))
    reason = status.get("reason") or status.get("phase") or "Pending"
    if o["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    gates = spec.get("readinessGates") or []
    return [
        o["metadata"]["name"],
        "%d/%d" % (ready, total),
        reason,
        "0",
        age(o),
        status.get("podIP") or "<none>",
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        "%d/%d" % (0, len(gates)) if gates else "<none>",
    ]


POD_COLUMNS = [
    NAME_COL,
    col("Ready", "The aggregate readiness state of this pod for accepting traffic."),
    col("Status", "The aggregate status of the containers in this pod."),
    col(
        "Restarts",
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
    ),
    AGE_COL,
    col("IP", "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.", 1),
    col("Node", "NodeName is a request to schedule this pod onto a specific node.", 1),
    col("Nominated Node", "nominatedNodeName is set only when this pod preempts other pods on the node.", 1),
    col("Readiness Gates", "If specified, all readiness gates will be evaluated for pod readiness.", 1),
]


# -- Deployments and ReplicaSets --------------------------------------------------------------


def _check_selector(kind: str, obj: Obj) -> None:
    spec = obj.get("spec") or {}
    sel = spec.get("selector")
    if not sel or not (sel.get("matchLabels") or sel.get("matchExpressions")):
        raise InvalidObject("spec.selector: Required value")
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    for k, v in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            raise InvalidObject(
                "spec.template.metadata.labels: Invalid value: %s: `selector` does not match template `labels`" % _go_map(labels)
            )
    if not ((spec.get("template") or {}).get("spec") or {}).get("containers"):
        raise InvalidObject("spec.template.spec.containers: Required value")


def _go_map(m: Obj) -> str:
    return "map[string]string{%s}" % ", ".join('"%s":"%s"' % kv for kv in sorted(m.items()))


def prepare_deployment(d: Obj, old: Obj | None) -> None:
    """apps/v1 defaults (replicas 1, RollingUpdate 25%/25%, history 10, deadline 600 s) and
    generation; selector and template labels are checked as the API server does."""
    spec = d.setdefault("spec", {})
    _check_selector("Deployment", d)
    if old is not None and old.get("spec", {}).get("selector") != spec.get("selector"):
        raise InvalidObject("spec.selector: Invalid value: %s: field is immutable" % format_label_selector(spec.get("selector")))
    spec.setdefault("replicas", 1)
    strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
    if strategy.get("type", "RollingUpdate") == "RollingUpdate":
        strategy["type"] = "RollingUpdate"
        ru = strategy.setdefault("rollingUpdate", {})
        ru.setdefault("maxUnavailable", "25%")
        ru.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    default_pod_spec(spec["template"].setdefault("spec", {}))
    bump_generation(d, old)
    d.setdefault("status", {})


def prepare_replicaset(rs: Obj, old: Obj | None) -> None:
    spec = rs.setdefault("spec", {})
    _check_selector("ReplicaSet", rs)
    spec.setdefault("replicas", 1)
    default_pod_spec(spec["template"].setdefault("spec", {}))
    bump_generation(rs, old)
    status = rs.setdefault("status", {})
    status.setdefault("replicas", 0)


def _deploy_cells(o: Obj) -> list[Any]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    names, images = _containers((spec.get("template") or {}).get("spec"))
    return [
        o["metadata"]["name"],
        "%d/%d" % (st.get("readyReplicas", 0), spec.get("replicas", 0)),
        st.get("updatedReplicas", 0),
        st.get("availableReplicas", 0),
        age(o),
        names,
        images,
        format_label_selector(spec.get("selector")),
    ]


def _rs_cells(o: Obj) -> list[Any]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    names, images = _containers((spec.get("template") or {}).get("spec"))
    return [
        o["metadata"]["name"],
        spec.get("replicas", 0),
        st.get("replicas", 0),
        st.get("readyReplicas", 0),
        age(o),
        names,
        images,
        format_label_selector(spec.get("selector")),
    ]


WIDE_CONTAINER_COLUMNS = [
    col("Containers", "Names of each container in the template.", 1),
    col("Images", "Images referenced by each container in the template.", 1),
    col(
        "Selector",
        "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.",
        1,
    ),
]


DEPLOYMENT_COLUMNS = [
    NAME_COL,
    col("Ready", "Number of the pod with ready state"),
    col(
        "Up-to-date", "Total number of non-terminated pods targeted by this deployment that have the desired template spec.", typ="integer"
    ),
    col("Available", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.", typ="integer"),
    AGE_COL,
    *WIDE_CONTAINER_COLUMNS,
]


REPLICASET_COLUMNS = [
    NAME_COL,
    col("Desired", "Replicas is the number of desired replicas.", typ="integer"),
    col("Current", "Replicas is the most recently observed number of replicas.", typ="integer"),
    col("Ready", "The number of ready replicas for this replica set.", typ="integer"),
    AGE_COL,
    *WIDE_CONTAINER_COLUMNS,
]


# -- PodDisruptionBudgets ---------------------------------------------------------------------


def parse_int_or_percent(value: Any, field: str) -> tuple[int, bool]:
    """(number, is_percent) of an IntOrString; percent strings are `NN%`."""
    if isinstance(value, bool):
        raise InvalidObject("%s: Invalid value: %r: must be an integer or percentage" % (field, value))
    if isinstance(value, int):
        if value < 0:
            raise InvalidObject("%s: Invalid value: %d: must be greater than or equal to 0" % (field, value))
        return value, False
    text = str(value)
    if text.endswith("%") and text[:-1].isdigit():
        pct = int(text[:-1])
        if pct > 100:
            raise InvalidObject('%s: Invalid value: "%s": must not be greater than 100%%' % (field, text))
        return pct, True
    raise InvalidObject(
        '%s: Invalid value: "%s": a valid percent string must be a numeric '
        "string followed by an ending '%%' (e.g. '1%%',  or '93%%', regex used "
        "for validation is '[0-9]+%%')" % (field, text)
    )


def prepare_pdb(pdb: Obj, old: Obj | None) -> None:
    """Validation (minAvailable xor maxUnavailable, int or percent), generation; the status
    starts at zero until the disruption controller (disruption.py) computes it."""
    spec = pdb.setdefault("spec", {})
    if "minAvailable" in spec and "maxUnavailable" in spec:
        raise InvalidObject("spec: Invalid value: policy.PodDisruptionBudgetSpec: minAvailable and maxUnavailable cannot be both set")
    for field in ("minAvailable", "maxUnavailable"):
        if field in spec:
            parse_int_or_percent(spec[field], "spec." + field)
    bump_generation(pdb, old)
    status = pdb.setdefault("status", {})
    for k in ("disruptionsAllowed", "currentHealthy", "desiredHealthy", "expectedPods"):
        status.setdefault(k, 0)


def _pdb_cells(o: Obj) -> list[Any]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    return [
        o["metadata"]["name"],
        str(spec.get("minAvailable", "N/A")),
        str(spec.get("maxUnavailable", "N/A")),
        st.get("disruptionsAllowed", 0),
        age(o),
    ]


PDB_COLUMNS = [
    NAME_COL,
    col("Min Available", "The minimum number of pods that must be available."),
    col("Max Unavailable", "The maximum number of pods that may be unavailable."),
    col("Allowed Disruptions", "Calculated number of pods that may be disrupted at this time.", typ="integer"),
    AGE_COL,
]


# -- the registry entries ---------------------------------------------------------------------

SCALE_SUBRESOURCE = ("scale", "autoscaling", "v1", "Scale", ("get", "patch", "update"))


POD_KIND = Kind(
    "",
    "v1",
    "Pod",
    "pods",
    True,
    ["po"],
    prepare=prepare_pod,
    columns=POD_COLUMNS,
    cells=_pod_cells,
    categories=["all"],
    subresources=[("eviction", "policy", "v1", "Eviction", ("create",))],
)


WORKLOAD_KINDS = [
    Kind(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        True,
        ["deploy"],
        prepare=prepare_deployment,
        columns=DEPLOYMENT_COLUMNS,
        cells=_deploy_cells,
        categories=["all"],
        subresources=[SCALE_SUBRESOURCE],
    ),
    Kind(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        True,
        ["rs"],
        prepare=prepare_replicaset,
        columns=REPLICASET_COLUMNS,
        cells=_rs_cells,
        categories=["all"],
        subresources=[SCALE_SUBRESOURCE],
    ),
    Kind(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        True,
        ["pdb"],
        prepare=prepare_pdb,
        columns=PDB_COLUMNS,
        cells=_pdb_cells,
    ),
]
