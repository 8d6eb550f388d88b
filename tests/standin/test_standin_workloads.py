"""Workloads on the stand-in k3s, driven by the real kubectl: Deployments -> ReplicaSets ->
Pods, the scheduler (cordon, taints, nodeSelector, spreading), DaemonSets, PodDisruptionBudgets
and `kubectl drain` through the pods/eviction subresource.

One server (node `srv`) and two agents (`a1`, `a2`) for the module; each test works in its own
namespace and leaves the nodes uncordoned and untainted. No containers run: the stand-in marks a
bound pod Running and Ready at once."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest
from standin_helpers import Server, StandinProcess, require_prerequisites, start_server, wait_until

VIOLATION = "Cannot evict pod as it would violate the pod's disruption budget."


def deployment(name: str, replicas: int, **pod_spec) -> str:
    spec = {"containers": [{"name": name, "image": "nginx:1.27", "ports": [{"containerPort": 80}]}], **pod_spec}
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
            },
        }
    )


def pdb(name: str, app: str, **spec) -> str:
    return json.dumps(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": app}}, **spec},
        }
    )


class Workloads:
    """The module's cluster and kubectl helpers."""

    def __init__(self, server: Server, agents: dict[str, StandinProcess], tmp: Path) -> None:
        self.server, self.agents, self.tmp = server, agents, tmp

    def kubectl(self, *args: str, check: bool = True, timeout: float = 60):
        return self.server.kubectl(*args, check=check, timeout=timeout)

    def apply(self, ns: str, doc: str) -> str:
        path = self.tmp / f"{ns}-{abs(hash(doc))}.json"
        path.write_text(doc)
        return self.kubectl("apply", "-n", ns, "-f", str(path)).stdout

    def pods(self, ns: str, selector: str = "") -> list[dict]:
        args = ["get", "pods", "-n", ns, "-o", "json"] + (["-l", selector] if selector else [])
        return json.loads(self.kubectl(*args).stdout)["items"]

    def get(self, ns: str, what: str) -> dict:
        return json.loads(self.kubectl("get", "-n", ns, what, "-o", "json").stdout)

    def nodes_of(self, ns: str, selector: str = "") -> collections.Counter:
        return collections.Counter(p["spec"].get("nodeName") for p in self.pods(ns, selector))

    def rollout(self, ns: str, name: str = "nginx") -> str:
        return self.kubectl("rollout", "status", "-n", ns, f"deploy/{name}", "--timeout=30s").stdout

    def ready_pods(self, ns: str, selector: str = "") -> int:
        return sum(
            1
            for p in self.pods(ns, selector)
            if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
        )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    require_prerequisites()
    base = tmp_path_factory.mktemp("workloads")
    server = start_server(base / "server", base / "kube-cache", ["--node-name", "srv"])
    agents = {}
    try:
        for name in ("a1", "a2"):
            agents[name] = StandinProcess(
                base / name, ["agent"], name="agent", env={"K3S_URL": server.url, "K3S_TOKEN": server.token, "K3S_NODE_NAME": name}
            )
            agents[name].wait_ready()
        yield Workloads(server, agents, base)
    finally:
        for a in agents.values():
            a.stop()
        server.proc.stop()


@pytest.fixture
def ns(cluster, request):
    name = request.node.name.replace("_", "-")[5:45].strip("-")
    cluster.kubectl("create", "namespace", name)
    yield name
    for node in ("srv", "a1", "a2"):
        cluster.kubectl("uncordon", node, check=False)
    cluster.kubectl("delete", "namespace", name, "--wait=true", check=False)


