"""`k3s server` of the stand-in: certificates, token, kubeconfig and the Kubernetes API as a
real kubectl sees it."""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import ssl
import stat
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from standin_helpers import TEST_SECRET, VERSION, assert_no_secret, node_ready_status, start_server


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_server_notifies_systemd_ready_once_its_node_is_registered(server):
    assert any(b"READY=1" in m for m in server.proc.notify.messages)
    assert server.node("standin-server") is not None


def test_node_token_is_k10_ca_hash_and_configured_secret(server):
    ca_bytes = (server.tls / "server-ca.crt").read_bytes()
    want = f"K10{hashlib.sha256(ca_bytes).hexdigest()}::server:{TEST_SECRET}"
    for name in ("node-token", "token"):
        path = server.server_dir / name
        assert path.read_text().strip() == want
        assert mode(path) == 0o600
    status, _, body = server.request("GET", "/cacerts", client_cert=False)
    assert status == 200 and body == ca_bytes


def test_tls_files_exist_keys_are_0600_and_cas_are_ecdsa_p256(server):
    for name in ("server-ca", "client-ca", "serving-kube-apiserver", "client-admin"):
        assert (server.tls / f"{name}.crt").exists()
        assert mode(server.tls / f"{name}.key") == 0o600
    for ca in ("server-ca", "client-ca"):
        cert = x509.load_pem_x509_certificate((server.tls / f"{ca}.crt").read_bytes())
        assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
        assert cert.public_key().curve.name == "secp256r1"
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    admin = x509.load_pem_x509_certificate((server.tls / "client-admin.crt").read_bytes())
    assert admin.subject.rfc4514_string() in ("CN=system:admin,O=system:masters", "O=system:masters,CN=system:admin")
    client_ca = x509.load_pem_x509_certificate((server.tls / "client-ca.crt").read_bytes())
    assert admin.issuer == client_ca.subject


def serving_sans(server) -> set[str]:
    cert = x509.load_pem_x509_certificate((server.tls / "serving-kube-apiserver.crt").read_bytes())
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(ext.get_values_for_type(x509.DNSName)) | {str(ip) for ip in ext.get_values_for_type(x509.IPAddress)}


def test_serving_cert_sans_cover_defaults_host_addresses_and_tls_san(server):
    sans = serving_sans(server)
    for want in (
        "127.0.0.1",
        "localhost",
        "::1",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "10.43.0.1",
        "standin.test",
        "cli.standin.test",
    ):  # tls-san from config.yaml and CLI
        assert want in sans
    assert "not-a-san.example" not in sans and "10.99.99.99" not in sans


@pytest.mark.parametrize(
    "name,ok", [("127.0.0.1", True), ("localhost", True), ("standin.test", True), ("not-a-san.example", False), ("10.99.99.99", False)]
)
def test_tls_verification_succeeds_only_for_names_in_sans(server, name, ok):
    ctx = server.ssl_context(client_cert=False)
    raw = __import__("socket").create_connection(("127.0.0.1", server.port), timeout=5)
    try:
        if ok:
            with ctx.wrap_socket(raw, server_hostname=name) as tls:
                assert tls.version()
        else:
            with pytest.raises(ssl.SSLCertVerificationError):
                ctx.wrap_socket(raw, server_hostname=name)
    finally:
        raw.close()


def test_kubectl_fails_tls_for_a_server_name_outside_the_sans(server):
    bad = server.kubectl("--tls-server-name", "not-a-san.example", "get", "nodes", check=False)
    assert bad.returncode != 0
    assert "x509" in bad.stderr or "certificate" in bad.stderr
    good = server.kubectl("--tls-server-name", "standin.test", "get", "nodes", "-o", "name")
    assert "node/standin-server" in good.stdout


def test_kubeconfig_is_0600_with_default_names_and_admin_credentials(server):
    assert mode(server.kubeconfig) == 0o600
    cfg = json.loads(server.kubectl("config", "view", "--raw", "-o", "json").stdout)
    assert cfg["current-context"] == "default"
    assert [c["name"] for c in cfg["clusters"]] == ["default"]
    assert [c["name"] for c in cfg["contexts"]] == ["default"]
    assert [u["name"] for u in cfg["users"]] == ["default"]
    assert cfg["contexts"][0]["context"] == {"cluster": "default", "user": "default"}
    assert cfg["clusters"][0]["cluster"]["server"] == f"https://127.0.0.1:{server.port}"
    import base64

    ca = base64.b64decode(cfg["clusters"][0]["cluster"]["certificate-authority-data"])
    assert ca == (server.tls / "server-ca.crt").read_bytes()
    user = cfg["users"][0]["user"]
    assert base64.b64decode(user["client-certificate-data"]) == (server.tls / "client-admin.crt").read_bytes()
    assert "client-key-data" in user


