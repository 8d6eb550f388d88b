"""The kubeadm stand-in's stacked control plane, three "hosts" on this machine (127.0.3.1-3, an
API port each, one etcd peer port on each address): `init --upload-certs` stores the shared
certificates encrypted in the kubeadm-certs Secret; `join --control-plane` refuses a wrong key
and an expired Secret with kubeadm's words, otherwise downloads them, becomes an etcd member and
serves the API itself; the API answers while two of three members are up and not with one;
`kubeadm reset` removes the member. Tests run in order on one cluster."""

from __future__ import annotations

import base64
import json
import os
import subprocess

import pytest
from kubeadm_helpers import KubeadmHost, init_config, join_config
from standin_helpers import free_port, require_prerequisites, wait_until

INIT_FILE = "/etc/kubernetes/provisioner/kubeadm-init.yaml"
JOIN_FILE = "/etc/kubernetes/provisioner/kubeadm-join.yaml"
ADDRESSES = ("127.0.3.1", "127.0.3.2", "127.0.3.3")
KEY = "5f" * 32
QUICK = {"ETCD_STANDIN_HEARTBEAT_SECONDS": "0.3"}


class HA:
    def __init__(self, base) -> None:
        self.ports = [free_port() for _ in ADDRESSES]
        env = {**QUICK, "K3S_STANDIN_ETCD_PEER_PORT": str(free_port())}  # one port, on each host's address
        self.hosts = [KubeadmHost(base / f"cp{i + 1}", f"cp{i + 1}", env=env) for i in range(len(ADDRESSES))]
        self.endpoint = f"{ADDRESSES[0]}:{self.ports[0]}"

    def url(self, i: int) -> str:
        return f"https://{ADDRESSES[i]}:{self.ports[i]}"

    def join(self, i: int, key: str = KEY) -> object:
        host = self.hosts[i]
        made = self.hosts[0].kubeadm("token", "create", "--ttl", "15m0s", "--print-join-command")
        assert made.returncode == 0, made.stderr
        words = made.stdout.split()
        token, ca_hash = words[words.index("--token") + 1], words[words.index("--discovery-token-ca-cert-hash") + 1]
        config = join_config(host.name, self.endpoint, token, ca_hash).replace(
            "kubeletExtraArgs: []", f"kubeletExtraArgs: [{{name: node-ip, value: {ADDRESSES[i]}}}]"
        ) + (
            "controlPlane:\n"
            "  localAPIEndpoint:\n"
            f"    advertiseAddress: {ADDRESSES[i]}\n"
            f"    bindPort: {self.ports[i]}\n"
            f'  certificateKey: "{key}"\n'
        )
        host.write(JOIN_FILE, config, 0o600)
        return host.kubeadm("join", "--config", JOIN_FILE, timeout=180)

    def members(self, i: int) -> dict[str, str]:
        return json.loads(self.hosts[i].path("/var/lib/etcd/standin/member/member.json").read_text())["members"]

    def nodes_via(self, i: int) -> object:
        return self.hosts[0].kubectl("--server", self.url(i), "get", "nodes", "-o", "name", check=False, timeout=30)


@pytest.fixture(scope="module")
def ha(tmp_path_factory):
    require_prerequisites()
    if os.geteuid() != 0:
        pytest.skip("kubeadm stand-in tests need root (kubeadm's IsPrivilegedUser check, mknod)")
    c = HA(tmp_path_factory.mktemp("kubeadm-ha"))
    config = init_config("cp1", c.ports[0], address=ADDRESSES[0], node_ip=ADDRESSES[0]).replace(
        "  extraArgs:\n    - name: bind-address\n      value: 127.0.0.1\n", ""
    )
    config = config.replace("kind: InitConfiguration\n", f'kind: InitConfiguration\ncertificateKey: "{KEY}"\n', 1)
    c.hosts[0].write(INIT_FILE, config, 0o600)
    c.init = c.hosts[0].kubeadm("init", "--config", INIT_FILE, "--upload-certs", "--skip-certificate-key-print", timeout=180)
    yield c
    for h in c.hosts:
        h.stop_kubelet()


def test_init_with_upload_certs_stores_the_shared_certificates_encrypted_with_the_key(ha: HA) -> None:
    assert ha.init.returncode == 0, ha.init.stdout + ha.init.stderr
    assert KEY not in ha.init.stdout + ha.init.stderr
    assert '[upload-certs] Storing the certificates in Secret "kubeadm-certs" in the "kube-system" Namespace' in ha.init.stdout
    secret = json.loads(ha.hosts[0].kubectl("-n", "kube-system", "get", "secret", "kubeadm-certs", "-o", "json").stdout)
    assert set(secret["data"]) == {
        "ca.crt",
        "ca.key",
        "front-proxy-ca.crt",
        "front-proxy-ca.key",
        "sa.pub",
        "sa.key",
        "etcd-ca.crt",
        "etcd-ca.key",
    }
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    blob = base64.b64decode(secret["data"]["ca.key"])
    plain = AESGCM(bytes.fromhex(KEY)).decrypt(blob[:12], blob[12:], None)
    assert plain == ha.hosts[0].path("/etc/kubernetes/pki/ca.key").read_bytes()
    owner = secret["metadata"]["ownerReferences"][0]["name"]
    token = json.loads(ha.hosts[0].kubectl("-n", "kube-system", "get", "secret", owner, "-o", "json").stdout)
    assert base64.b64decode(token["data"]["description"]).decode() == "Proxy for managing TTL for the kubeadm-certs secret"


