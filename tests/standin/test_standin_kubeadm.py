"""The kubeadm and kubelet stand-ins (provisioner/lab/standin/kubeadm, kubelet) doing on this
machine what the provisioner does on lab hosts: `kubeadm init --config`, `token create
--print-join-command`, `join --config`, `kubectl apply -f` of a Flannel-like manifest, node
readiness -- with a fake systemctl that runs the kubelet stand-in (see kubeadm_helpers.py) and
real kubectl binaries. One control plane is shared by the tests of this module, in order."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import shutil
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from kubeadm_helpers import FLANNEL_MANIFEST, K8S_VERSION, KubeadmHost, init_config, join_config, parse_join_command
from standin_helpers import SYSTEM_PYTHON, free_port, node_ready_status, require_prerequisites, wait_until

INIT_FILE = "/etc/kubernetes/provisioner/kubeadm-init.yaml"
JOIN_FILE = "/etc/kubernetes/provisioner/kubeadm-join.yaml"
JOIN_RE = re.compile(
    r"^kubeadm join (\S+) --token ([a-z0-9]{6}\.[a-z0-9]{16}) "
    r"--discovery-token-ca-cert-hash (sha256:[0-9a-f]{64}) $"
)


def spki_hash(ca_pem: bytes) -> str:
    cert = x509.load_pem_x509_certificate(ca_pem)
    der = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def load_yaml(path: Path):
    """YAML via Debian's python3-yaml (the stand-ins' own dependency; the venv may lack PyYAML)."""
    res = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(res.stdout)


def debian_kubectl() -> str | None:
    """Debian bookworm's kubectl 1.20 (package kubernetes-client), the one lab hosts have:
    $STANDIN_TEST_KUBECTL_120, an extracted copy, or extracted here from `apt-get download`."""
    for c in (os.environ.get("STANDIN_TEST_KUBECTL_120"), "/tmp/kc120/usr/bin/kubectl"):
        if c and os.access(c, os.X_OK):
            return c
    cache = Path.home() / ".cache/provisioner-standin-tests/kubernetes-client"
    exe = cache / "usr/bin/kubectl"
    if exe.exists():
        return str(exe)
    if not shutil.which("apt-get"):
        return None
    cache.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["apt-get", "download", "kubernetes-client"], cwd=cache, capture_output=True, text=True, timeout=300)
    debs = sorted(cache.glob("kubernetes-client_*.deb"))
    if res.returncode != 0 or not debs:
        return None
    subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(cache)], check=True)
    return str(exe) if exe.exists() else None


class Cluster:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.hosts: list[KubeadmHost] = []
        self.port = free_port()
        self.cp = self.host("cp", "cp1")
        self.init = None

    def host(self, dirname: str, name: str, **kw) -> KubeadmHost:
        h = KubeadmHost(self.base / dirname, name, **kw)
        self.hosts.append(h)
        return h

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def ca_pem(self) -> bytes:
        return self.cp.path("/etc/kubernetes/pki/ca.crt").read_bytes()

    def https(self, path: str, *, client_cert: bool = True, headers: dict | None = None):
        ctx = ssl.create_default_context(cadata=self.ca_pem().decode())
        if client_cert:
            ctx.load_cert_chain(
                str(self.cp.path("/etc/kubernetes/pki/apiserver-kubelet-client.crt")),
                str(self.cp.path("/etc/kubernetes/pki/apiserver-kubelet-client.key")),
            )
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx, timeout=10)
        try:
            conn.request("GET", path, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.getheader("Content-Type", ""), resp.read()
        finally:
            conn.close()

    def join_command(self, ttl: str = "15m0s") -> tuple[str, str, str]:
        res = self.cp.kubeadm("token", "create", "--ttl", ttl, "--print-join-command")
        assert res.returncode == 0, res.stderr
        m = JOIN_RE.match(res.stdout.rstrip("\n"))
        assert m, repr(res.stdout)
        return m.group(1), m.group(2), m.group(3)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    require_prerequisites()
    if os.geteuid() != 0:
        pytest.skip("kubeadm stand-in tests need root (kubeadm's IsPrivilegedUser check, mknod)")
    c = Cluster(tmp_path_factory.mktemp("kubeadm"))
    c.cp.write(INIT_FILE, init_config("cp1", c.port), 0o600)
    c.init = c.cp.kubeadm("init", "--config", INIT_FILE)
    yield c
    for h in c.hosts:
        h.stop_kubelet()


def test_versions_say_stand_in(tmp_path):
    h = KubeadmHost(tmp_path / "v", "v")
    assert h.kubeadm("version", "-o", "short").stdout == K8S_VERSION + "\n"
    long = h.kubeadm("version").stdout
    assert 'GitVersion:"v1.31.4"' in long and "stand-in" in long
    assert json.loads(h.kubeadm("version", "-o", "json").stdout)["clientVersion"]["minor"] == "31"
    out = h.kubelet("--version").stdout
    assert out.startswith("Kubernetes v1.31.4") and "stand-in" in out


def test_kubelet_crash_loops_until_kubeadm_configured_it(tmp_path):
    h = KubeadmHost(tmp_path / "k", "k")
    flags = [
        "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf",
        "--kubeconfig=/etc/kubernetes/kubelet.conf",
        "--config=/var/lib/kubelet/config.yaml",
    ]
    res = h.kubelet(*flags)
    assert res.returncode == 1 and "failed to load kubelet config file" in res.stderr
    h.write("/var/lib/kubelet/config.yaml", "kind: KubeletConfiguration\n")
    res = h.kubelet(*flags)
    assert res.returncode == 1
    assert "unable to load bootstrap kubeconfig: stat /etc/kubernetes/bootstrap-kubelet.conf" in res.stderr
    assert h.kubelet("--no-such-flag").returncode == 1


def test_preflight_failures_are_reported_like_kubeadm(tmp_path):
    h = KubeadmHost(tmp_path / "pf", "pf", containerd=False, sysctls="0")
    h.write("/proc/meminfo", "MemTotal:        1024000 kB\nMemFree:         512000 kB\n")
    h.write("/proc/swaps", "Filename\tType\tSize\tUsed\tPriority\n/swapfile file\t1024\t0\t-2\n")
    h.write(INIT_FILE, init_config("pf", free_port()), 0o600)
    res = h.kubeadm("init", "--config", INIT_FILE, preexec=lambda: os.sched_setaffinity(0, {0}))
    assert res.returncode == 1
    err = res.stderr
    assert err.startswith("error execution phase preflight: [preflight] Some fatal errors occurred:\n")
    for line in (
        "\t[ERROR NumCPU]: the number of available CPUs 1 is less than the required 2\n",
        "\t[ERROR Mem]: the system RAM (1000 MB) is less than the minimum 1700 MB\n",
        "\t[ERROR FileContent--proc-sys-net-bridge-bridge-nf-call-iptables]: "
        "/proc/sys/net/bridge/bridge-nf-call-iptables contents are not set to 1\n",
        "\t[ERROR FileContent--proc-sys-net-ipv4-ip_forward]: /proc/sys/net/ipv4/ip_forward contents are not set to 1\n",
        "\t[ERROR CRI]: container runtime is not running",
        "[preflight] If you know what you are doing, you can make a check non-fatal with `--ignore-preflight-errors=...`\n",
        "To see the stack trace of this error execute with --v=5 or higher\n",
    ):
        assert line in err, err
    assert "[WARNING Swap]" in res.stdout  # a warning in kubeadm 1.31; the kubelet refuses swap
    assert not h.path("/etc/kubernetes/pki").exists()
    assert "restart kubelet" not in h.systemctl_calls()


def test_preflight_refuses_a_host_without_conntrack_or_iptables_and_warns_for_the_others(tmp_path):
    """kubeadm 1.31 (the stand-ins' version): conntrack and iptables are mandatory InPathChecks,
    socat/ethtool/ebtables only warn (kubernetes/kubernetes cmd/kubeadm/app/preflight/checks_linux.go)."""
    h = KubeadmHost(tmp_path / "tools", "tools", missing=("conntrack", "iptables", "socat", "ethtool", "ebtables"))
    h.write(INIT_FILE, init_config("tools", free_port()), 0o600)
    res = h.kubeadm("init", "--config", INIT_FILE)
    assert res.returncode == 1
    assert "\t[ERROR FileExisting-conntrack]: conntrack not found in system path\n" in res.stderr
    assert "\t[ERROR FileExisting-iptables]: iptables not found in system path\n" in res.stderr
    for tool in ("socat", "ethtool", "ebtables"):
        assert f"\t[WARNING FileExisting-{tool}]: {tool} not found in system path\n" in res.stdout
        assert f"[ERROR FileExisting-{tool}]" not in res.stderr
    assert not h.path("/etc/kubernetes/pki").exists()


def test_config_images_pull_prints_the_control_plane_images_of_the_configured_version(tmp_path):
    h = KubeadmHost(tmp_path / "img", "img")
    h.write(INIT_FILE, init_config("img", free_port()), 0o600)
    res = h.kubeadm("config", "images", "pull", "--config", INIT_FILE)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "[config/images] Pulled registry.k8s.io/kube-apiserver:v1.31.4" in lines
    assert any(line.startswith("[config/images] Pulled registry.k8s.io/etcd:") for line in lines)
    assert len([line for line in lines if line.startswith("[config/images] Pulled ")]) == 7
    listed = h.kubeadm("config", "images", "list", "--kubernetes-version", "v1.32.0").stdout.splitlines()
    assert "registry.k8s.io/kube-scheduler:v1.32.0" in listed
    no_runtime = KubeadmHost(tmp_path / "img2", "img2", containerd=False)
    no_runtime.write(INIT_FILE, init_config("img2", free_port()), 0o600)
    res = no_runtime.kubeadm("config", "images", "pull", "--config", INIT_FILE)
    assert res.returncode == 1 and "failed to create new CRI image service" in res.stderr


def test_conntrack_is_mandatory_before_1_32_only():
    from provisioner_lab.standin.kubeadm.preflight import exec_checks

    assert ("conntrack", True) in exec_checks("v1.31.4")
    assert "conntrack" not in dict(exec_checks("v1.32.0"))
    assert dict(exec_checks("v1.32.0"))["iptables"] is True and dict(exec_checks("v1.32.0"))["socat"] is False


def test_config_shape_must_match_its_api_version(tmp_path):
    h = KubeadmHost(tmp_path / "cfg", "cfg")
    text = init_config("cfg", free_port(), version="v1beta4").replace("kubeletExtraArgs: []", "kubeletExtraArgs: {node-ip: 127.0.0.1}")
    h.write(INIT_FILE, text, 0o600)
    res = h.kubeadm("init", "--config", INIT_FILE)
    assert res.returncode == 1
    assert "cannot unmarshal object into Go struct field" in res.stderr
    h.write(INIT_FILE, text.replace("v1beta4", "v1beta2"), 0o600)
    res = h.kubeadm("init", "--config", INIT_FILE)
    assert res.returncode == 1 and "uses an old API spec" in res.stderr


def test_init_writes_pki_kubeconfigs_manifests_and_kubelet_files(cluster):
    res = cluster.init
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}\n{cluster.cp.kubelet_log()}"
    cp = cluster.cp
    assert "Your Kubernetes control-plane has initialized successfully!" in res.stdout
    assert "restart kubelet" in cp.systemctl_calls()
    for name in ("ca", "apiserver", "apiserver-kubelet-client", "front-proxy-ca", "front-proxy-client", "etcd/ca", "etcd/server", "sa"):
        key = cp.path(f"/etc/kubernetes/pki/{name}.key")
        assert key.exists() and (key.stat().st_mode & 0o777) == 0o600, name
    ca = x509.load_pem_x509_certificate(cluster.ca_pem())
    assert ca.subject.rfc4514_string() == "CN=kubernetes"
    api = x509.load_pem_x509_certificate(cp.path("/etc/kubernetes/pki/apiserver.crt").read_bytes())
    san = api.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = {str(i) for i in san.get_values_for_type(x509.IPAddress)}
    dns = set(san.get_values_for_type(x509.DNSName))
    assert {"127.0.0.1", "10.96.0.1", "192.0.2.10"} <= ips
    assert {
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "cp1",
        "api.standin.test",
    } <= dns
    admin_path = cp.path("/etc/kubernetes/admin.conf")
    assert (admin_path.stat().st_mode & 0o777) == 0o600
    admin = load_yaml(admin_path)
    assert admin["clusters"][0]["name"] == "kubernetes"
    assert admin["clusters"][0]["cluster"]["server"] == f"https://{cluster.endpoint}"
    assert admin["users"][0]["name"] == "kubernetes-admin"
    assert admin["contexts"][0]["name"] == admin["current-context"] == "kubernetes-admin@kubernetes"
    cert = x509.load_pem_x509_certificate(base64.b64decode(admin["users"][0]["user"]["client-certificate-data"]))
    assert "CN=kubernetes-admin" in cert.subject.rfc4514_string()
    assert cp.path("/etc/kubernetes/kubelet.conf").exists()
    assert cp.path("/etc/kubernetes/manifests/kube-apiserver.yaml").exists()
    flags = cp.path("/var/lib/kubelet/kubeadm-flags.env").read_text()
    assert "--container-runtime-endpoint=unix:///run/containerd/containerd.sock" in flags
    assert "--hostname-override=cp1" in flags
    assert load_yaml(cp.path("/var/lib/kubelet/config.yaml"))["cgroupDriver"] == "systemd"
    # the join command printed by init pins this CA
    _, _, printed_hash = parse_join_command(res.stdout[res.stdout.index("kubeadm join") :])
    assert printed_hash == spki_hash(cluster.ca_pem())


def test_control_plane_node_is_marked_and_not_ready_without_cni(cluster):
    node = wait_until(lambda: cluster.cp.node("cp1"), 20, message="node cp1")
    labels = node["metadata"]["labels"]
    assert labels["node-role.kubernetes.io/control-plane"] == ""
    assert labels["kubernetes.io/hostname"] == "cp1"
    taints = {(t["key"], t["effect"]) for t in node["spec"].get("taints", [])}
    assert ("node-role.kubernetes.io/control-plane", "NoSchedule") in taints
    assert ("node.kubernetes.io/not-ready", "NoSchedule") in taints
    ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"][0]
    assert (ready["status"], ready["reason"]) == ("False", "KubeletNotReady")
    assert "cni plugin not initialized" in ready["message"]
    assert node["status"]["nodeInfo"]["kubeletVersion"] == K8S_VERSION
    assert node["spec"]["podCIDR"].startswith("10.244.")


def test_readyz_version_and_openapi_v2_protobuf(cluster):
    assert cluster.cp.kubectl("get", "--raw=/readyz").stdout == "ok"
    status, _, body = cluster.https("/version")
    assert status == 200 and json.loads(body)["gitVersion"] == K8S_VERSION
    status, ctype, body = cluster.https("/openapi/v2", headers={"Accept": "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"})
    assert status == 200 and body.startswith(b"\x0a\x032.0")  # field 1 "swagger" = "2.0"
    assert "@" not in ctype
    status, _, body = cluster.https("/openapi/v2")
    assert status == 200 and json.loads(body)["swagger"] == "2.0"
    # no k3s endpoints on a kubeadm API server
    assert cluster.https("/cacerts", client_cert=False)[0] == 404


def test_cluster_info_is_readable_anonymously_and_signed_for_each_token(cluster):
    status, _, body = cluster.https("/api/v1/namespaces/kube-public/configmaps/cluster-info", client_cert=False)
    assert status == 200
    data = json.loads(body)["data"]
    assert f"https://{cluster.endpoint}" in data["kubeconfig"]
    assert any(k.startswith("jws-kubeconfig-") for k in data)
    status, _, _ = cluster.https("/api/v1/namespaces/kube-system/configmaps/kubeadm-config", client_cert=False)
    assert status == 401


def test_token_create_prints_join_command_with_the_ca_public_key_hash(cluster):
    endpoint, token, ca_hash = cluster.join_command()
    assert endpoint == cluster.endpoint
    assert ca_hash == spki_hash(cluster.ca_pem())
    tid = token.split(".")[0]
    sec = json.loads(cluster.cp.kubectl("get", "secret", "-n", "kube-system", f"bootstrap-token-{tid}", "-o", "json").stdout)
    assert sec["type"] == "bootstrap.kubernetes.io/token"
    exp = base64.b64decode(sec["data"]["expiration"]).decode()
    left = time.mktime(time.strptime(exp, "%Y-%m-%dT%H:%M:%SZ")) - time.mktime(time.gmtime())
    assert 13 * 60 < left <= 15 * 60 + 5
    listed = cluster.cp.kubeadm("token", "list").stdout
    assert token in listed


def test_join_refuses_a_ca_hash_that_is_not_pinned(cluster):
    endpoint, token, _ = cluster.join_command()
    w = cluster.host("badhash", "badhash")
    wrong = "sha256:" + "0" * 64
    w.write(JOIN_FILE, join_config("badhash", endpoint, token, wrong), 0o600)
    res = w.kubeadm("join", "--config", JOIN_FILE)
    assert res.returncode == 1
    assert (
        "error execution phase preflight: couldn't validate the identity of the API Server: "
        "cluster CA found in cluster-info ConfigMap is invalid: none of the public keys "
        f'"{spki_hash(cluster.ca_pem())}" are pinned'
    ) in res.stderr
    assert token.split(".")[1] not in res.stdout + res.stderr
    assert not w.path("/etc/kubernetes/kubelet.conf").exists()


def test_join_refuses_unknown_and_expired_tokens(cluster):
    endpoint, _, ca_hash = cluster.join_command()
    w = cluster.host("badtoken", "badtoken")
    w.write(JOIN_FILE, join_config("badtoken", endpoint, "abcdef.0123456789abcdef", ca_hash), 0o600)
    res = w.kubeadm("join", "--config", JOIN_FILE)
    assert res.returncode == 1
    assert 'token id "abcdef" is invalid for this cluster or it has expired' in res.stderr
    _, short, _ = cluster.join_command(ttl="1s")
    time.sleep(2.5)
    w.write(JOIN_FILE, join_config("badtoken", endpoint, short, ca_hash), 0o600)
    res = w.kubeadm("join", "--config", JOIN_FILE)
    assert res.returncode == 1
    assert f'token id "{short.split(".")[0]}" is invalid for this cluster or it has expired' in res.stderr
    assert not w.path("/etc/kubernetes/kubelet.conf").exists()


def test_join_with_the_printed_command_registers_the_worker(cluster):
    endpoint, token, ca_hash = cluster.join_command()
    w = cluster.host("worker1", "worker1")
    w.write("/etc/default/kubelet", "KUBELET_EXTRA_ARGS=--node-ip=127.0.0.2\n")
    w.write(JOIN_FILE, join_config("worker1", endpoint, token, ca_hash, version="v1beta3"), 0o600)
    res = w.kubeadm("join", "--config", JOIN_FILE)
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}\n{w.kubelet_log()}"
    assert "This node has joined the cluster" in res.stdout
    assert token.split(".")[1] not in res.stdout + res.stderr
    assert w.path("/etc/kubernetes/pki/ca.crt").read_bytes() == cluster.ca_pem()
    kc = load_yaml(w.path("/etc/kubernetes/kubelet.conf"))
    assert kc["clusters"][0]["cluster"]["server"] == f"https://{endpoint}"
    pem = w.path("/var/lib/kubelet/pki/kubelet-client-current.pem").read_bytes()
    cert = x509.load_pem_x509_certificate(pem)
    assert cert.subject.rfc4514_string() in ("CN=system:node:worker1,O=system:nodes", "O=system:nodes,CN=system:node:worker1")
    node = cluster.cp.node("worker1")
    assert node is not None
    assert [a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"] == ["127.0.0.2"]
    assert "node-role.kubernetes.io/control-plane" not in node["metadata"]["labels"]
    assert node_ready_status(node) == "False"


def test_nodes_turn_ready_after_applying_a_flannel_manifest_twice(cluster, tmp_path):
    manifest = tmp_path / "kube-flannel.yaml"
    manifest.write_text(FLANNEL_MANIFEST.read_text().replace("@SHA@", "1" * 64))
    old = debian_kubectl()
    first = cluster.cp.kubectl("apply", "-f", str(manifest), kubectl=old)
    for obj in (
        "namespace/kube-flannel",
        "serviceaccount/flannel",
        "clusterrole.rbac.authorization.k8s.io/flannel",
        "clusterrolebinding.rbac.authorization.k8s.io/flannel",
        "configmap/kube-flannel-cfg",
        "daemonset.apps/kube-flannel-ds",
    ):
        assert f"{obj} created" in first.stdout, first.stdout
    again = cluster.cp.kubectl("apply", "-f", str(manifest))  # the other kubectl
    assert again.stdout.count("unchanged") == 6, again.stdout
    if old:
        assert cluster.cp.kubectl("apply", "-f", str(manifest), kubectl=old).stdout.count("unchanged") == 6
    for name in ("cp1", "worker1"):
        wait_until(
            lambda n=name: node_ready_status(cluster.cp.node(n)) == "True", 15, message=f"{name} Ready after the CNI DaemonSet exists"
        )
    taints = {t["key"] for t in cluster.cp.node("worker1")["spec"].get("taints", [])}
    assert "node.kubernetes.io/not-ready" not in taints
    ds = json.loads(cluster.cp.kubectl("get", "daemonset", "kube-flannel-ds", "-n", "kube-flannel", "-o", "json").stdout)
    assert ds["metadata"]["annotations"]["provisioner.io/manifest-sha256"] == "1" * 64
    manifest.write_text(FLANNEL_MANIFEST.read_text().replace("@SHA@", "2" * 64))
    res = cluster.cp.kubectl("apply", "-f", str(manifest), kubectl=old)
    assert "daemonset.apps/kube-flannel-ds configured" in res.stdout
    ds = json.loads(cluster.cp.kubectl("get", "daemonset", "kube-flannel-ds", "-n", "kube-flannel", "-o", "json").stdout)
    assert ds["metadata"]["annotations"]["provisioner.io/manifest-sha256"] == "2" * 64


def test_debian_kubectl_120_was_used(cluster):
    """The Flannel test above applies with Debian's kubectl 1.20 (the one lab hosts have) when it
    is found; this proves it was: that kubectl is a 1.20 client and it works against the stand-in."""
    old = debian_kubectl()
    if old is None:
        pytest.skip("Debian's kubectl 1.20 (kubernetes-client) could not be found or downloaded")
    res = subprocess.run([old, "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    client = json.loads(res.stdout)["clientVersion"]
    assert (client["major"], client["minor"]) == ("1", "20"), client
    nodes = cluster.cp.kubectl("get", "nodes", "-o", "name", kubectl=old).stdout.split()
    assert "node/cp1" in nodes
    ds = cluster.cp.kubectl("get", "daemonset", "-n", "kube-flannel", "-o", "name", kubectl=old).stdout
    assert "daemonset.apps/kube-flannel-ds" in ds  # applied by the Flannel test with this kubectl


NGINX = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: nginx, namespace: smoke}
spec:
  replicas: 2
  selector: {matchLabels: {app: nginx}}
  template:
    metadata: {labels: {app: nginx}}
    spec:
      containers: [{name: nginx, image: "nginx:1.27"}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: nginx, namespace: smoke}
spec:
  minAvailable: 2
  selector: {matchLabels: {app: nginx}}
"""


def test_flannel_runs_on_every_node_and_nginx_keeps_off_the_tainted_control_plane(cluster, tmp_path):
    """Workloads in kubeadm mode: the Flannel DaemonSet (tolerating NoSchedule) gets a pod on
    both nodes; the control-plane taint keeps nginx on the worker, so a PDB of minAvailable 2
    blocks draining it -- with Debian's kubectl 1.20 too (policy/v1beta1 evictions)."""
    ds = wait_until(
        lambda: (
            (d := json.loads(cluster.cp.kubectl("get", "daemonset", "kube-flannel-ds", "-n", "kube-flannel", "-o", "json").stdout))[
                "status"
            ].get("numberReady")
            == 2
            and d
        ),
        15,
        message="Flannel ready on both nodes",
    )
    assert ds["status"]["desiredNumberScheduled"] == 2
    pods = json.loads(cluster.cp.kubectl("get", "pods", "-n", "kube-flannel", "-o", "json").stdout)
    assert sorted(p["spec"]["nodeName"] for p in pods["items"]) == ["cp1", "worker1"]
    assert {p["metadata"]["ownerReferences"][0]["kind"] for p in pods["items"]} == {"DaemonSet"}
    manifest = tmp_path / "nginx.yaml"
    manifest.write_text(NGINX)
    cluster.cp.kubectl("create", "namespace", "smoke")
    try:
        cluster.cp.kubectl("apply", "-f", str(manifest))
        cluster.cp.kubectl("rollout", "status", "-n", "smoke", "deploy/nginx", "--timeout=30s")
        pods = json.loads(cluster.cp.kubectl("get", "pods", "-n", "smoke", "-o", "json").stdout)
        assert [p["spec"]["nodeName"] for p in pods["items"]] == ["worker1", "worker1"]
        old = debian_kubectl()
        for exe in [None] + ([old] if old else []):
            res = cluster.cp.kubectl(
                "drain", "worker1", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=7s", kubectl=exe, check=False
            )
            assert res.returncode != 0
            assert ("(will retry after 5s): Cannot evict pod as it would violate the pod's disruption budget.") in res.stderr, res.stderr
            assert "ignoring DaemonSet-managed Pods: kube-flannel/kube-flannel-ds-" in res.stderr
        after = json.loads(cluster.cp.kubectl("get", "pods", "-n", "smoke", "-o", "json").stdout)
        assert {p["metadata"]["uid"] for p in after["items"]} == {p["metadata"]["uid"] for p in pods["items"]}
    finally:
        cluster.cp.kubectl("uncordon", "worker1", check=False)
        cluster.cp.kubectl("delete", "namespace", "smoke", check=False)
    assert "smoke" not in cluster.cp.kubectl("get", "pods", "-A").stdout


def test_a_second_host_cannot_join_under_a_ready_nodes_name(cluster):
    endpoint, token, ca_hash = cluster.join_command()
    w = cluster.host("dup", "dup")
    w.write(JOIN_FILE, join_config("worker1", endpoint, token, ca_hash), 0o600)
    res = w.kubeadm("join", "--config", JOIN_FILE)
    assert res.returncode == 1
    assert (
        'error execution phase kubelet-start: a Node with name "worker1" and status "Ready" already exists in the cluster'
    ) in res.stderr


def test_init_twice_is_refused_by_preflight(cluster):
    res = cluster.cp.kubeadm("init", "--config", INIT_FILE)
    assert res.returncode == 1
    assert f"[ERROR Port-{cluster.port}]: Port {cluster.port} is in use" in res.stderr
    assert (
        "[ERROR FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml]: /etc/kubernetes/manifests/kube-apiserver.yaml already exists"
    ) in res.stderr


def test_stopped_kubelet_goes_not_ready_and_a_restart_repairs_it(cluster):
    w = next(h for h in cluster.hosts if h.name == "worker1")
    w.stop_kubelet()
    wait_until(lambda: node_ready_status(cluster.cp.node("worker1")) == "Unknown", 15, message="worker1 Unknown after its kubelet stopped")
    subprocess.run(["systemctl", "restart", "kubelet"], env=w.env(), check=True, timeout=30)
    wait_until(lambda: node_ready_status(cluster.cp.node("worker1")) == "True", 15, message="worker1 Ready after systemctl restart kubelet")


def test_a_deleted_node_stays_deleted_until_its_kubelet_restarts(cluster):
    # The upstream kubelet registers once per process (registrationCompleted in
    # pkg/kubelet/kubelet_node_status.go; kubernetes/kubernetes#71398, #115761): its heartbeats
    # then fail with "not found", and only a restart registers the Node again.
    w = next(h for h in cluster.hosts if h.name == "worker1")
    cluster.cp.kubectl("delete", "node", "worker1")
    wait_until(lambda: 'nodes "worker1" not found' in w.kubelet_log(), 15, message="a heartbeat of worker1 after the deletion")
    assert cluster.cp.node("worker1") is None
    subprocess.run(["systemctl", "restart", "kubelet"], env=w.env(), check=True, timeout=30)
    wait_until(lambda: node_ready_status(cluster.cp.node("worker1")) == "True", 15, message="worker1 registered again after a restart")


def test_kubelet_restart_on_the_control_plane_keeps_the_cluster_state(cluster):
    subprocess.run(["systemctl", "restart", "kubelet"], env=cluster.cp.env(), check=True, timeout=30)
    wait_until(
        lambda: cluster.cp.kubectl("get", "--raw=/readyz", check=False).stdout == "ok", 20, message="API back after a kubelet restart"
    )
    ds = cluster.cp.kubectl("get", "daemonset", "-n", "kube-flannel", "-o", "name").stdout
    assert "daemonset.apps/kube-flannel-ds" in ds
    wait_until(lambda: node_ready_status(cluster.cp.node("cp1")) == "True", 15, message="cp1 Ready")


def test_reset_empties_what_kubeadm_made_and_leaves_cni_config_and_the_directories(cluster):
    # Last user of the cluster: reset the worker, then the control plane, as upstream does it
    # (cmd/kubeadm/app/cmd/phases/reset/cleanupnode.go and removeetcdmember.go).
    w = next(h for h in cluster.hosts if h.name == "worker1")
    w.write("/etc/cni/net.d/10-flannel.conflist", "{}")
    for host in (w, cluster.cp):
        res = host.kubeadm("reset", "-f")
        assert res.returncode == 0, res.stderr
        assert host.kubelet_pid() is None, host.name
        for gone in ("/etc/kubernetes/kubelet.conf", "/etc/kubernetes/admin.conf", "/etc/kubernetes/super-admin.conf"):
            assert not host.path(gone).exists(), (host.name, gone)
        for emptied in ("/var/lib/kubelet", "/etc/kubernetes/pki", "/etc/kubernetes/manifests"):
            assert not list(host.path(emptied).glob("*")), (host.name, emptied)
        assert host.path("/var/lib/kubelet").is_dir() and host.path("/etc/kubernetes/pki").is_dir()  # emptied, not removed
        assert "The reset process does not clean CNI configuration. To do so, you must remove /etc/cni/net.d" in res.stdout
    assert w.path("/etc/cni/net.d/10-flannel.conflist").exists()
    assert cluster.cp.path("/var/lib/etcd").is_dir() and not any(cluster.cp.path("/var/lib/etcd").iterdir())
    res = cluster.cp.kubeadm("init", "--config", INIT_FILE)  # the DirAvailable--var-lib-etcd check passes again
    assert res.returncode == 0, res.stdout + res.stderr


def test_v1beta3_init_config_with_map_extra_args(tmp_path):
    h = KubeadmHost(tmp_path / "b3", "b3")
    try:
        port = free_port()
        h.write(INIT_FILE, init_config("b3cp", port, version="v1beta3", node_ip="127.0.0.3"), 0o600)
        res = h.kubeadm("init", "--config", INIT_FILE)
        assert res.returncode == 0, f"{res.stdout}\n{res.stderr}\n{h.kubelet_log()}"
        assert "--node-ip=127.0.0.3" in h.path("/var/lib/kubelet/kubeadm-flags.env").read_text()
        node = h.node("b3cp")
        assert [a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"] == ["127.0.0.3"]
        assert "bind-address=127.0.0.1" in h.path("/etc/kubernetes/manifests/kube-apiserver.yaml").read_text()
    finally:
        h.stop_kubelet()


def test_kubelet_exits_without_the_container_runtime_socket(tmp_path):
    h = KubeadmHost(tmp_path / "nocri", "nocri", containerd=False)
    h.write("/var/lib/kubelet/config.yaml", "kind: KubeletConfiguration\n")
    h.write("/etc/kubernetes/kubelet.conf", "apiVersion: v1\nkind: Config\n")
    res = h.kubelet("--kubeconfig=/etc/kubernetes/kubelet.conf", "--config=/var/lib/kubelet/config.yaml")
    assert res.returncode == 1
    assert "validate CRI v1 runtime API" in res.stderr


def test_k3s_mode_serves_the_new_kinds_and_openapi_but_keeps_its_readiness(tmp_path):
    """The API additions are shared: a k3s stand-in server takes the Flannel-like manifest
    too, and its nodes stay Ready without it (k3s brings its own flannel)."""
    from standin_helpers import start_server

    root = tmp_path / "k3s"
    (root / "etc/rancher/k3s").mkdir(parents=True)
    (root / "etc/rancher/k3s/config.yaml").write_text("token: k3s-mode-secret\n")
    srv = start_server(root, tmp_path / "cache", ["--node-name", "k3s-node"])
    try:
        assert node_ready_status(srv.node("k3s-node")) == "True"
        manifest = tmp_path / "f.yaml"
        manifest.write_text(FLANNEL_MANIFEST.read_text().replace("@SHA@", "3" * 64))
        out = srv.kubectl("apply", "-f", str(manifest)).stdout
        assert out.count(" created") == 6, out
        assert srv.kubectl("apply", "-f", str(manifest)).stdout.count("unchanged") == 6
        status, _, body = srv.request(
            "GET", "/openapi/v2", headers={"Accept": "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"}
        )
        assert status == 200 and body.startswith(b"\x0a\x032.0")
        assert (
            srv.request("GET", "/api/v1/namespaces/kube-public/configmaps/cluster-info", client_cert=False)[0] == 404
        )  # readable anonymously, just absent
        assert node_ready_status(srv.node("k3s-node")) == "True"
        assert "k3s.io/hostname" in srv.node("k3s-node")["metadata"]["annotations"]
    finally:
        srv.proc.stop()