def test_anonymous_endpoints_answer_without_a_client_cert(server):
    status, ctype, body = server.request("GET", "/version", client_cert=False)
    assert status == 200 and "json" in ctype
    info = json.loads(body)
    assert info["gitVersion"] == VERSION and info["major"] == "1" and info["minor"] == "31"
    assert info["platform"].startswith("linux/")
    for path, want in (("/readyz", b"ok"), ("/livez", b"ok"), ("/healthz", b"ok"), ("/ping", b"pong")):
        assert server.request("GET", path, client_cert=False)[::2] == (200, want)


def test_api_without_client_cert_is_401_with_a_status_object(server):
    status, ctype, body = server.request("GET", "/api/v1/nodes", client_cert=False)
    assert status == 401 and "json" in ctype
    obj = json.loads(body)
    assert obj["kind"] == "Status" and obj["reason"] == "Unauthorized" and obj["code"] == 401
    status, _, _ = server.request("GET", "/api/v1/nodes")
    assert status == 200


def test_supervisor_endpoints_need_the_token(server):
    import base64

    bad = {"Authorization": "Basic " + base64.b64encode(b"node:wrong").decode()}
    assert server.request("GET", "/v1-k3s/readyz", client_cert=False, headers=bad)[0] == 401
    good = {"Authorization": "Basic " + base64.b64encode(f"node:{TEST_SECRET}".encode()).decode()}
    assert server.request("GET", "/v1-k3s/readyz", client_cert=False, headers=good)[0] == 200
    # only servers (user "server") may fetch the cluster CA keys
    assert server.request("GET", "/v1-k3s/standin/bootstrap", client_cert=False, headers=good)[0] == 403


