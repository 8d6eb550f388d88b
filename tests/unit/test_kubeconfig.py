"""Kubeconfig rewrite, safe writing, merging, and the TLS check against a loopback server."""

from __future__ import annotations

import base64
import datetime
import errno
import ipaddress
import json
import os
import ssl
import stat
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from provisioner import kubeconfig
from provisioner.errors import KubeconfigConflict, KubeconfigError, LocalFileError
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


# --- merge conflicts and several kubeconfig files ------------------------------------------------

SERVER = "https://192.0.2.10:6443"


def _homelab(server: str = SERVER, context_name: str | None = None) -> object:
    return kubeconfig.rewrite(ADMIN_KUBECONFIG, cluster_name="homelab", server=server, context_name=context_name)


def _config(
    *,
    current: str = "",
    clusters: dict[str, tuple[str, str]] | None = None,
    users: dict[str, str] | None = None,
    contexts: dict[str, tuple[str, str]] | None = None,
) -> str:
    """A kubeconfig: clusters name -> (server, CA data), users name -> token, contexts name -> (cluster, user)."""
    data: dict[str, object] = {"apiVersion": "v1", "kind": "Config"}
    if current:
        data["current-context"] = current
    data["clusters"] = [{"name": n, "cluster": {"server": s, "certificate-authority-data": ca}} for n, (s, ca) in (clusters or {}).items()]
    data["users"] = [{"name": n, "user": {"token": t}} for n, t in (users or {}).items()]
    data["contexts"] = [{"name": n, "context": {"cluster": c, "user": u}} for n, (c, u) in (contexts or {}).items()]
    return json.dumps(data, indent=1) + "\n"  # JSON is YAML


def _files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_cluster_of_the_same_name_on_another_server_is_refused_naming_every_context_that_uses_it(tmp_path: Path) -> None:
    path = tmp_path / "config"
    text = _config(
        current="ops",
        clusters={"homelab": ("https://elsewhere:6443", "Q0EK")},
        users={"homelab": "t", "ops": "o"},
        contexts={"homelab": ("homelab", "homelab"), "ops": ("homelab", "ops")},
    )
    path.write_text(text)
    with pytest.raises(KubeconfigConflict) as raised:
        kubeconfig.merge_file(path, _homelab(), set_current=False)
    lines = raised.value.lines()
    assert lines[0] == f'{path}: cluster "homelab" already points to https://elsewhere:6443 (another server); used by contexts homelab, ops'
    assert lines[1] == f'{path}: user "homelab" already holds other credentials; used by context homelab'
    assert "--replace" in lines[-1] and raised.value.exit_code == 2
    assert path.read_text() == text and _files_in(tmp_path) == ["config"]  # untouched, no backup


