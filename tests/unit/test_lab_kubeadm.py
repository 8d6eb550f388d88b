"""Pure parts of the lab's kubeadm mode (test double): stand-in package control files, apt
index and Release texts, the install simulation parser, hosts' apt sources, the inventory."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from provisioner_lab import aptrepo, debs, files, reposerver
from provisioner_lab.state import HostRecord


def test_package_specs_follow_the_kubelet_stand_in_version() -> None:
    k8s = debs.kubernetes_version()
    assert k8s == "1.31.4"
    specs = {s.name: s for s in debs.package_specs()}
    assert set(specs) == {"kubelet", "kubeadm", "kubectl"}
    assert {s.version for s in specs.values()} == {"1.31.4-1.1"}
    assert specs["kubelet"].filename == "kubelet_1.31.4-1.1_all.deb"
    paths = {f.path for f in specs["kubelet"].files}
    assert {
        "usr/bin/kubelet",
        "usr/lib/systemd/system/kubelet.service",
        "usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf",
    } <= paths
    # one self-contained file: the kubelet zipapp carries the k3s API server modules it runs
    kubelet = next(f for f in specs["kubelet"].files if f.path == "usr/bin/kubelet")
    assert kubelet.content.startswith(b"#!/usr/bin/python3\n") and kubelet.mode == 0o755
    names = zipfile.ZipFile(io.BytesIO(kubelet.content)).namelist()
    assert {"__main__.py", "standin/kubelet/cli.py", "standin/k3s/api.py"} <= set(names)
    assert not any(p.startswith("usr/lib/kubernetes-standin") for p in paths)
    assert not any(f.path.startswith("usr/bin/") for f in specs["kubectl"].files)
    assert debs.minor_series(k8s) == "1.31"


def test_the_lab_serves_the_stand_in_minor_and_the_next_one_with_packages_at_each_version() -> None:
    assert debs.next_minor_version("1.31.4") == "1.32.0" and debs.next_minor_version("1.9.2") == "1.10.0"
    assert debs.served_versions() == ("1.31.4", "1.32.0")
    new = {s.name: s for s in debs.package_specs("1.32.0")}
    assert {s.version for s in new.values()} == {"1.32.0-1.1"}
    for name in ("kubelet", "kubeadm"):
        binary = next(f for f in new[name].files if f.path == f"usr/bin/{name}")
        version_py = zipfile.ZipFile(io.BytesIO(binary.content)).read("standin/kubelet/version.py").decode()
        assert 'STANDIN_VERSION = "v1.32.0"' in version_py, name
    # the stand-ins' own version given explicitly builds the same packages as the default
    assert debs.specs_digest(debs.package_specs("1.31.4")) == debs.specs_digest(debs.package_specs())
    assert debs.specs_digest(list(new.values())) != debs.specs_digest(debs.package_specs())
    assert "kubelet" not in " ".join(new["kubeadm"].depends) and "kubectl" not in " ".join(new["kubeadm"].depends)


def test_control_text_says_stand_in_and_continues_the_description() -> None:
    spec = debs.package_specs()[0]
    text = debs.control_text(spec, 42)
    fields = aptrepo.parse_control(text)
    assert fields["Package"] == spec.name and fields["Installed-Size"] == "42"
    assert "STAND-IN" in fields["Description"]
    assert all(line.startswith(" ") for line in fields["Description"].splitlines()[1:])
    assert "\n .\n" in text  # empty description lines are written as " ."


def test_specs_digest_changes_with_content() -> None:
    specs = debs.package_specs()
    a = debs.specs_digest(specs)
    assert a == debs.specs_digest(debs.package_specs())
    changed = [debs.PackageSpec(**{**s.__dict__, "depends": s.depends + ("x",)}) for s in specs]
    assert debs.specs_digest(changed) != a


def test_packages_stanza_has_filename_size_and_hashes() -> None:
    data = b"not really a deb"
    stanza = aptrepo.packages_stanza(
        {"Description": "d\n more", "Version": "1", "Package": "p", "Architecture": "all"}, "all/p_1_all.deb", data
    )
    lines = stanza.splitlines()
    assert lines[0] == "Package: p" and lines[1] == "Version: 1"
    assert "Filename: all/p_1_all.deb" in lines and f"Size: {len(data)}" in lines
    assert f"SHA256: {hashlib.sha256(data).hexdigest()}" in lines
    assert lines[-2:] == ["Description: d", " more"]


def test_release_text_lists_every_file_with_three_hashes() -> None:
    text = aptrepo.release_text({"Packages": b"abc", "Packages.gz": b"xyz"}, origin="o", label="l", architectures="all", date=0)
    assert "Date: Thu, 01 Jan 1970 00:00:00 UTC" in text
    assert "Suite:" not in text  # a flat repository
    for algo in ("md5", "sha1", "sha256"):
        assert hashlib.new(algo, b"abc").hexdigest() in text
    dists = aptrepo.release_text({}, origin="o", label="l", architectures="amd64", suite="bookworm", components="main")
    assert "Suite: bookworm" in dists and "Codename: bookworm" in dists and "Components: main" in dists


def test_parse_simulation_reads_inst_lines_only() -> None:
    out = (
        "NOTE: This is only a simulation!\n"
        "Inst runc (1.1.5+ds1-1+deb12u1 Debian:12.15/oldstable, Debian-Security:12 [amd64])\n"
        "Inst conntrack (1:1.4.7-1+b2 Debian:12.15/oldstable [amd64])\n"
        "Inst libc6 [2.36-9] (2.36-9+deb12u9 Debian:12.15/oldstable [amd64])\n"
        "Conf runc (1.1.5+ds1-1+deb12u1 Debian:12.15/oldstable [amd64])\n"
    )
    assert aptrepo.parse_simulation(out) == [("runc", "1.1.5+ds1-1+deb12u1"), ("conntrack", "1:1.4.7-1+b2"), ("libc6", "2.36-9+deb12u9")]
    assert aptrepo.deb_filename("conntrack", "1:1.4.7-1+b2", "amd64") == "conntrack_1%3a1.4.7-1+b2_amd64.deb"


def test_hosts_apt_sources_point_only_at_the_local_subset() -> None:
    text = aptrepo.sources_list("http://10.231.0.1:8181/")
    debs_lines = [ln for ln in text.splitlines() if ln.startswith("deb")]
    assert debs_lines == ["deb [signed-by=/etc/apt/keyrings/provisioner-lab-apt.asc] http://10.231.0.1:8181/debian bookworm main"]
    assert aptrepo.kubernetes_repo_path("1.31.4") == "kubernetes/core:/stable:/v1.31/deb/"
    assert aptrepo.kubernetes_repo_path("1.32.0") == "kubernetes/core:/stable:/v1.32/deb/"


def test_kubeadm_inventory_text() -> None:
    hosts = [HostRecord("k-server1", "server", "10.231.0.11"), HostRecord("k-agent1", "agent", "10.231.0.12")]
    text = files.inventory_text(
        lab="k",
        hosts=hosts,
        version="1.31",
        k3s_binary=None,
        install_script=None,
        user="root",
        private_key=Path("/s/id"),
        known_hosts=Path("/x/k.known_hosts"),
        distribution="kubeadm",
        package_repo="http://10.231.0.1:8181/kubernetes/core:/stable:/v1.31/deb/",
    )
    assert "STAND-IN" in text
    body = text[text.index("cluster:") :]
    assert body.startswith(
        'cluster:\n  name: k\n  distribution: kubeadm\n  version: "1.31"\n'
        '  package_repo: "http://10.231.0.1:8181/kubernetes/core:/stable:/v1.31/deb/"\n'
        '  flannel_version: v0.26.1\n  pod_network_cidr: "10.244.0.0/16"\nssh:\n'
    )
    assert "airgap" not in text and "host_key_policy: strict" in text
    assert "  - {name: k-agent1, address: 10.231.0.12, role: agent}" in text
    with pytest.raises(ValueError):
        files.inventory_text(
            lab="k",
            hosts=hosts,
            version="1.31",
            k3s_binary=None,
            install_script=None,
            user="root",
            private_key=Path("/s/id"),
            known_hosts=Path("/x"),
            distribution="kubeadm",
        )


def test_repo_server_refuses_to_listen_everywhere(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        reposerver.main(["--bind", "0.0.0.0", "--root", "/nonexistent"])
    assert "refusing" in capsys.readouterr().err


def test_repo_server_release_without_records_is_a_no_op(tmp_path: Path) -> None:
    from provisioner_lab.paths import LabPaths

    paths = LabPaths(state_root=tmp_path / "s", cache_root=tmp_path / "c", run_root=tmp_path / "r")
    reposerver.release(paths, tmp_path / "s/lab/lab.json", echo=lambda _m: None)
    assert not (tmp_path / "r").exists()
