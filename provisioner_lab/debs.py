"""TEST DOUBLE: the STAND-IN Kubernetes packages of the lab (not product code).

Builds ``kubelet``, ``kubeadm`` and ``kubectl`` .deb files (architecture ``all``, version like
``1.31.4-1.1``, as on pkgs.k8s.io) with ``dpkg-deb --build`` from the stand-ins in
``provisioner_lab/standin/``, each one file built by ``zipapps`` (a Python zipapp holding the
modules it uses). They exist only so that the provisioner's real apt path runs on lab hosts that
cannot download Kubernetes; every package description says STAND-IN.

- ``kubelet``: /usr/bin/kubelet (the kubelet stand-in, with the k3s stand-in's API server
  modules inside), kubelet.service (Restart=always) and a kubeadm drop-in reading
  /var/lib/kubelet/kubeadm-flags.env and /etc/default/kubelet.
- ``kubeadm``: /usr/bin/kubeadm (the kubeadm stand-in, self-contained); like the real package on
  pkgs.k8s.io since 1.30 it does NOT depend on kubelet or kubectl (the real one depends only on
  cri-tools, which the stand-in does not need; it needs Debian's python3 and its libraries), so
  that an upgrade can install the new kubeadm while kubelet stays held at the old version.
- ``kubectl``: no binary; depends on Debian's ``kubernetes-client`` (a real kubectl 1.20).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from provisioner_lab import zipapps
from provisioner_lab.standin.kubelet import version as kubelet_version
from provisioner_lab.system import run, write_file

#: Debian revision appended to the Kubernetes version, like pkgs.k8s.io's "-1.1".
DEB_REVISION = "1.1"
MAINTAINER = "provisioner lab (test double) <lab@provisioner.invalid>"
#: Bump when the package layout below changes (part of the repository cache key).
LAYOUT_VERSION = 3

KUBELET_SERVICE = """\
# STAND-IN kubelet unit (test double shipped by the provisioner lab; not the real package).
[Unit]
Description=kubelet: The Kubernetes Node Agent (STAND-IN for testing)
Documentation=https://kubernetes.io/docs/
Wants=network-online.target
After=network-online.target
StartLimitIntervalSec=0

[Service]
ExecStart=/usr/bin/kubelet
Restart=always
RestartSec=10

[Install]
WantedBy=multi-user.target
"""

#: The kubeadm drop-in: same variables and files as the real one, written here.
KUBEADM_DROPIN = """\
# STAND-IN drop-in (test double): how kubeadm configures the kubelet.
# kubeadm writes KUBELET_KUBEADM_ARGS into /var/lib/kubelet/kubeadm-flags.env at init/join;
# the administrator's flags go into KUBELET_EXTRA_ARGS in /etc/default/kubelet (read last, wins).
[Service]
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf"
Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
EnvironmentFile=-/etc/default/kubelet
ExecStart=
ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
"""

KUBELET_POSTINST = """\
#!/bin/sh
# STAND-IN kubelet package: enable and start the unit (it restarts every 10 s until kubeadm
# has configured it, like the real kubelet).
set -e
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
    systemctl enable kubelet.service >/dev/null 2>&1 || true
    systemctl restart kubelet.service >/dev/null 2>&1 || true
fi
exit 0
"""

KUBELET_PRERM = """\
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    systemctl stop kubelet.service >/dev/null 2>&1 || true
fi
exit 0
"""

KUBELET_POSTRM = """\
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
"""


@dataclass(frozen=True)
class DebFile:
    """One file of a package: path inside the package, content, mode."""

    path: str
    content: bytes
    mode: int = 0o644


@dataclass(frozen=True)
class PackageSpec:
    """What one stand-in package is made of."""

    name: str
    version: str
    depends: tuple[str, ...]
    summary: str
    description: str
    files: tuple[DebFile, ...] = ()
    scripts: dict[str, str] = field(default_factory=dict)
    dirs: tuple[str, ...] = ()

    @property
    def filename(self) -> str:
        return f"{self.name}_{self.version}_all.deb"


def kubernetes_version() -> str:
    """ "1.31.4" from the kubelet stand-in's ``STANDIN_VERSION = "v1.31.4"``."""
    return kubelet_version.STANDIN_VERSION.lstrip("v")


def next_minor_version(k8s_version: str) -> str:
    """The version the lab serves as the next minor, e.g. "1.32.0" after "1.31.4" (an upgrade)."""
    major, minor = (int(x) for x in k8s_version.split(".")[:2])
    return f"{major}.{minor + 1}.0"


def served_versions() -> tuple[str, ...]:
    """The Kubernetes versions the lab's repositories serve, one repository per minor: the
    stand-ins' own version (what lab inventories ask for) and the next minor (upgrades)."""
    base = kubernetes_version()
    return (base, next_minor_version(base))


def deb_version(k8s_version: str) -> str:
    """Debian version of the stand-in packages, e.g. ``1.31.4-1.1``."""
    return f"{k8s_version}-{DEB_REVISION}"


def minor_series(k8s_version: str) -> str:
    """ "1.31" from "1.31.4"."""
    return ".".join(k8s_version.split(".")[:2])


def control_text(spec: PackageSpec, installed_size_kb: int) -> str:
    """DEBIAN/control of ``spec``."""
    body = "\n".join(" " + (line if line.strip() else ".") for line in spec.description.splitlines())
    lines = [
        f"Package: {spec.name}",
        f"Version: {spec.version}",
        "Architecture: all",
        f"Maintainer: {MAINTAINER}",
        f"Installed-Size: {installed_size_kb}",
    ]
    if spec.depends:
        lines.append(f"Depends: {', '.join(spec.depends)}")
    lines += [
        "Section: admin",
        "Priority: optional",
        "Homepage: https://kubernetes.io",
        f"Description: {spec.summary}",
        body,
    ]
    return "\n".join(lines) + "\n"