def test_a_control_plane_join_with_a_wrong_key_is_refused_with_kubeadms_words(ha: HA) -> None:
    res = ha.join(1, key="6a" * 32)
    assert res.returncode == 1
    assert (
        "error execution phase control-plane-prepare/download-certs: error downloading certs: "
        "error decoding secret data with provided key: cipher: message authentication failed"
    ) in res.stderr
    assert not ha.hosts[1].path("/etc/kubernetes/pki/ca.key").exists()


def test_control_planes_join_one_after_the_other_and_each_serves_the_api_itself(ha: HA) -> None:
    for i in (1, 2):
        res = ha.join(i)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "This node has joined the cluster and a new control plane instance was created" in res.stdout
        host = ha.hosts[i]
        assert host.path("/etc/kubernetes/pki/ca.crt").read_bytes() == ha.hosts[0].path("/etc/kubernetes/pki/ca.crt").read_bytes()
        assert f"server: https://{ha.endpoint}" in host.path("/etc/kubernetes/admin.conf").read_text()
    wait_until(lambda: all(len(ha.members(i)) == 3 for i in range(3)), 20, message="three etcd members everywhere")
    for i in range(3):
        listed = wait_until(
            lambda i=i: set(ha.nodes_via(i).stdout.split()) == {"node/cp1", "node/cp2", "node/cp3"}, 20, message=f"nodes on cp{i + 1}"
        )
        assert listed
    node = json.loads(ha.hosts[0].kubectl("get", "node", "cp3", "-o", "json").stdout)
    assert "node-role.kubernetes.io/control-plane" in node["metadata"]["labels"]


def test_the_api_answers_with_one_member_down_and_says_etcd_timed_out_with_two(ha: HA) -> None:
    ha.hosts[2].stop_kubelet()
    wait_until(lambda: ha.nodes_via(0).returncode == 0, 10, message="cp1 answers with cp3 down")
    ha.hosts[0].kubectl("create", "namespace", "written-with-two-of-three")
    ha.hosts[1].stop_kubelet()
    lost = wait_until(lambda: ha.nodes_via(0).returncode != 0 and ha.nodes_via(0), 15, message="cp1 refuses without quorum")
    assert "etcdserver: request timed out" in lost.stderr
    started = subprocess.run([str(ha.hosts[1].bin / "systemctl"), "start", "kubelet"], env=ha.hosts[1].env(), timeout=30)
    assert started.returncode == 0
    wait_until(lambda: ha.nodes_via(0).returncode == 0, 30, message="quorum back with cp2 started")
    assert "written-with-two-of-three" in ha.hosts[0].kubectl("--server", ha.url(1), "get", "namespaces", "-o", "name").stdout


def test_reset_removes_the_etcd_member_and_an_expired_secret_refuses_the_next_join(ha: HA) -> None:
    res = ha.hosts[2].kubeadm("reset", "-f")
    assert res.returncode == 0, res.stdout + res.stderr
    wait_until(lambda: set(ha.members(0)) == {"cp1", "cp2"}, 10, message="cp3's member removed")
    secret = json.loads(ha.hosts[0].kubectl("-n", "kube-system", "get", "secret", "kubeadm-certs", "-o", "json").stdout)
    ha.hosts[0].kubectl("-n", "kube-system", "delete", "secret", secret["metadata"]["ownerReferences"][0]["name"])
    wait_until(
        lambda: ha.hosts[0].kubectl("-n", "kube-system", "get", "secret", "kubeadm-certs", check=False).returncode != 0,
        15,
        message="kubeadm-certs collected with its token",
    )
    res = ha.join(2)
    assert res.returncode == 1
    assert 'Secret "kubeadm-certs" was not found in the "kube-system" Namespace. This Secret might have expired.' in res.stderr


def test_a_control_plane_join_needs_a_control_plane_endpoint_in_the_cluster() -> None:
    from provisioner_lab.standin.kubeadm.base import KubeadmError
    from provisioner_lab.standin.kubeadm.controlplane import check_ready_for_control_plane

    with pytest.raises(KubeadmError) as raised:
        check_ready_for_control_plane({"clusterName": "kubernetes"}, True)
    assert "unable to add a new control plane instance to a cluster that doesn't have a stable controlPlaneEndpoint address" in str(
        raised.value
    )
    assert raised.value.phase == "preflight"
    check_ready_for_control_plane({"controlPlaneEndpoint": "10.0.0.1:6443"}, True)