def test_kubectl_get_nodes_prints_the_server_node_ready_with_table_columns(server):
    out = server.kubectl("get", "nodes").stdout.splitlines()
    assert out[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    row = next(line.split() for line in out[1:] if line.startswith("standin-server "))
    assert row[1] == "Ready"
    assert row[2] == "control-plane,master"
    assert re.fullmatch(r"\d+[smhd].*", row[3])
    assert row[4] == VERSION
    wide = server.kubectl("get", "nodes", "-o", "wide").stdout.splitlines()[0].split()
    assert wide[5:] == ["INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"]


def test_server_node_labels_status_and_cli_overrides_config(server):
    node = server.node("standin-server")
    assert server.node("from-config") is None  # --node-name beats node-name: in config.yaml
    labels = node["metadata"]["labels"]
    for k, v in {
        "kubernetes.io/hostname": "standin-server",
        "kubernetes.io/os": "linux",
        "beta.kubernetes.io/os": "linux",
        "node.kubernetes.io/instance-type": "k3s",
        "node-role.kubernetes.io/control-plane": "true",
        "node-role.kubernetes.io/master": "true",
        "standin-test/role": "server",
    }.items():
        assert labels[k] == v
    assert labels["kubernetes.io/arch"] == labels["beta.kubernetes.io/arch"]
    assert "node-role.kubernetes.io/etcd" not in labels  # no cluster-init
    info = node["status"]["nodeInfo"]
    assert info["kubeletVersion"] == VERSION
    assert info["containerRuntimeVersion"] == "containerd://stand-in"
    assert info["operatingSystem"] == "linux" and info["osImage"] and info["kernelVersion"]
    assert re.fullmatch(r"[0-9a-f]{32}", info["machineID"])
    types = {a["type"] for a in node["status"]["addresses"]}
    assert {"InternalIP", "Hostname"} <= types
    assert re.fullmatch(r"10\.42\.\d+\.0/24", node["spec"]["podCIDR"])
    ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"][0]
    assert (ready["status"], ready["reason"]) == ("True", "KubeletReady")
    assert ready["lastHeartbeatTime"]
    args = json.loads(node["metadata"]["annotations"]["k3s.io/node-args"])
    assert args[0] == "server" and "--flannel-iface" in args
    assert TEST_SECRET not in json.dumps(node)


def test_unknown_config_key_is_skipped_with_a_warning_by_the_server(server):
    assert "Unknown flag --not-a-k3s-flag found in config.yaml, skipping" in server.proc.log()


def test_get_nodes_json_and_label_selectors(server):
    server.kubectl("label", "node", "standin-server", "standin-test/tier=gold", "--overwrite")
    doc = server.kubectl_json("get", "nodes")
    assert doc["kind"] == "List" or doc["kind"] == "NodeList"
    assert "standin-server" in [i["metadata"]["name"] for i in doc["items"]]

    def names(selector: str) -> set[str]:
        out = server.kubectl("get", "nodes", "-l", selector, "-o", "name").stdout.split()
        return {n.split("/", 1)[1] for n in out}

    assert "standin-server" in names("standin-test/tier=gold")
    assert "standin-server" in names("standin-test/tier==gold")
    assert "standin-server" not in names("standin-test/tier!=gold")
    assert "standin-server" in names("standin-test/tier")
    assert "standin-server" not in names("!standin-test/tier")
    assert "standin-server" in names("standin-test/tier in (silver,gold)")
    assert "standin-server" not in names("standin-test/tier notin (silver,gold)")
    assert "standin-server" in names("node-role.kubernetes.io/control-plane,standin-test/tier in (gold),!nope")
    assert "standin-server" not in names("standin-test/tier=gold,nope")
    by_field = server.kubectl("get", "nodes", "--field-selector", "metadata.name=standin-server", "-o", "name").stdout.split()
    assert by_field == ["node/standin-server"]
    assert server.kubectl("get", "nodes", "--field-selector", "metadata.name=nope", "-o", "name").stdout.strip() == ""
    status, _, body = server.request("GET", "/api/v1/nodes?labelSelector=" + "standin-test%2Ftier%20in%20(gold)")
    assert status == 200 and json.loads(body)["kind"] == "NodeList"


def test_discovery_documents_for_kubectl(server):
    api = json.loads(server.kubectl("get", "--raw", "/api").stdout)
    assert api["kind"] == "APIVersions" and api["versions"] == ["v1"]
    v1 = json.loads(server.kubectl("get", "--raw", "/api/v1").stdout)
    assert v1["kind"] == "APIResourceList" and v1["groupVersion"] == "v1"
    byname = {r["name"]: r for r in v1["resources"]}
    assert byname["nodes"]["kind"] == "Node" and byname["nodes"]["namespaced"] is False
    assert "no" in byname["nodes"]["shortNames"] and "nodes/status" in byname
    assert byname["namespaces"]["shortNames"] == ["ns"]
    apis = json.loads(server.kubectl("get", "--raw", "/apis").stdout)
    assert apis["kind"] == "APIGroupList"
    for group in apis["groups"]:
        gv = group["preferredVersion"]["groupVersion"]
        doc = json.loads(server.kubectl("get", "--raw", f"/apis/{gv}").stdout)
        assert doc["kind"] == "APIResourceList" and doc["groupVersion"] == gv
    resources = server.kubectl("api-resources", "--no-headers").stdout
    assert re.search(r"^nodes\s+no\s+v1\s+false\s+Node", resources, re.M)


def test_missing_node_is_a_404_status(server):
    res = server.kubectl("get", "node", "no-such-node", check=False)
    assert res.returncode != 0 and "NotFound" in res.stderr
    status, _, body = server.request("GET", "/api/v1/nodes/no-such-node")
    obj = json.loads(body)
    assert status == 404 and obj["kind"] == "Status" and obj["reason"] == "NotFound"
    assert obj["details"] == {"name": "no-such-node", "group": "", "kind": "nodes"}


def test_cordon_and_uncordon_set_and_clear_unschedulable(server):
    server.kubectl("cordon", "standin-server")
    try:
        node = server.node("standin-server")
        assert node["spec"]["unschedulable"] is True
        assert any(t["key"] == "node.kubernetes.io/unschedulable" for t in node["spec"]["taints"])
        row = [line.split() for line in server.kubectl("get", "nodes").stdout.splitlines() if line.startswith("standin-server ")][0]
        assert row[1] == "Ready,SchedulingDisabled"
    finally:
        server.kubectl("uncordon", "standin-server")
    node = server.node("standin-server")
    assert not node["spec"].get("unschedulable")
    assert not any(t["key"] == "node.kubernetes.io/unschedulable" for t in node["spec"].get("taints", []))


def test_label_annotate_and_patch_types(server):
    server.kubectl("label", "node", "standin-server", "patched=one")
    server.kubectl("annotate", "node", "standin-server", "standin-test/note=hello")
    server.kubectl("patch", "node", "standin-server", "--type", "merge", "-p", '{"metadata":{"labels":{"patched":"two"}}}')
    assert server.node("standin-server")["metadata"]["labels"]["patched"] == "two"
    server.kubectl(
        "patch", "node", "standin-server", "--type", "json", "-p", '[{"op":"replace","path":"/metadata/labels/patched","value":"three"}]'
    )
    server.kubectl(
        "patch",
        "node",
        "standin-server",
        "-p",  # strategic merge (default)
        '{"metadata":{"annotations":{"standin-test/other":"x"}}}',
    )
    node = server.node("standin-server")
    assert node["metadata"]["labels"]["patched"] == "three"
    assert node["metadata"]["annotations"]["standin-test/note"] == "hello"
    assert node["metadata"]["annotations"]["standin-test/other"] == "x"
    # PUT (kubectl replace) keeps status, updates labels. A heartbeat may bump the
    # resourceVersion between GET and PUT: 409, as in Kubernetes; a client then reads again.
    for _ in range(5):
        node = server.node("standin-server")
        node["metadata"]["labels"]["replaced"] = "yes"
        node["status"]["nodeInfo"]["kubeletVersion"] = "v0.0.0"
        put = server.request(
            "PUT", "/api/v1/nodes/standin-server", body=json.dumps(node).encode(), headers={"Content-Type": "application/json"}
        )
        if put[0] != 409:
            break
    assert put[0] == 200
    node = server.node("standin-server")
    assert node["metadata"]["labels"]["replaced"] == "yes"
    assert node["status"]["nodeInfo"]["kubeletVersion"] == VERSION
    server.kubectl("label", "node", "standin-server", "patched-", "replaced-")
    assert "patched" not in server.node("standin-server")["metadata"]["labels"]
    bad = server.kubectl("label", "node", "standin-server", "bad key=x", check=False)
    assert bad.returncode != 0
    # a stale resourceVersion is a 409 Conflict
    body = json.dumps({"metadata": {"resourceVersion": "1", "labels": {"x": "y"}}}).encode()
    status, _, resp = server.request(
        "PATCH", "/api/v1/nodes/standin-server", body=body, headers={"Content-Type": "application/merge-patch+json"}
    )
    assert status == 409 and json.loads(resp)["reason"] == "Conflict"


def test_namespaces_are_precreated_and_can_be_created_and_deleted(server):
    names = server.kubectl("get", "namespaces", "-o", "name").stdout.split()
    for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
        assert f"namespace/{ns}" in names
    table = server.kubectl("get", "ns").stdout.splitlines()
    assert table[0].split() == ["NAME", "STATUS", "AGE"]
    server.kubectl("create", "namespace", "standin-test-ns")
    ns = server.kubectl_json("get", "ns", "standin-test-ns")
    assert ns["status"]["phase"] == "Active" and ns["metadata"]["uid"]
    assert int(ns["metadata"]["resourceVersion"]) > 0 and ns["metadata"]["creationTimestamp"]
    again = server.kubectl("create", "namespace", "standin-test-ns", check=False)
    assert again.returncode != 0 and "AlreadyExists" in again.stderr
    server.kubectl("delete", "namespace", "standin-test-ns")
    assert server.kubectl("get", "ns", "standin-test-ns", check=False).returncode != 0
    refused = server.kubectl("delete", "namespace", "kube-system", check=False)
    assert refused.returncode != 0 and "Forbidden" in refused.stderr


def test_watch_streams_changes_to_nodes(server):
    ctx = server.ssl_context()
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=ctx, timeout=10)
    rv = server.kubectl_json("get", "nodes")["metadata"]["resourceVersion"]
    conn.request("GET", f"/api/v1/nodes?watch=true&fieldSelector=metadata.name%3Dstandin-server&resourceVersion={rv}&timeoutSeconds=5")
    resp = conn.getresponse()
    assert resp.status == 200
    threading.Timer(0.3, lambda: server.kubectl("label", "node", "standin-server", "watched=yes", "--overwrite")).start()
    seen = None
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        line = resp.readline()
        if not line:
            break
        event = json.loads(line)
        assert event["object"]["metadata"]["name"] == "standin-server"
        if event["object"]["metadata"].get("labels", {}).get("watched") == "yes":
            seen = event
            break
    conn.close()
    assert seen and seen["type"] == "MODIFIED"
    wait = server.kubectl("wait", "--for=condition=Ready", "node/standin-server", "--timeout=10s")
    assert "condition met" in wait.stdout


