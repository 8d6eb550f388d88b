"""The stand-in kubelet/kubeadm/kubectl packages and their flat repository, built as the lab
builds them (dpkg-deb, a fresh GPG key) and read by this machine's real apt through a
``file:`` source with ``signed-by`` -- no network, no change to this machine's apt state."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from provisioner_lab import aptrepo, debs

pytestmark = pytest.mark.skipif(not all(shutil.which(t) for t in ("dpkg-deb", "gpg", "apt-get")), reason="needs dpkg-deb, gpg and apt-get")


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    base = tmp_path_factory.mktemp("repo")
    gpg = aptrepo.Gpg(base / "gnupg")
    fpr = gpg.ensure_key()
    kdir = base / "www" / aptrepo.kubernetes_repo_path(debs.kubernetes_version())
    built = aptrepo.build_kubernetes_repo(kdir, gpg, fpr)
    return base, kdir, built, fpr


def test_packages_are_arch_all_stand_ins_with_the_expected_dependencies(repo):
    _, _, built, _ = repo
    assert sorted(p.name for p in built) == ["kubeadm_1.31.4-1.1_all.deb", "kubectl_1.31.4-1.1_all.deb", "kubelet_1.31.4-1.1_all.deb"]
    fields = {p.name.split("_")[0]: aptrepo.deb_fields(p) for p in built}
    for name, f in fields.items():
        assert f["Architecture"] == "all" and f["Version"] == "1.31.4-1.1"
        assert "STAND-IN" in f["Description"], name
    assert {"python3", "python3-cryptography", "python3-yaml"} <= {d.split()[0] for d in fields["kubelet"]["Depends"].split(", ")}
    # as the real kubeadm on pkgs.k8s.io: no dependency on kubelet or kubectl, so that an
    # upgrade installs the new kubeadm while kubelet stays held at the old version
    assert {d.split()[0] for d in fields["kubeadm"]["Depends"].split(", ")} == {"python3", "python3-cryptography", "python3-yaml"}
    assert fields["kubectl"]["Depends"] == "kubernetes-client"


def test_kubelet_package_has_unit_dropin_and_a_working_library_layout(repo, tmp_path):
    _, _, built, _ = repo
    kubelet = next(p for p in built if p.name.startswith("kubelet_"))
    root = tmp_path / "x"
    subprocess.run(["dpkg-deb", "-x", str(kubelet), str(root)], check=True)
    unit = (root / "usr/lib/systemd/system/kubelet.service").read_text()
    assert "Restart=always" in unit and "RestartSec=10" in unit
    dropin = (root / "usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf").read_text()
    for needle in (
        "EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env",
        "EnvironmentFile=-/etc/default/kubelet",
        "$KUBELET_KUBEADM_ARGS",
        "$KUBELET_EXTRA_ARGS",
        "--kubeconfig=/etc/kubernetes/kubelet.conf",
        "--config=/var/lib/kubelet/config.yaml",
    ):
        assert needle in dropin
    assert os.access(root / "usr/bin/kubelet", os.X_OK)
    # the installed kubelet is one self-contained file (a zipapp with the k3s modules inside)
    res = subprocess.run([str(root / "usr/bin/kubelet"), "--version"], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0 and "v1.31.4" in res.stdout and "stand-in" in res.stdout
    assert (root / "etc/kubernetes/manifests").is_dir()


def test_flat_repository_is_signed_and_apt_reads_it(repo, tmp_path):
    base, kdir, _, _ = repo
    for name in ("InRelease", "Release", "Release.gpg", "Release.key", "Packages", "Packages.gz"):
        assert (kdir / name).is_file(), name
    # the key as the provisioner fetches it (Release.key -> .asc) verifies InRelease
    keyring = tmp_path / "kubernetes-apt-keyring.asc"
    shutil.copy(kdir / "Release.key", keyring)
    apt = tmp_path / "apt"
    for d in (
        "etc/apt/sources.list.d",
        "etc/apt/preferences.d",
        "etc/apt/apt.conf.d",
        "var/lib/apt/lists/partial",
        "var/cache/apt/archives/partial",
        "var/lib/dpkg",
    ):
        (apt / d).mkdir(parents=True, exist_ok=True)
    (apt / "var/lib/dpkg/status").write_text("")
    (apt / "etc/apt/sources.list").write_text("")
    (apt / "etc/apt/sources.list.d/kubernetes.list").write_text(f"deb [signed-by={keyring}] file:{kdir}/ /\n")
    opts = [
        "-o",
        f"Dir={apt}",
        "-o",
        f"Dir::State::status={apt}/var/lib/dpkg/status",
        "-o",
        "Debug::NoLocking=1",
        "-o",
        "APT::Sandbox::User=root",
    ]
    res = subprocess.run(["apt-get", *opts, "update"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "NO_PUBKEY" not in res.stderr and "not signed" not in res.stderr
    pol = subprocess.run(["apt-cache", *opts, "policy", "kubelet", "kubeadm", "kubectl"], capture_output=True, text=True, timeout=60).stdout
    assert pol.count("Candidate: 1.31.4-1.1") == 3, pol
    # a wrong key is refused
    other = aptrepo.Gpg(tmp_path / "other")
    keyring.write_text(other.public_key(other.ensure_key()))
    shutil.rmtree(apt / "var/lib/apt/lists")
    (apt / "var/lib/apt/lists/partial").mkdir(parents=True)
    res = subprocess.run(["apt-get", *opts, "update"], capture_output=True, text=True, timeout=120)
    assert "NO_PUBKEY" in res.stderr or "not signed" in res.stderr or res.returncode != 0, res.stderr


def test_the_next_minor_repository_holds_packages_whose_binaries_say_the_new_version(tmp_path):
    gpg = aptrepo.Gpg(tmp_path / "gnupg")
    fpr = gpg.ensure_key()
    new = debs.next_minor_version(debs.kubernetes_version())
    kdir = tmp_path / "www" / aptrepo.kubernetes_repo_path(new)
    assert kdir.as_posix().endswith("/kubernetes/core:/stable:/v1.32/deb")
    built = aptrepo.build_kubernetes_repo(kdir, gpg, fpr, new)
    assert sorted(p.name for p in built) == ["kubeadm_1.32.0-1.1_all.deb", "kubectl_1.32.0-1.1_all.deb", "kubelet_1.32.0-1.1_all.deb"]
    assert "Version: 1.32.0-1.1" in (kdir / "Packages").read_text()
    root = tmp_path / "x"
    for name in ("kubelet", "kubeadm"):
        deb = next(p for p in built if p.name.startswith(f"{name}_"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    kubelet = subprocess.run([str(root / "usr/bin/kubelet"), "--version"], capture_output=True, text=True, timeout=30)
    assert kubelet.returncode == 0 and "v1.32.0" in kubelet.stdout, kubelet.stdout + kubelet.stderr
    kubeadm = subprocess.run([str(root / "usr/bin/kubeadm"), "version", "-o", "short"], capture_output=True, text=True, timeout=30)
    assert kubeadm.returncode == 0 and kubeadm.stdout.strip() == "v1.32.0", kubeadm.stdout + kubeadm.stderr
