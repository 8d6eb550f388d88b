"""TEST DOUBLE: the lab's local, signed apt repositories (not product code).

Two repositories under one served directory (``<cache>/apt-repos/www/``):

- ``kubernetes/core:/stable:/v<minor>/deb/`` -- FLAT repositories like pkgs.k8s.io, one per
  minor (``InRelease``, ``Release``, ``Release.gpg``, ``Release.key``, ``Packages(.gz)``, packages
  at their ``Filename:``) holding the STAND-IN kubelet/kubeadm/kubectl packages (debs.py): the
  stand-ins' own minor (1.31, what lab inventories ask for) and the next one (1.32, upgrades);
- ``debian/`` -- ``dists/bookworm/main/binary-<arch>/`` + ``pool/``: the REAL Debian packages
  lab hosts need and their base image lacks (containerd, runc, conntrack, ... with their
  dependencies and recommends), computed by simulating the install against the base image's
  dpkg status with this machine's apt, and fetched with ``apt-get download`` (cached).

Both are signed with one lab GPG key (ed25519, no passphrase, generated once under the state
root). ``provisioner-lab-apt.asc`` (the armored public key) sits at the top of the served tree.
Rebuilt only when an input changes (stand-in files, base image, key, package list).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from provisioner_lab import base_image, debs
from provisioner_lab.paths import LabPaths
from provisioner_lab.system import LabError, ensure_host_packages, file_lock, run, write_file

KEY_NAME = "provisioner lab apt repository (TEST DOUBLE, lab only) <lab@provisioner.invalid>"
KEY_FILE = "provisioner-lab-apt.asc"
#: Where hosts keep the lab key (their apt sources are signed-by it).
HOST_KEYRING = "/etc/apt/keyrings/provisioner-lab-apt.asc"
#: Debian packages the Debian subset must satisfy besides the stand-ins' dependencies.
#: The networking tools are what the provisioner installs for kubeadm's preflight.
DEBIAN_WANTED: tuple[str, ...] = ("containerd", "conntrack", "iptables", "socat", "ethtool", "ebtables")
STANDIN_NAMES = ("kubelet", "kubeadm", "kubectl")
#: Bump when the repository layout changes.
REPO_LAYOUT = 3

_INST_RE = re.compile(r"^Inst (\S+) (?:\[[^\]]*\] )?\((\S+) ")


# ---- pure parts ----------------------------------------------------------------------------


def parse_control(text: str) -> dict[str, str]:
    """RFC 822 style control fields (continuation lines kept, joined with newlines)."""
    fields: dict[str, str] = {}
    last = None
    for line in text.splitlines():
        if not line.strip():
            continue
        if line[0] in " \t" and last:
            fields[last] += "\n" + line
        else:
            key, _, value = line.partition(":")
            last = key.strip()
            fields[last] = value.strip()
    return fields


_FIRST_FIELDS = ("Package", "Version", "Architecture", "Maintainer", "Installed-Size", "Depends")


def packages_stanza(fields: dict[str, str], filename: str, data: bytes) -> str:
    """One ``Packages`` entry: the control fields (Package first) plus Filename, Size and hashes."""
    order = [k for k in _FIRST_FIELDS if k in fields] + [k for k in fields if k not in _FIRST_FIELDS and k != "Description"]
    lines = [f"{k}: {fields[k]}" for k in order]
    lines += [
        f"Filename: {filename}",
        f"Size: {len(data)}",
        f"MD5sum: {hashlib.md5(data).hexdigest()}",
        f"SHA1: {hashlib.sha1(data).hexdigest()}",
        f"SHA256: {hashlib.sha256(data).hexdigest()}",
    ]
    if "Description" in fields:
        lines.append(f"Description: {fields['Description']}")
    return "\n".join(lines) + "\n"


def release_text(
    files: dict[str, bytes],
    *,
    origin: str,
    label: str,
    architectures: str,
    suite: str | None = None,
    components: str | None = None,
    date: float | None = None,
    description: str = "",
) -> str:
    """A ``Release`` file listing ``files`` (path relative to the Release file -> content)."""
    when = time.strftime("%a, %d %b %Y %H:%M:%S UTC", time.gmtime(date if date is not None else time.time()))
    lines = [f"Origin: {origin}", f"Label: {label}"]
    if suite:
        lines += [f"Suite: {suite}", f"Codename: {suite}"]
    lines += [f"Date: {when}", f"Architectures: {architectures}"]
    if components:
        lines.append(f"Components: {components}")
    if description:
        lines.append(f"Description: {description}")
    for name, algo in (("MD5Sum", "md5"), ("SHA1", "sha1"), ("SHA256", "sha256")):
        lines.append(f"{name}:")
        for path in sorted(files):
            digest = hashlib.new(algo, files[path]).hexdigest()
            lines.append(f" {digest} {len(files[path]):>16} {path}")
    return "\n".join(lines) + "\n"


def parse_simulation(output: str) -> list[tuple[str, str]]:
    """(package, version) of every ``Inst`` line of ``apt-get -s install`` output."""
    out = []
    for line in output.splitlines():
        m = _INST_RE.match(line)
        if m:
            out.append((m.group(1), m.group(2)))
    return out


def deb_filename(name: str, version: str, arch: str) -> str:
    """File name ``apt-get download`` gives a package (an epoch's ':' becomes %3a)."""
    return f"{name}_{version.replace(':', '%3a')}_{arch}.deb"


def sources_list(repo_url: str, suite: str = base_image.SUITE) -> str:
    """A lab host's /etc/apt/sources.list: only the local Debian subset, signed-by the lab key."""
    return (
        "# provisioner lab (TEST DOUBLE setup): no internet here; the only package source is the\n"
        "# lab's local subset of Debian, served from this lab's machine.\n"
        f"deb [signed-by={HOST_KEYRING}] {repo_url.rstrip('/')}/debian {suite} main\n"
    )


def kubernetes_repo_path(k8s_version: str) -> str:
    """Path of the flat Kubernetes repository below the served root, like pkgs.k8s.io's."""
    return f"kubernetes/core:/stable:/v{debs.minor_series(k8s_version)}/deb/"


# ---- building ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Repos:
    """The built repositories: served directory and paths below it."""

    www: Path
    kubernetes_path: str
    k8s_version: str
    fingerprint: str
    #: Every served Kubernetes version -> its repository's path below ``www``.
    kubernetes_paths: dict[str, str]

    @property
    def key_file(self) -> Path:
        return self.www / KEY_FILE


class Gpg:
    """The lab's signing key in its own GNUPGHOME (0700)."""

    def __init__(self, home: Path) -> None:
        self.home = home

    def _gpg(self, *args: str | os.PathLike[str], input: str | None = None) -> str:
        return run(["gpg", "--batch", "--quiet", "--homedir", self.home, *args], input=input, timeout=120).stdout

    def ensure_key(self) -> str:
        """Fingerprint of the lab key. Changes: creates GNUPGHOME and the key (ed25519, no
        passphrase, no expiry). Already done: a secret key is in GNUPGHOME."""
        self.home.mkdir(parents=True, exist_ok=True)
        os.chmod(self.home, 0o700)
        fpr = self._fingerprint()
        if fpr:
            return fpr
        self._gpg("--passphrase", "", "--pinentry-mode", "loopback", "--quick-gen-key", KEY_NAME, "ed25519", "sign", "never")
        fpr = self._fingerprint()
        if not fpr:
            raise LabError(f"gpg did not create the lab key in {self.home}")
        return fpr

    def _fingerprint(self) -> str | None:
        try:
            out = self._gpg("--with-colons", "--list-secret-keys")
        except LabError:
            return None
        for line in out.splitlines():
            if line.startswith("fpr:"):
                return line.split(":")[9]
        return None

    def public_key(self, fpr: str) -> str:
        return self._gpg("--armor", "--export", fpr)

    def sign_release(self, directory: Path, fpr: str) -> None:
        """Write InRelease (clear-signed) and Release.gpg (detached) next to Release."""
        release = directory / "Release"
        for name in ("InRelease", "Release.gpg"):
            (directory / name).unlink(missing_ok=True)
        self._gpg("--local-user", fpr, "--digest-algo", "SHA256", "--clearsign", "--output", directory / "InRelease", release)
        self._gpg(
            "--local-user", fpr, "--digest-algo", "SHA256", "--armor", "--detach-sign", "--output", directory / "Release.gpg", release
        )


def deb_fields(path: Path) -> dict[str, str]:
    return parse_control(run(["dpkg-deb", "-f", path]).stdout)


def write_indexes(deb_paths: Iterable[Path], index_dir: Path, base: Path) -> dict[str, bytes]:
    """Packages + Packages.gz in ``index_dir`` for ``deb_paths`` (Filename relative to ``base``);
    returns {name: content} for the Release file."""
    stanzas = []
    for p in sorted(deb_paths, key=lambda p: p.name):
        fields = deb_fields(p)
        stanzas.append(packages_stanza(fields, p.relative_to(base).as_posix(), p.read_bytes()))
    packages = "\n".join(stanzas).encode()
    packed = gzip.compress(packages, mtime=0)
    index_dir.mkdir(parents=True, exist_ok=True)
    write_file(index_dir / "Packages", packages)
    write_file(index_dir / "Packages.gz", packed)
    return {"Packages": packages, "Packages.gz": packed}


def host_arch() -> str:
    return run(["dpkg", "--print-architecture"]).stdout.strip()


def debian_closure(base_rootfs: Path, wanted: Iterable[str], echo: Callable[[str], None]) -> list[tuple[str, str]]:
    """(package, version) that ``apt-get install <wanted>`` would add to the base image, by
    simulating with this machine's apt lists against the base image's dpkg status (recommends
    included, as on hosts). Runs ``apt-get update`` once if the lists lack a package."""
    argv = [
        "apt-get",
        "-s",
        "-q",
        "-o",
        f"Dir::State::status={base_rootfs / 'var/lib/dpkg/status'}",
        "-o",
        "Debug::NoLocking=1",
        "-o",
        "APT::Install-Recommends=1",
        "install",
        *wanted,
    ]
    proc = run(argv, check=False, timeout=300)
    if proc.returncode != 0:
        echo("apt lists on this machine lack some packages; running apt-get update")
        run(["apt-get", "update", "-q"], timeout=600, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        proc = run(argv, check=False, timeout=300)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.startswith("E:")]
        raise LabError(f"cannot resolve the Debian packages for lab hosts: {lines[0] if lines else proc.returncode}")
    return parse_simulation(proc.stdout)


def fetch_debs(pkgs: list[tuple[str, str]], pool: Path, echo: Callable[[str], None]) -> list[Path]:
    """The .deb of every (package, version), downloaded here with ``apt-get download`` into
    ``pool`` unless already there."""
    pool.mkdir(parents=True, exist_ok=True)
    have = {p.name for p in pool.glob("*.deb")}
    missing = []
    for name, version in pkgs:
        if not any(f.startswith(f"{name}_{version.replace(':', '%3a')}_") for f in have):
            missing.append(f"{name}={version}")
    if missing:
        echo(f"downloading {len(missing)} Debian package(s) for the lab's local repository")
        proc = run(["apt-get", "download", "-q", *missing], check=False, timeout=900, cwd=pool)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or [""])[-1]
            raise LabError(f"apt-get download failed: {last}")
    out = []
    files = {p.name: p for p in pool.glob("*.deb")}
    for name, version in pkgs:
        match = [p for f, p in files.items() if f.startswith(f"{name}_{version.replace(':', '%3a')}_")]
        if not match:
            raise LabError(f"{name} {version} was not downloaded")
        out.append(match[0])
    return out