def test_no_secret_in_server_output(server):
    assert_no_secret(server.proc.log(), TEST_SECRET, (server.root / "etc/rancher/node/password").read_text().strip())


def test_state_persists_and_serving_cert_follows_tls_san_changes(tmp_path):
    """Restart keeps CAs, the generated token secret and the objects; a new tls-san
    regenerates the serving certificate; write-kubeconfig/-mode are honoured."""
    root, cache = tmp_path / "srv", tmp_path / "cache"
    kube, data = "/etc/standin-test/admin.yaml", "/srv/k3s-data"
    args = [
        "--node-name",
        "restart-server",
        "--write-kubeconfig",
        kube,
        "--write-kubeconfig-mode",
        "0644",
        "--data-dir",
        data,
        "--cluster-init",
        "--node-ip",
        "192.0.2.77",
    ]
    srv = start_server(root, cache, args, data_dir=data)
    try:
        kc = root / kube.lstrip("/")
        assert mode(kc) == 0o644
        assert not (root / "etc/rancher/k3s/k3s.yaml").exists()
        assert not (root / "var/lib/rancher/k3s").exists()  # --data-dir honoured
        node = json.loads(srv.kubectl("get", "node", "restart-server", "-o", "json", kubeconfig=kc).stdout)
        assert node["metadata"]["labels"]["node-role.kubernetes.io/etcd"] == "true"
        assert {"type": "InternalIP", "address": "192.0.2.77"} in node["status"]["addresses"]
        assert "192.0.2.77" in serving_sans(srv)
        token = srv.token
        assert re.fullmatch(r"K10[0-9a-f]{64}::server:[0-9a-f]{32}", token)  # random secret
        srv.kubectl("label", "node", "restart-server", "kept=yes", kubeconfig=kc)
        ca_before = (srv.tls / "server-ca.crt").read_bytes()
        serving_before = (srv.tls / "serving-kube-apiserver.crt").read_bytes()
    finally:
        assert srv.proc.stop() == 0  # SIGTERM -> clean exit
    srv = start_server(root, cache, [*args, "--tls-san", "added.standin.test"], port=srv.port, data_dir=data)
    try:
        assert srv.token == token
        assert (srv.tls / "server-ca.crt").read_bytes() == ca_before
        assert (srv.tls / "serving-kube-apiserver.crt").read_bytes() != serving_before
        assert "added.standin.test" in serving_sans(srv)
        node = json.loads(srv.kubectl("get", "node", "restart-server", "-o", "json", kubeconfig=kc).stdout)
        assert node["metadata"]["labels"]["kept"] == "yes"
        assert node_ready_status(node) == "True"
        serving_after = (srv.tls / "serving-kube-apiserver.crt").read_bytes()
    finally:
        srv.proc.stop()
    srv = start_server(root, cache, [*args, "--tls-san", "added.standin.test"], port=srv.port, data_dir=data)
    try:  # same SANs -> the serving certificate is kept
        assert (srv.tls / "serving-kube-apiserver.crt").read_bytes() == serving_after
    finally:
        srv.proc.stop()


def test_configured_full_token_with_wrong_ca_hash_is_fatal(tmp_path, processes):
    p = processes(
        tmp_path / "srv",
        ["server", "--https-listen-port", "0", "--bind-address", "127.0.0.1", "--token", "K10" + "0" * 64 + "::server:abcd"],
    )
    assert p.wait_exit() == 1
    assert "token CA hash does not match the Cluster CA certificate hash" in p.log()
