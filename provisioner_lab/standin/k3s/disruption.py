"""TEST DOUBLE (k3s stand-in, not the real k3s).

PodDisruptionBudgets: the disruption controller's status and the API server's pods/eviction
subresource, which `kubectl drain` uses.

Status: expectedPods is the number of selected pods for an integer minAvailable, else the
scale of the pods' controllers (a Deployment's spec.replicas through its ReplicaSet, or a bare
ReplicaSet's); desiredHealthy is minAvailable, or expectedPods - maxUnavailable, with
percentages rounded up; currentHealthy counts Ready pods not already being disrupted;
disruptionsAllowed = max(0, currentHealthy - desiredHealthy) (0 while no pods are expected);
observedGeneration, disruptedPods (pods evicted but not yet gone, for 2 minutes) and the
DisruptionAllowed condition (SufficientPods/InsufficientPods; SyncFailed when a selected pod's
controller has no scale, e.g. a DaemonSet pod under a percentage budget).

Eviction (POST .../pods/NAME/eviction, policy/v1 or v1beta1 Eviction): terminal and Pending pods
are deleted without asking; more than one matching budget is a 500; a budget not yet observed
at its generation, or with disruptionsAllowed 0, is 429 TooManyRequests "Cannot evict pod as it
would violate the pod's disruption budget." with a DisruptionBudget cause (kubectl drain prints
the message and retries every 5 s); otherwise the budget is decremented, the pod recorded in
disruptedPods and deleted (201 Status Success). An unready pod is deleted without
decrementing while the budget is met.

Upstream: kubernetes/kubernetes pkg/controller/disruption/disruption.go,
pkg/registry/core/pod/storage/eviction.go,
staging/src/k8s.io/component-helpers/apps/poddisruptionbudget/helpers.go,
staging/src/k8s.io/apimachinery/pkg/util/intstr/intstr.go (GetScaledValueFromIntOrPercent),
staging/src/k8s.io/kubectl/pkg/drain/drain.go (the client side)
"""

from __future__ import annotations

import math
from typing import Any

from .scheduler import controller_of
from .selectors import selector_matches
from .store import DEPLOYMENT, PDB, POD, REPLICASET, ApiError, Store, bad_request, not_found
from .util import log, parse_ts, ts, utcnow
from .workload_kinds import InvalidObject, parse_int_or_percent, pod_ready

Obj = dict[str, Any]

#: how long an evicted pod stays in disruptedPods if it is not deleted (DeletionTimeout)
DELETION_TIMEOUT = 120.0

VIOLATION = "Cannot evict pod as it would violate the pod's disruption budget."


def scaled_value(value: Any, total: int, field: str) -> int:
    """An IntOrString as a count: percentages of total, rounded up."""
    number, pct = parse_int_or_percent(value, field)
    return math.ceil(number * total / 100) if pct else number


def too_many_requests(cause: str) -> ApiError:
    """errors.NewTooManyRequests(VIOLATION, 0) with a DisruptionBudget cause (no Retry-After,
    so clients do not retry on their own: kubectl drain reports it and retries after 5 s)."""
    return ApiError(429, "TooManyRequests", VIOLATION, {"causes": [{"reason": "DisruptionBudget", "message": cause}]})


def update_allowed_condition(status: Obj, generation: int) -> None:
    """UpdateDisruptionAllowedCondition."""
    allowed = status.get("disruptionsAllowed", 0) > 0
    _set_condition(status, "True" if allowed else "False", "SufficientPods" if allowed else "InsufficientPods", "", generation)


def _set_condition(status: Obj, value: str, reason: str, message: str, generation: int) -> None:
    conds = status.setdefault("conditions", [])
    for c in conds:
        if c.get("type") == "DisruptionAllowed":
            if (c.get("status"), c.get("reason"), c.get("message")) != (value, reason, message):
                if c.get("status") != value:
                    c["lastTransitionTime"] = ts()
                c.update({"status": value, "reason": reason, "message": message})
            c["observedGeneration"] = generation
            return
    conds.append(
        {
            "type": "DisruptionAllowed",
            "status": value,
            "reason": reason,
            "message": message,
            "observedGeneration": generation,
            "lastTransitionTime": ts(),
        }
    )