def build_kubernetes_repo(kdir: Path, gpg: Gpg, fpr: str, k8s_version: str | None = None) -> list[Path]:
    """The flat Kubernetes repository in ``kdir``: stand-in packages at ``k8s_version`` (default:
    the stand-ins' own) under ``all/``, Packages, Packages.gz, Release, InRelease, Release.gpg
    and Release.key (armored public key)."""
    built = debs.build_all(kdir / "all", k8s_version)
    release_files = write_indexes(built, kdir, kdir)
    write_file(
        kdir / "Release",
        release_text(
            release_files,
            origin="provisioner-lab",
            label="kubernetes-standin",
            architectures="all amd64 arm64",
            description="STAND-IN Kubernetes packages for the lab (test double)",
        ),
    )
    gpg.sign_release(kdir, fpr)
    write_file(kdir / "Release.key", gpg.public_key(fpr))
    return built


def ensure_repos(paths: LabPaths, base_rootfs: Path, echo: Callable[[str], None] = print) -> Repos:
    """Build (or reuse) both repositories; return where they are.

    Changes: the lab key (once), ``<cache>/apt-repos/{www,pool,stand-in}`` and ``build.json``.
    Already done: ``build.json`` records the same inputs (stand-in files, base image, key,
    Debian package list) -- then nothing is rebuilt."""
    ensure_host_packages(("gpg",), echo=echo)  # dpkg-deb and apt-get come with every Debian
    root = paths.cache_root / "apt-repos"
    root.mkdir(parents=True, exist_ok=True)
    with file_lock(root / "build.lock"):
        gpg = Gpg(paths.state_root / ".apt-repo-key" / "gnupg")
        fpr = gpg.ensure_key()
        versions = debs.served_versions()
        specs = [s for v in versions for s in debs.package_specs(v)]
        k8s = debs.kubernetes_version()
        kpath = kubernetes_repo_path(k8s)
        kpaths = {v: kubernetes_repo_path(v) for v in versions}
        www = root / "www"
        inputs = {
            "layout": REPO_LAYOUT,
            "versions": list(versions),
            "packages": debs.specs_digest(specs),
            "key": fpr,
            "base": base_rootfs.parent.name,
            "debian_wanted": sorted(DEBIAN_WANTED),
        }
        stamp = root / "build.json"
        try:
            if json.loads(stamp.read_text()).get("inputs") == inputs and all((www / p / "InRelease").is_file() for p in kpaths.values()):
                return Repos(www, kpath, k8s, fpr, kpaths)
        except (OSError, ValueError):
            pass
        t0 = time.monotonic()
        echo("building the lab's local apt repositories (stand-in Kubernetes packages + Debian subset)…")
        tmp_www = root / f".www-{os.getpid()}"
        shutil.rmtree(tmp_www, ignore_errors=True)
        built = [deb for v, path in kpaths.items() for deb in build_kubernetes_repo(tmp_www / path, gpg, fpr, v)]
        public = gpg.public_key(fpr)
        # the Debian subset: what the stand-ins' dependencies and containerd add to the base
        deps: set[str] = set(DEBIAN_WANTED)
        for s in specs:
            for dep in s.depends:
                name = dep.split()[0]
                if name not in STANDIN_NAMES:
                    deps.add(name)
        closure = debian_closure(base_rootfs, sorted(deps), echo)
        pool = root / "pool"
        files = fetch_debs(closure, pool, echo)
        arch = host_arch()
        ddir = tmp_www / "debian"
        (ddir / "pool").mkdir(parents=True)
        for f in files:  # pool names as in Debian's archive: no epoch in the file name
            fields = deb_fields(f)
            version = fields["Version"].split(":", 1)[-1]
            os.link(f, ddir / "pool" / f"{fields['Package']}_{version}_{fields['Architecture']}.deb")
        suite_dir = ddir / "dists" / base_image.SUITE
        idx = write_indexes(sorted(ddir.glob("pool/*.deb")), suite_dir / f"main/binary-{arch}", ddir)
        write_file(
            suite_dir / "Release",
            release_text(
                {f"main/binary-{arch}/{k}": v for k, v in idx.items()},
                origin="provisioner-lab",
                label="debian-subset",
                suite=base_image.SUITE,
                components="main",
                architectures=arch,
                description="Subset of Debian for the lab (real Debian packages, re-signed by the lab key)",
            ),
        )
        gpg.sign_release(suite_dir, fpr)
        write_file(tmp_www / KEY_FILE, public)
        old = root / f".old-www-{os.getpid()}"
        if www.exists():
            os.rename(www, old)
        os.rename(tmp_www, www)
        shutil.rmtree(old, ignore_errors=True)
        write_file(
            stamp,
            json.dumps(
                {"inputs": inputs, "debian": [f"{n}={v}" for n, v in closure], "build_seconds": round(time.monotonic() - t0, 1)}, indent=2
            )
            + "\n",
        )
        echo(f"apt repositories built in {time.monotonic() - t0:.1f} s: {len(built)} stand-in, {len(files)} Debian package(s)")
        return Repos(www, kpath, k8s, fpr, kpaths)
