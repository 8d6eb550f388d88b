"""Kubeconfig rewrite, safe writing, merging, and the TLS check against a loopback server."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
import ssl
import stat
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from provisioner import kubeconfig
from provisioner.errors import KubeconfigError
from tests.unit.fakes import ADMIN_KUBECONFIG

KUBEADM_ADMIN = """apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: Q0EK
    server: https://10.0.0.5:6443
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: kubernetes-admin
  name: kubernetes-admin@kubernetes
current-context: kubernetes-admin@kubernetes
kind: Config
preferences: {}
users:
- name: kubernetes-admin
  user:
    client-certificate-data: Q0VSVAo=
    client-key-data: S0VZCg==
"""

EXISTING = """# my clusters - keep this comment
apiVersion: v1
kind: Config
current-context: work
clusters:
- name: work
  cluster:
    server: https://work.example:6443
- name: homelab
  cluster:
    server: https://old-address:6443
contexts:
- name: work   # the important one
  context: {cluster: work, user: work}
- name: homelab
  context: {cluster: homelab, user: homelab}
users:
- name: work
  user: {token: abc}
- name: homelab
  user: {token: stale}
"""


def test_k3s_admin_config_is_pointed_at_the_endpoint_and_named_after_the_cluster() -> None:
    config = kubeconfig.rewrite(ADMIN_KUBECONFIG, cluster_name="homelab", server="https://192.0.2.10:6443")
    assert config["clusters"][0]["name"] == "homelab"
    assert config["clusters"][0]["cluster"]["server"] == "https://192.0.2.10:6443"
    assert config["clusters"][0]["cluster"]["certificate-authority-data"] == "Q0EK"
    assert config["users"][0]["name"] == "homelab"
    assert config["contexts"][0] == {"name": "homelab", "context": {"cluster": "homelab", "user": "homelab"}}
    assert config["current-context"] == "homelab"
    assert "default" not in kubeconfig.dump(config)
    assert "127.0.0.1" not in kubeconfig.dump(config)


def test_kubeadm_admin_config_is_renamed_the_same_way_with_a_custom_context() -> None:
    config = kubeconfig.rewrite(KUBEADM_ADMIN, cluster_name="lab", server="https://[fd00::1]:6443", context_name="lab-admin")
    assert config["contexts"][0] == {"name": "lab-admin", "context": {"cluster": "lab", "user": "lab"}}
    assert config["current-context"] == "lab-admin"
    assert config["clusters"][0]["cluster"]["server"] == "https://[fd00::1]:6443"


def test_admin_config_with_two_clusters_is_refused() -> None:
    doubled = ADMIN_KUBECONFIG.replace("clusters:\n", "clusters:\n- cluster: {server: x}\n  name: other\n", 1)
    with pytest.raises(KubeconfigError, match="has 2 clusters; expected 1"):
        kubeconfig.rewrite(doubled, cluster_name="a", server="https://x:6443")


def test_written_file_is_0600_and_an_unchanged_rewrite_leaves_it_alone(tmp_path: Path) -> None:
    path = tmp_path / "homelab.kubeconfig"
    config = kubeconfig.rewrite(ADMIN_KUBECONFIG, cluster_name="homelab", server="https://192.0.2.10:6443")
    assert kubeconfig.write_file(path, config).changed
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    before = path.stat().st_mtime_ns
    assert not kubeconfig.write_file(path, config).changed
    assert path.stat().st_mtime_ns == before
    assert [p.name for p in tmp_path.iterdir()] == ["homelab.kubeconfig"]  # no temp file left


def test_atomic_write_never_shows_a_partial_file_and_fixes_a_loose_mode(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text("old")
    os.chmod(path, 0o644)
    kubeconfig.write_atomic(path, "new content")
    assert path.read_text() == "new content"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_merge_keeps_other_clusters_comments_order_and_current_context(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(EXISTING)
    new = kubeconfig.rewrite(ADMIN_KUBECONFIG, cluster_name="homelab", server="https://192.0.2.10:6443")
    result = kubeconfig.merge_file(path, new, set_current=False, replace=True)  # homelab pointed elsewhere
    assert result.changed and result.backup is not None
    assert result.backup.read_text() == EXISTING
    assert stat.S_IMODE(result.backup.stat().st_mode) == 0o600
    merged = kubeconfig.parse(path.read_text())
    text = path.read_text()
    assert text.startswith("# my clusters - keep this comment")
    assert "# the important one" in text
    assert merged["current-context"] == "work"
    assert [c["name"] for c in merged["clusters"]] == ["work", "homelab"]
    assert merged["clusters"][1]["cluster"]["server"] == "https://192.0.2.10:6443"
    assert merged["users"][0]["user"]["token"] == "abc"
    assert "stale" not in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_merge_again_changes_nothing_and_makes_no_backup(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(EXISTING)
    new = kubeconfig.rewrite(ADMIN_KUBECONFIG, cluster_name="homelab", server="https://192.0.2.10:6443")
    kubeconfig.merge_file(path, new, set_current=False, replace=True)
    second = kubeconfig.merge_file(path, new, set_current=False)  # a rerun: same server and CA
    assert not second.changed and second.backup is None
    assert len(list(tmp_path.glob("config.backup-*"))) == 1


def test_merge_with_set_current_switches_the_context(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(EXISTING)
    new = kubeconfig.rewrite(ADMIN_KUBECONFIG, cluster_name="lab", server="https://192.0.2.10:6443")
    kubeconfig.merge_file(path, new, set_current=True)
    merged = kubeconfig.parse(path.read_text())
    assert merged["current-context"] == "lab"
    assert [c["name"] for c in merged["contexts"]] == ["work", "homelab", "lab"]


def test_merge_into_a_missing_file_creates_it_with_the_cluster_as_current(tmp_path: Path) -> None:
    path = tmp_path / ".kube" / "config"
    new = kubeconfig.rewrite(ADMIN_KUBECONFIG, cluster_name="lab", server="https://192.0.2.10:6443")
    result = kubeconfig.merge_file(path, new, set_current=False)
    assert result.changed and result.backup is None
    merged = kubeconfig.parse(path.read_text())
    assert merged["current-context"] == "lab"
    assert merged["kind"] == "Config"


@pytest.mark.parametrize(
    "corrupt",
    ["clusters: [unclosed\n", "- a list\n", "clusters: {name: x}\n", "users:\n- user: {token: x}\n"],
    ids=["bad yaml", "not a mapping", "clusters not a list", "entry without name"],
)
def test_corrupt_kubeconfig_is_refused_and_left_untouched(tmp_path: Path, corrupt: str) -> None:
    path = tmp_path / "config"
    path.write_text(corrupt)
    new = kubeconfig.rewrite(ADMIN_KUBECONFIG, cluster_name="lab", server="https://192.0.2.10:6443")
    with pytest.raises(KubeconfigError):
        kubeconfig.merge_file(path, new, set_current=False)
    assert path.read_text() == corrupt
    assert list(tmp_path.iterdir()) == [path]


def test_default_path_follows_the_kubeconfig_variable_as_kubectl_does(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path}/a::{tmp_path}/b:{tmp_path}/a")
    assert kubeconfig.kubeconfig_files() == [tmp_path / "a", tmp_path / "b"]  # empty and repeated entries dropped
    assert kubeconfig.default_path() == tmp_path / "b"  # no file exists yet: kubectl creates the last one
    (tmp_path / "b").write_text("")
    assert kubeconfig.default_path() == tmp_path / "b"  # the first file that exists
    (tmp_path / "a").write_text("")
    assert kubeconfig.default_path() == tmp_path / "a"
    assert kubeconfig.kubeconfig_files(tmp_path / "c") == [tmp_path / "c"]  # --out: that file alone
    monkeypatch.delenv("KUBECONFIG")
    assert kubeconfig.default_path() == Path("~/.kube/config").expanduser()


# --- the TLS check against a real HTTPS server on loopback ----------------------------------------


def _pem(obj: object) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())  # type: ignore[attr-defined]


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer_cert: x509.Certificate | None, issuer_key: ec.EllipticCurvePrivateKey,
          *, ca: bool = False, sans: list[x509.GeneralName] | None = None, client: bool = False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_cert.subject if issuer_cert else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if issuer_cert is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    if client:
        builder = builder.add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


class _Version(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        cert = self.connection.getpeercert()  # type: ignore[attr-defined]
        body = json.dumps({"gitVersion": "v1.31.4+k3s1"}).encode()
        self.send_response(200 if cert else 401)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api(tmp_path: Path) -> Iterator[callable]:  # type: ignore[valid-type]
    """Start a loopback HTTPS server whose certificate covers the given SANs; returns a kubeconfig."""
    servers: list[HTTPServer] = []

    def start(sans: list[x509.GeneralName]) -> dict:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _cert("test-ca", ca_key, None, ca_key, ca=True)
        srv_key = ec.generate_private_key(ec.SECP256R1())
        srv = _cert("apiserver", srv_key, ca, ca_key, sans=sans)
        cli_key = ec.generate_private_key(ec.SECP256R1())
        cli = _cert("system:admin", cli_key, ca, ca_key, client=True)
        (tmp_path / "srv.pem").write_bytes(_pem(srv) + _pem(srv_key))
        (tmp_path / "ca.pem").write_bytes(_pem(ca))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tmp_path / "srv.pem")
        context.load_verify_locations(tmp_path / "ca.pem")
        context.verify_mode = ssl.CERT_OPTIONAL
        server = HTTPServer(("127.0.0.1", 0), _Version)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
        text = ADMIN_KUBECONFIG.replace("Q0EK", b64(_pem(ca))).replace("Q0VSVAo=", b64(_pem(cli))).replace("S0VZCg==", b64(_pem(cli_key)))
        return kubeconfig.rewrite(text, cluster_name="t", server=f"https://127.0.0.1:{server.server_address[1]}")

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_check_succeeds_when_the_certificate_covers_the_address(api) -> None:  # type: ignore[no-untyped-def]
    config = api([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    result = kubeconfig.check(config)
    assert result.status == "ok", result.detail
    assert "v1.31.4+k3s1" in result.detail


def test_check_fails_when_the_certificate_does_not_cover_the_address(api) -> None:  # type: ignore[no-untyped-def]
    config = api([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("10.1.2.3"))])
    result = kubeconfig.check(config)
    assert result.status == "error"
    assert "TLS verification" in result.detail
    assert "10.1.2.3" in result.detail and "add 127.0.0.1 to the server's tls-san" in result.detail


def test_check_reports_an_unreachable_api_as_unreachable(api) -> None:  # type: ignore[no-untyped-def]
    config = api([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    result = kubeconfig.check(config, timeout=2)
    assert result.status == "unreachable"