class Disruption:
    """The disruption controller and the eviction subresource over one store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def pods_of(self, pdb: Obj) -> list[Obj]:
        selector = (pdb.get("spec") or {}).get("selector")
        return [
            p
            for p in self.store.list(POD, pdb["metadata"].get("namespace"))[0]
            if selector_matches(selector, p["metadata"].get("labels"), empty_matches=False)
        ]

    def _expected_scale(self, pods: list[Obj]) -> int:
        """SUM of the scale of the pods' controllers (getExpectedScale)."""
        scales: dict[str, int] = {}
        for pod in pods:
            ref = controller_of(pod)
            if ref is None or ref.get("uid") in scales:
                continue
            ns = pod["metadata"].get("namespace")
            if ref.get("kind") != "ReplicaSet":
                raise InvalidObject('found no controllers for pod "%s"' % pod["metadata"]["name"])
            rs = self.store.get(REPLICASET, ns, ref.get("name", ""))
            if rs is None or rs["metadata"].get("uid") != ref.get("uid"):
                raise InvalidObject('found no controllers for pod "%s"' % pod["metadata"]["name"])
            dref = controller_of(rs)
            if dref is not None and dref.get("kind") == "Deployment":
                d = self.store.get(DEPLOYMENT, ns, dref.get("name", ""))
                if d is None:
                    raise InvalidObject('found no controllers for pod "%s"' % pod["metadata"]["name"])
                scales[d["metadata"]["uid"]] = int(d["spec"].get("replicas", 1))
            else:
                scales[rs["metadata"]["uid"]] = int(rs["spec"].get("replicas", 1))
            scales.setdefault(ref["uid"], 0)
        return sum(scales.values())

    def _desired(self, pdb: Obj, pods: list[Obj]) -> tuple[int, int]:
        """(expectedCount, desiredHealthy) -- getExpectedPodCount."""
        spec = pdb.get("spec") or {}
        if "maxUnavailable" in spec:
            expected = self._expected_scale(pods)
            return expected, max(0, expected - scaled_value(spec["maxUnavailable"], expected, "spec.maxUnavailable"))
        if "minAvailable" in spec:
            if isinstance(spec["minAvailable"], int):
                return len(pods), int(spec["minAvailable"])
            expected = self._expected_scale(pods)
            return expected, scaled_value(spec["minAvailable"], expected, "spec.minAvailable")
        return len(pods), 0

    def sync(self) -> None:
        for pdb in self.store.list(PDB)[0]:
            self.sync_one(pdb)

    def sync_one(self, pdb: Obj) -> None:
        generation = pdb["metadata"].get("generation", 1)
        old = pdb.get("status") or {}
        status = dict(old)
        pods = self.pods_of(pdb)
        now = utcnow()
        names = {p["metadata"]["name"] for p in pods}
        disrupted = {}
        for name, when in (old.get("disruptedPods") or {}).items():
            t = parse_ts(when)
            if name in names and t and (now - t).total_seconds() < DELETION_TIMEOUT:
                disrupted[name] = when
        try:
            expected, desired = self._desired(pdb, pods)
        except InvalidObject as e:
            status.update({"disruptionsAllowed": 0, "observedGeneration": old.get("observedGeneration", 0)})
            _set_condition(status, "False", "SyncFailed", str(e), status["observedGeneration"])
            self._write(pdb, status)
            return
        healthy = sum(
            1 for p in pods if pod_ready(p) and p["metadata"]["name"] not in disrupted and not p["metadata"].get("deletionTimestamp")
        )
        allowed = healthy - desired if expected > 0 and healthy > desired else 0
        status.update(
            {
                "currentHealthy": healthy,
                "desiredHealthy": desired,
                "expectedPods": expected,
                "disruptionsAllowed": allowed,
                "observedGeneration": generation,
            }
        )
        if disrupted:
            status["disruptedPods"] = disrupted
        else:
            status.pop("disruptedPods", None)
        update_allowed_condition(status, generation)
        self._write(pdb, status)

    def _write(self, pdb: Obj, status: Obj) -> None:
        if status == (pdb.get("status") or {}):
            return
        pdb["status"] = status
        try:
            self.store.update(PDB, pdb, expect_rv="", subresource="status")
        except ApiError as e:
            log("debug", "disruption controller: %s" % e.message)

    # -- POST pods/NAME/eviction
    def evict(self, ns: str, name: str, body: Obj, dry_run: bool) -> Obj:
        """Evict one pod (see the module docstring); returns the Status to send (201)."""
        md = body.get("metadata") or {}
        if md.get("name") and md["name"] != name:
            raise bad_request("name in URL does not match name in Eviction object")
        options = body.get("deleteOptions") or {}
        dry_run = dry_run or "All" in (options.get("dryRun") or [])
        with self.store.lock:
            pod = self.store.get(POD, ns, name)
            if pod is None:
                raise not_found(POD, name)
            phase = (pod.get("status") or {}).get("phase", "Pending")
            if phase not in ("Succeeded", "Failed", "Pending") and not pod["metadata"].get("deletionTimestamp"):
                self._check_budgets(pod, dry_run)
            if not dry_run:
                self.store.delete(POD, ns, name)
                log("info", "Evicted pod %s/%s" % (ns, name))
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}

    def _check_budgets(self, pod: Obj, dry_run: bool) -> None:
        ns = pod["metadata"].get("namespace")
        pdbs = [
            p
            for p in self.store.list(PDB, ns)[0]
            if selector_matches((p.get("spec") or {}).get("selector"), pod["metadata"].get("labels"), empty_matches=False)
        ]
        if len(pdbs) > 1:
            raise ApiError(
                500, "InternalError", "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
            )
        if not pdbs:
            return
        pdb = pdbs[0]
        status = pdb.get("status") or {}
        pname = pdb["metadata"]["name"]
        if not pod_ready(pod) and status.get("currentHealthy", 0) >= status.get("desiredHealthy", 0) > 0:
            return
        if status.get("observedGeneration", 0) < pdb["metadata"].get("generation", 1):
            raise too_many_requests("The disruption budget %s is still being processed by the server." % pname)
        if status.get("disruptionsAllowed", 0) < 0:
            raise ApiError(403, "Forbidden", 'poddisruptionbudgets.policy "%s" is forbidden: pdb disruptions allowed is negative' % pname)
        if status.get("disruptionsAllowed", 0) == 0:
            raise too_many_requests(
                "The disruption budget %s needs %d healthy pods and has %d "
                "currently" % (pname, status.get("desiredHealthy", 0), status.get("currentHealthy", 0))
            )
        status = dict(status)
        status["disruptionsAllowed"] -= 1
        if status["disruptionsAllowed"] == 0:
            update_allowed_condition(status, status.get("observedGeneration", 0))
        if dry_run:
            return
        status.setdefault("disruptedPods", {})[pod["metadata"]["name"]] = ts()
        pdb["status"] = status
        self.store.update(PDB, pdb, expect_rv="", subresource="status")