def test_replace_overwrites_the_conflicting_entries_and_keeps_the_others(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(
        _config(
            current="ops",
            clusters={"homelab": ("https://elsewhere:6443", "Q0EK")},
            users={"homelab": "t", "ops": "o"},
            contexts={"homelab": ("homelab", "homelab"), "ops": ("homelab", "ops")},
        )
    )
    result = kubeconfig.merge_file(path, _homelab(), set_current=False, replace=True)
    merged = kubeconfig.parse(path.read_text())
    assert result.changed and result.backup is not None
    assert [(c["name"], c["cluster"]["server"]) for c in merged["clusters"]] == [("homelab", SERVER)]
    assert [u["name"] for u in merged["users"]] == ["homelab", "ops"] and merged["users"][1]["user"] == {"token": "o"}
    assert merged["current-context"] == "ops"


def test_the_same_server_with_another_ca_is_refused_too(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(_config(clusters={"homelab": (SERVER, "T1RIRVIK")}))
    with pytest.raises(KubeconfigConflict, match="the same server with another certificate authority"):
        kubeconfig.merge_file(path, _homelab(), set_current=False)


def test_a_user_of_the_same_name_used_by_another_clusters_context_is_never_repointed(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(
        _config(
            clusters={"homelab": (SERVER, "Q0EK"), "work": ("https://work:6443", "V09SSwo=")},
            users={"homelab": "shared"},
            contexts={"work": ("work", "homelab")},
        )
    )
    with pytest.raises(KubeconfigConflict) as raised:
        kubeconfig.merge_file(path, _homelab(), set_current=False)
    assert raised.value.problems == [f'{path}: user "homelab" already holds other credentials; used by context work']


def test_a_context_of_the_same_name_for_another_cluster_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(_config(clusters={"work": ("https://work:6443", "V09SSwo=")}, users={"work": "w"}, contexts={"home": ("work", "work")}))
    with pytest.raises(KubeconfigConflict) as raised:
        kubeconfig.merge_file(path, _homelab(context_name="home"), set_current=False)
    assert raised.value.problems == [f'{path}: context "home" already uses cluster "work" and user "work"']


def test_a_rerun_with_renewed_credentials_merges_silently_and_keeps_the_contexts_namespace(tmp_path: Path) -> None:
    path = tmp_path / "config"
    assert kubeconfig.merge_file(path, _homelab(), set_current=False).changed
    renewed = kubeconfig.parse(path.read_text())
    renewed["users"][0]["user"]["client-key-data"] = "T0xES0VZCg=="
    renewed["contexts"][0]["context"]["namespace"] = "apps"
    path.write_text(kubeconfig.dump(renewed))
    result = kubeconfig.merge_file(path, _homelab(), set_current=False)
    merged = kubeconfig.parse(path.read_text())
    assert result.changed
    assert merged["users"][0]["user"]["client-key-data"] == "S0VZCg=="
    assert merged["contexts"][0]["context"] == {"cluster": "homelab", "user": "homelab", "namespace": "apps"}


def test_with_several_files_entries_are_rewritten_where_they_are_and_new_ones_go_to_the_first_existing_file(tmp_path: Path) -> None:
    first, second, missing = tmp_path / "first", tmp_path / "second", tmp_path / "missing"
    first.write_text(
        _config(
            current="work", clusters={"work": ("https://work:6443", "V09SSwo=")}, users={"work": "w"}, contexts={"work": ("work", "work")}
        )
    )
    second.write_text(
        _config(clusters={"homelab": (SERVER, "Q0EK")}, users={"homelab": "old"}, contexts={"homelab": ("homelab", "homelab")})
    )
    before_first = first.read_text()
    result = kubeconfig.merge_files([missing, first, second], _homelab(), set_current=False)
    assert result.files == (second,) and result.path == second
    assert first.read_text() == before_first and not missing.exists()
    assert kubeconfig.parse(second.read_text())["users"][0]["user"]["client-key-data"] == "S0VZCg=="
    result = kubeconfig.merge_files(
        [missing, first, second],
        kubeconfig.rewrite(ADMIN_KUBECONFIG, cluster_name="lab", server="https://192.0.2.20:6443"),
        set_current=False,
    )
    assert result.files == (first,)
    assert [c["name"] for c in kubeconfig.parse(first.read_text())["contexts"]] == ["work", "lab"]
    assert kubeconfig.parse(first.read_text())["current-context"] == "work"


def test_with_several_files_the_effective_current_context_changes_only_with_set_current(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_text(_config())  # exists, sets no current-context
    second.write_text(
        _config(
            current="work", clusters={"work": ("https://work:6443", "V09SSwo=")}, users={"work": "w"}, contexts={"work": ("work", "work")}
        )
    )
    kubeconfig.merge_files([first, second], _homelab(), set_current=False)
    loaded = [kubeconfig.LoadedFile(p, p.read_text(), kubeconfig.parse(p.read_text()), True) for p in (first, second)]
    assert kubeconfig.effective_current_context(loaded) == "work"
    assert "current-context" not in kubeconfig.parse(first.read_text())
    kubeconfig.merge_files([first, second], _homelab(), set_current=True)
    loaded = [kubeconfig.LoadedFile(p, p.read_text(), kubeconfig.parse(p.read_text()), True) for p in (first, second)]
    assert kubeconfig.effective_current_context(loaded) == "homelab"
    assert kubeconfig.parse(second.read_text())["current-context"] == "work"  # the other file is left alone


def test_a_conflict_in_a_later_file_is_found_and_named_with_that_file(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_text(_config())
    second.write_text(_config(clusters={"homelab": ("https://elsewhere:6443", "Q0EK")}))
    with pytest.raises(KubeconfigConflict, match=f"^{second}: cluster"):
        kubeconfig.merge_files([first, second], _homelab(), set_current=False)


@pytest.mark.parametrize("failing", ["mkstemp", "fsync", "replace"])
def test_a_failed_merge_write_is_one_file_error_and_leaves_the_file_and_no_backup_or_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    path = tmp_path / "config"
    path.write_text(EXISTING)

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile if failing == "mkstemp" else os, failing, fail)
    with pytest.raises(LocalFileError) as raised:
        kubeconfig.merge_file(path, _homelab(), set_current=False, replace=True)
    assert str(raised.value) == f"{path}: cannot write: read-only file system"
    assert raised.value.exit_code == 1
    assert path.read_text() == EXISTING and _files_in(tmp_path) == ["config"]


def test_when_the_second_file_cannot_be_written_the_first_is_put_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_text(_config(current="work"))
    second_text = _config(users={"homelab": "old"}, contexts={"homelab": ("homelab", "homelab")})
    second.write_text(second_text)
    before = first.read_text()
    real_replace = os.replace

    def replace(source: object, target: object) -> None:
        if Path(str(target)) == second:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(source, target)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(LocalFileError, match=f"^{second}: cannot write: no space left on device$"):
        kubeconfig.merge_files([first, second], _homelab(), set_current=False, replace=True)
    assert first.read_text() == before and second.read_text() == second_text
    assert _files_in(tmp_path) == ["first", "second"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write a read-only file")
def test_a_read_only_file_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(EXISTING)
    path.chmod(0o400)
    with pytest.raises(LocalFileError, match="the file is read-only"):
        kubeconfig.merge_file(path, _homelab(), set_current=False, replace=True)
    assert _files_in(tmp_path) == ["config"]


def test_a_target_under_a_regular_file_or_a_directory_target_is_a_file_error(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("x")
    with pytest.raises(LocalFileError, match="is not a directory"):
        kubeconfig.write_file(tmp_path / "plain" / "sub" / "config", _homelab())
    (tmp_path / "folder").mkdir()
    with pytest.raises(LocalFileError, match="it is a directory"):
        kubeconfig.merge_file(tmp_path / "folder", _homelab(), set_current=False)


# --- the TLS check against a real HTTPS server on loopback ----------------------------------------


def _pem(obj: object) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())  # type: ignore[attr-defined]


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer_cert: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    sans: list[x509.GeneralName] | None = None,
    client: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
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
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if issuer_cert is not None:
        builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    if client:
        builder = builder.add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


class _Version(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
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