def package_specs(k8s_version: str | None = None) -> list[PackageSpec]:
    """The three stand-in packages (kubelet, kubeadm, kubectl) at ``k8s_version`` ("1.32.0"),
    by default the stand-ins' own version; the kubelet and kubeadm inside say that version."""
    k8s = k8s_version or kubernetes_version()
    claimed = None if k8s_version is None or k8s_version == kubernetes_version() else f"v{k8s}"
    version = deb_version(k8s)
    note = (
        f"STAND-IN for testing, NOT the real Kubernetes {k8s}: built by the provisioner's\n"
        "on-machine lab (provisioner_lab/standin) so that the provisioner's apt and kubeadm\n"
        "steps run on lab hosts without internet access. Never install it elsewhere."
    )
    doc = lambda name: DebFile(f"usr/share/doc/{name}/README.standin", (note + "\n").encode())  # noqa: E731
    kubelet = PackageSpec(
        name="kubelet",
        version=version,
        # as the real package: iptables is only recommended (the provisioner installs with
        # --no-install-recommends) and conntrack is no longer a dependency since 1.32, so the
        # hosts get them only when the provisioner installs them for kubeadm's preflight
        depends=("python3", "python3-cryptography", "python3-yaml", "iproute2", "mount"),
        summary="Kubernetes node agent (STAND-IN for testing, not the real kubelet)",
        description=note + "\n\nRuns no containers: registers its Node, heartbeats, and runs the\n"
        "stand-in API server for the kube-apiserver static pod manifest.",
        files=(
            DebFile("usr/bin/kubelet", zipapps.executable("kubelet", claimed), 0o755),
            DebFile("usr/lib/systemd/system/kubelet.service", KUBELET_SERVICE.encode()),
            DebFile("usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf", KUBEADM_DROPIN.encode()),
            doc("kubelet"),
        ),
        scripts={"postinst": KUBELET_POSTINST, "prerm": KUBELET_PRERM, "postrm": KUBELET_POSTRM},
        dirs=("etc/kubernetes/manifests",),
    )
    kubeadm = PackageSpec(
        name="kubeadm",
        version=version,
        # the real kubeadm depends on cri-tools at most (not on kubelet/kubectl since 1.30)
        depends=("python3", "python3-cryptography", "python3-yaml"),
        summary="Kubernetes cluster bootstrapping tool (STAND-IN for testing, not the real kubeadm)",
        description=note + "\n\nHonours init/join --config, token create --print-join-command, reset.",
        files=(DebFile("usr/bin/kubeadm", zipapps.executable("kubeadm", claimed), 0o755), doc("kubeadm")),
    )
    kubectl = PackageSpec(
        name="kubectl",
        version=version,
        depends=("kubernetes-client",),
        summary="Kubernetes command-line tool (STAND-IN for testing: Debian's kubectl)",
        description=note + "\n\nShips no binary: it depends on Debian's kubernetes-client, a real\n"
        "kubectl (1.20), so that `apt-get install kubectl` and\n"
        "`dpkg-query -W kubectl` behave as with the real package.",
        files=(doc("kubectl"),),
    )
    return [kubelet, kubeadm, kubectl]


def specs_digest(specs: list[PackageSpec]) -> str:
    """Hash of everything that goes into the packages (for the repository cache key)."""
    h = hashlib.sha256(f"layout={LAYOUT_VERSION}".encode())
    for s in specs:
        h.update(control_text(s, 0).encode())
        for f in s.files:
            h.update(f"{f.path}:{f.mode:o}:".encode() + hashlib.sha256(f.content).digest())
        for k, v in sorted(s.scripts.items()):
            h.update(f"{k}:{v}".encode())
        h.update(repr(s.dirs).encode())
    return h.hexdigest()


def build_package(spec: PackageSpec, out_dir: Path) -> Path:
    """Build ``spec`` into ``out_dir/<name>_<version>_all.deb`` (dpkg-deb, root-owned files).

    Changes: writes the .deb (atomically). Already done: never checked here; callers cache."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".build-{spec.name}-", dir=out_dir) as tmp:
        root = Path(tmp) / "pkg"
        for f in spec.files:
            dest = root / f.path
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(f.content)
            os.chmod(dest, f.mode)
        for dname in spec.dirs:
            (root / dname).mkdir(parents=True, exist_ok=True)
        size_kb = sum((p.stat().st_size + 1023) // 1024 for p in root.rglob("*") if p.is_file()) or 1
        write_file(root / "DEBIAN/control", control_text(spec, size_kb))
        for name, text in spec.scripts.items():
            write_file(root / "DEBIAN" / name, text, mode=0o755)
        for p in [root, *root.rglob("*")]:
            if p.is_dir():
                os.chmod(p, 0o755)
        tmp_deb = Path(tmp) / spec.filename
        run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", root, tmp_deb])
        final = out_dir / spec.filename
        shutil.move(os.fspath(tmp_deb), os.fspath(final))
    return final


def build_all(out_dir: Path, k8s_version: str | None = None) -> list[Path]:
    """Build the three stand-in packages at ``k8s_version`` (default: the stand-ins' own)
    into ``out_dir``; returns their paths."""
    return [build_package(s, out_dir) for s in package_specs(k8s_version)]