def test_apply_deployment_creates_an_owned_replicaset_and_pods_and_rollout_status_ends(cluster, ns):
    assert "deployment.apps/nginx created" in cluster.apply(ns, deployment("nginx", 2))
    assert 'deployment "nginx" successfully rolled out' in cluster.rollout(ns)
    d = cluster.get(ns, "deploy/nginx")
    st = d["status"]
    assert st["observedGeneration"] == d["metadata"]["generation"] == 1
    assert (st["replicas"], st["updatedReplicas"], st["readyReplicas"], st["availableReplicas"]) == (2, 2, 2, 2)
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["Available"]["status"] == "True"
    assert conds["Available"]["reason"] == "MinimumReplicasAvailable"
    assert conds["Progressing"]["reason"] == "NewReplicaSetAvailable"
    rs = cluster.get(ns, "rs")["items"]
    assert len(rs) == 1
    h = rs[0]["metadata"]["labels"]["pod-template-hash"]
    assert rs[0]["metadata"]["name"] == f"nginx-{h}"
    assert rs[0]["metadata"]["ownerReferences"][0] | {"uid": ""} == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "nginx",
        "uid": "",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert rs[0]["metadata"]["ownerReferences"][0]["uid"] == d["metadata"]["uid"]
    pods = cluster.pods(ns)
    assert len(pods) == 2
    for p in pods:
        ref = p["metadata"]["ownerReferences"][0]
        assert (ref["kind"], ref["name"], ref["controller"]) == ("ReplicaSet", f"nginx-{h}", True)
        assert p["metadata"]["name"].startswith(f"nginx-{h}-")
        assert p["status"]["phase"] == "Running" and p["status"]["podIP"].startswith("10.42.")
    wide = cluster.kubectl("get", "deploy,rs,pods", "-n", ns, "-o", "wide").stdout
    assert "deployment.apps/nginx   2/2     2            2" in wide
    assert f"app=nginx,pod-template-hash={h}" in wide
    for p in pods:  # IP and NODE columns of -o wide
        row = next(line.split() for line in wide.splitlines() if line.startswith(f"pod/{p['metadata']['name']}"))
        assert row[1:3] == ["1/1", "Running"]
        assert row[5:7] == [p["status"]["podIP"], p["spec"]["nodeName"]]


def test_scale_to_4_goes_through_the_scale_subresource_and_spreads_over_nodes(cluster, ns):
    cluster.apply(ns, deployment("nginx", 2))
    cluster.rollout(ns)
    assert "deployment.apps/nginx scaled" in cluster.kubectl("scale", "-n", ns, "deploy/nginx", "--replicas=4").stdout
    cluster.rollout(ns)
    d = cluster.get(ns, "deploy/nginx")
    assert d["metadata"]["generation"] == d["status"]["observedGeneration"] == 2
    assert d["status"]["availableReplicas"] == 4
    counts = cluster.nodes_of(ns)
    assert sum(counts.values()) == 4 and set(counts) == {"srv", "a1", "a2"}
    assert max(counts.values()) - min(counts.values()) <= 1
    scale = json.loads(cluster.kubectl("get", "--raw", f"/apis/apps/v1/namespaces/{ns}/deployments/nginx/scale").stdout)
    assert (scale["apiVersion"], scale["kind"]) == ("autoscaling/v1", "Scale")
    assert scale["spec"]["replicas"] == 4 and scale["status"]["selector"] == "app=nginx"
    cluster.kubectl("scale", "-n", ns, "deploy/nginx", "--replicas=1")
    cluster.rollout(ns)
    wait_until(lambda: len(cluster.pods(ns)) == 1, 10, message="scaled down to 1 pod")


def test_a_new_template_rolls_out_a_new_replicaset_and_scales_the_old_one_to_zero(cluster, ns):
    cluster.apply(ns, deployment("nginx", 2))
    cluster.rollout(ns)
    cluster.kubectl("set", "image", "-n", ns, "deploy/nginx", "nginx=nginx:1.28")
    cluster.rollout(ns)
    rs = {r["spec"]["template"]["spec"]["containers"][0]["image"]: r for r in cluster.get(ns, "rs")["items"]}
    assert rs["nginx:1.27"]["spec"]["replicas"] == 0 and rs["nginx:1.28"]["spec"]["replicas"] == 2
    assert rs["nginx:1.28"]["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    assert {p["spec"]["containers"][0]["image"] for p in cluster.pods(ns)} == {"nginx:1.28"}


def test_cordoned_node_gets_no_new_pods_and_uncordon_takes_them_again(cluster, ns):
    assert "node/a1 cordoned" in cluster.kubectl("cordon", "a1").stdout
    cluster.apply(ns, deployment("nginx", 4))
    cluster.rollout(ns)
    assert "a1" not in cluster.nodes_of(ns)
    assert "Ready,SchedulingDisabled" in cluster.kubectl("get", "node", "a1").stdout
    assert "node/a1 uncordoned" in cluster.kubectl("uncordon", "a1").stdout
    cluster.kubectl("scale", "-n", ns, "deploy/nginx", "--replicas=7")
    cluster.rollout(ns)
    assert cluster.nodes_of(ns)["a1"] >= 1


def test_noschedule_taints_tolerations_and_node_selector_decide_the_node(cluster, ns):
    cluster.kubectl("taint", "node", "a2", "dedicated=db:NoSchedule")
    try:
        cluster.apply(ns, deployment("plain", 4))
        cluster.apply(
            ns,
            deployment(
                "pinned",
                2,
                nodeSelector={"kubernetes.io/hostname": "a2"},
                tolerations=[{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}],
            ),
        )
        cluster.rollout(ns, "plain")
        cluster.rollout(ns, "pinned")
        assert "a2" not in cluster.nodes_of(ns, "app=plain")
        assert cluster.nodes_of(ns, "app=pinned") == {"a2": 2}
        cluster.apply(ns, deployment("nowhere", 1, nodeSelector={"kubernetes.io/hostname": "a2"}))
        pending = wait_until(
            lambda: [
                p
                for p in cluster.pods(ns, "app=nowhere")
                if any(c["type"] == "PodScheduled" and c["status"] == "False" for c in p["status"].get("conditions", []))
            ],
            10,
            message="an unschedulable pod",
        )
        cond = next(c for c in pending[0]["status"]["conditions"] if c["type"] == "PodScheduled")
        assert cond["reason"] == "Unschedulable"
        assert cond["message"].startswith("0/3 nodes are available:")
        assert "1 node(s) had untolerated taint {dedicated: db}" in cond["message"]
        assert pending[0]["status"]["phase"] == "Pending" and not pending[0]["spec"].get("nodeName")
    finally:
        cluster.kubectl("taint", "node", "a2", "dedicated=db:NoSchedule-", check=False)


def test_daemonset_runs_one_pod_per_node_even_cordoned_and_drain_ignores_it(cluster, ns):
    cluster.kubectl("cordon", "a2")
    cluster.apply(
        ns,
        json.dumps(
            {
                "apiVersion": "apps/v1",
                "kind": "DaemonSet",
                "metadata": {"name": "agentd"},
                "spec": {
                    "selector": {"matchLabels": {"app": "agentd"}},
                    "template": {
                        "metadata": {"labels": {"app": "agentd"}},
                        "spec": {
                            "containers": [{"name": "a", "image": "busybox:1.36", "volumeMounts": [{"name": "s", "mountPath": "/s"}]}],
                            "volumes": [{"name": "s", "emptyDir": {}}],
                        },
                    },
                },
            }
        ),
    )
    wait_until(lambda: cluster.get(ns, "ds/agentd")["status"].get("numberReady") == 3, 10, message="3 DaemonSet pods ready")
    st = cluster.get(ns, "ds/agentd")["status"]
    assert (st["desiredNumberScheduled"], st["currentNumberScheduled"], st["updatedNumberScheduled"], st["numberAvailable"]) == (3, 3, 3, 3)
    assert cluster.nodes_of(ns) == {"srv": 1, "a1": 1, "a2": 1}
    for p in cluster.pods(ns):
        ref = p["metadata"]["ownerReferences"][0]
        assert (ref["kind"], ref["name"], ref["controller"]) == ("DaemonSet", "agentd", True)
    refused = cluster.kubectl("drain", "a1", "--timeout=10s", check=False)
    assert refused.returncode != 0
    assert "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore)" in refused.stderr
    drained = cluster.kubectl("drain", "a1", "--ignore-daemonsets", "--timeout=10s")
    assert "node/a1 drained" in drained.stdout
    assert f"ignoring DaemonSet-managed Pods: {ns}/agentd-" in drained.stderr
    assert cluster.nodes_of(ns)["a1"] == 1


def test_drain_wants_force_for_bare_pods_and_the_flag_for_emptydir(cluster, ns):
    cluster.kubectl("run", "bare", "-n", ns, "--image=nginx:1.27", "--overrides", '{"spec":{"nodeName":"a1"}}')
    cluster.apply(ns, deployment("scratch", 1, nodeSelector={"kubernetes.io/hostname": "a1"}, volumes=[{"name": "tmp", "emptyDir": {}}]))
    cluster.rollout(ns, "scratch")
    res = cluster.kubectl("drain", "a1", "--ignore-daemonsets", "--timeout=10s", check=False)
    assert res.returncode != 0
    assert f"cannot delete Pods that declare no controller (use --force to override): {ns}/bare" in res.stderr
    assert f"cannot delete Pods with local storage (use --delete-emptydir-data to override): {ns}/scratch-" in res.stderr
    ok = cluster.kubectl("drain", "a1", "--ignore-daemonsets", "--delete-emptydir-data", "--force", "--timeout=20s")
    assert "node/a1 drained" in ok.stdout
    assert "bare" not in {p["metadata"]["name"] for p in cluster.pods(ns)}


def test_pdb_status_for_int_and_percent_budgets_rounds_up(cluster, ns):
    cluster.apply(ns, deployment("nginx", 4))
    cluster.rollout(ns)
    cases = {"int4": ({"minAvailable": 4}, 4, 4, 0), "int3": ({"minAvailable": 3}, 4, 3, 1)}
    for name, (spec, expected, desired, allowed) in cases.items():
        cluster.apply(ns, pdb(name, "nginx", **spec))
        st = wait_until(
            lambda name=name: (s := cluster.get(ns, f"pdb/{name}")["status"]).get("observedGeneration") == 1 and s,
            10,
            message=f"status of {name}",
        )
        assert (st["expectedPods"], st["desiredHealthy"], st["currentHealthy"], st["disruptionsAllowed"]) == (expected, desired, 4, allowed)
        cond = st["conditions"][0]
        assert cond["type"] == "DisruptionAllowed"
        assert (cond["status"], cond["reason"]) == (("True", "SufficientPods") if allowed else ("False", "InsufficientPods"))
        cluster.kubectl("delete", "-n", ns, "pdb", name)
    # percentages are of the controllers' scale and round up: 30% of 4 -> 2
    for spec, desired in (
        ({"minAvailable": "30%"}, 2),
        ({"maxUnavailable": "30%"}, 2),
        ({"maxUnavailable": 1}, 3),
        ({"minAvailable": "100%"}, 4),
    ):
        cluster.apply(ns, pdb("pct", "nginx", **spec))
        st = wait_until(
            lambda desired=desired: (s := cluster.get(ns, "pdb/pct")["status"]).get("desiredHealthy") == desired and s,
            10,
            message=f"desiredHealthy {desired} for {spec}",
        )
        assert st["expectedPods"] == 4 and st["disruptionsAllowed"] == 4 - desired
        cluster.kubectl("delete", "-n", ns, "pdb", "pct")
    both = cluster.tmp / "both.json"
    both.write_text(pdb("both", "nginx", minAvailable=1, maxUnavailable=1))
    bad = cluster.kubectl("apply", "-n", ns, "-f", str(both), check=False)
    assert bad.returncode != 0 and "minAvailable and maxUnavailable cannot be both set" in bad.stderr
    cluster.apply(ns, pdb("shown", "nginx", minAvailable=3))
    wait_until(lambda: cluster.get(ns, "pdb/shown")["status"].get("expectedPods") == 4, 10)
    shown = cluster.kubectl("get", "-n", ns, "pdb", "shown", "-o", "yaml").stdout
    for line in (
        "currentHealthy: 4",
        "desiredHealthy: 3",
        "disruptionsAllowed: 1",
        "expectedPods: 4",
        "observedGeneration: 1",
        "reason: SufficientPods",
    ):
        assert f"  {line}\n" in shown
    table = cluster.kubectl("get", "-n", ns, "pdb").stdout.splitlines()
    assert table[0].split() == ["NAME", "MIN", "AVAILABLE", "MAX", "UNAVAILABLE", "ALLOWED", "DISRUPTIONS", "AGE"]
    assert table[1].split()[:4] == ["shown", "3", "N/A", "1"]


def _node_with_nginx(cluster: Workloads, ns: str) -> str:
    counts = cluster.nodes_of(ns, "app=nginx")
    return next(n for n in ("a1", "a2", "srv") if counts.get(n))


def test_drain_is_blocked_by_a_pdb_with_min_available_4_of_4(cluster, ns):
    cluster.apply(ns, deployment("nginx", 4))
    cluster.rollout(ns)
    cluster.apply(ns, pdb("nginx", "nginx", minAvailable=4))
    wait_until(lambda: cluster.get(ns, "pdb/nginx")["status"].get("currentHealthy") == 4, 10)
    node = _node_with_nginx(cluster, ns)
    victim = next(p for p in cluster.pods(ns) if p["spec"]["nodeName"] == node)
    before = {p["metadata"]["uid"] for p in cluster.pods(ns)}
    res = cluster.kubectl("drain", node, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=8s", check=False)
    assert res.returncode != 0
    assert f'error when evicting pods/"{victim["metadata"]["name"]}" -n "{ns}" (will retry after 5s): {VIOLATION}' in res.stderr
    assert "global timeout reached: 8s" in res.stderr
    assert {p["metadata"]["uid"] for p in cluster.pods(ns)} == before  # nothing evicted
    # the Status of the refusal, as the API server writes it
    status, _, body = cluster.server.request(
        "POST",
        f"/api/v1/namespaces/{ns}/pods/{victim['metadata']['name']}/eviction",
        headers={"Content-Type": "application/json"},
        body=json.dumps(
            {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": victim["metadata"]["name"], "namespace": ns}}
        ).encode(),
    )
    refusal = json.loads(body)
    assert status == 429
    assert (refusal["kind"], refusal["reason"], refusal["message"], refusal["code"]) == ("Status", "TooManyRequests", VIOLATION, 429)
    assert refusal["details"]["causes"] == [
        {"reason": "DisruptionBudget", "message": "The disruption budget nginx needs 4 healthy pods and has 4 currently"}
    ]


def test_drain_finishes_under_min_available_3_and_the_pods_move_to_other_nodes(cluster, ns):
    cluster.apply(ns, deployment("nginx", 4))
    cluster.rollout(ns)
    cluster.apply(ns, pdb("nginx", "nginx", minAvailable=3))
    wait_until(lambda: cluster.get(ns, "pdb/nginx")["status"].get("disruptionsAllowed") == 1, 10)
    node = _node_with_nginx(cluster, ns)
    res = cluster.kubectl("drain", node, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=60s", timeout=90)
    assert f"node/{node} drained" in res.stdout
    assert "evicted" in res.stdout
    cluster.rollout(ns)
    counts = cluster.nodes_of(ns)
    assert sum(counts.values()) == 4 and node not in counts
    assert cluster.ready_pods(ns) == 4
    st = cluster.get(ns, "pdb/nginx")["status"]
    assert (st["currentHealthy"], st["desiredHealthy"], st["disruptionsAllowed"]) == (4, 3, 1)


def test_deleting_a_deployment_removes_its_replicasets_and_pods_and_orphan_keeps_them(cluster, ns):
    cluster.apply(ns, deployment("nginx", 2))
    cluster.apply(ns, deployment("kept", 1))
    cluster.rollout(ns)
    cluster.rollout(ns, "kept")
    assert 'deployment.apps "nginx" deleted' in cluster.kubectl("delete", "-n", ns, "deploy/nginx").stdout
    wait_until(lambda: not cluster.pods(ns, "app=nginx"), 10, message="nginx pods gone")
    assert not [r for r in cluster.get(ns, "rs")["items"] if r["metadata"]["name"].startswith("nginx-")]
    cluster.kubectl("delete", "-n", ns, "deploy/kept", "--cascade=orphan")
    rs = cluster.get(ns, "rs")["items"]
    assert len(rs) == 1 and not rs[0]["metadata"].get("ownerReferences")
    assert len(cluster.pods(ns, "app=kept")) == 1


def test_deleting_a_namespace_deletes_its_workloads(cluster):
    cluster.kubectl("create", "namespace", "throwaway")
    cluster.apply("throwaway", deployment("nginx", 2))
    cluster.apply("throwaway", pdb("nginx", "nginx", minAvailable=1))
    cluster.rollout("throwaway")
    assert 'namespace "throwaway" deleted' in cluster.kubectl("delete", "namespace", "throwaway").stdout
    for what in ("pods", "rs", "deploy", "pdb"):
        assert "throwaway" not in cluster.kubectl("get", what, "-A").stdout
    assert cluster.kubectl("get", "namespace", "throwaway", check=False).returncode != 0


def test_pods_of_a_stopped_agent_turn_not_ready_with_their_node_and_recover(cluster, ns):
    cluster.apply(ns, deployment("nginx", 3, nodeSelector={"kubernetes.io/hostname": "a2"}))
    cluster.rollout(ns)
    agent = cluster.agents["a2"]
    agent.stop()
    wait_until(lambda: cluster.ready_pods(ns) == 0, 15, message="pods of a2 not Ready")
    assert "NotReady" in cluster.kubectl("get", "node", "a2").stdout
    assert all(p["status"]["phase"] == "Running" for p in cluster.pods(ns))
    wide = cluster.kubectl("get", "pods", "-n", ns).stdout
    assert wide.count("0/1") == 3
    d = cluster.get(ns, "deploy/nginx")["status"]
    assert d.get("readyReplicas", 0) == 0 and d["unavailableReplicas"] == 3
    restarted = StandinProcess(
        agent.root, agent.args, name="agent", env={"K3S_URL": cluster.server.url, "K3S_TOKEN": cluster.server.token, "K3S_NODE_NAME": "a2"}
    )
    cluster.agents["a2"] = restarted
    restarted.wait_ready()
    wait_until(lambda: cluster.ready_pods(ns) == 3, 15, message="pods Ready again")
    cluster.rollout(ns)


def test_kubectl_sees_the_new_kinds_in_discovery(cluster):
    res = cluster.kubectl("api-resources", "-o", "wide").stdout
    for line in ("deployments ", "replicasets ", "poddisruptionbudgets "):
        assert line in res
    v1 = json.loads(cluster.kubectl("get", "--raw", "/api/v1").stdout)
    ev = next(r for r in v1["resources"] if r["name"] == "pods/eviction")
    assert (ev["group"], ev["version"], ev["kind"], ev["verbs"]) == ("policy", "v1", "Eviction", ["create"])
    apps = json.loads(cluster.kubectl("get", "--raw", "/apis/apps/v1").stdout)
    scale = next(r for r in apps["resources"] if r["name"] == "deployments/scale")
    assert (scale["group"], scale["version"], scale["kind"]) == ("autoscaling", "v1", "Scale")
