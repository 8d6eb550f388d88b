"""TEST DOUBLE: the on-machine lab as a Python API (not product code; product code never imports it).

``Lab(name)`` brings up Debian hosts as systemd-nspawn containers on bridge br-lab, writes an
inventory + known_hosts + ssh_config for them, reports on them and tears them down. See
provisioner_lab/README.md for the API and the layout on disk.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import shlex
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from provisioner_lab import aptrepo, base_image, debs, files, limits, nspawn, reposerver, zipapps
from provisioner_lab.network import (
    HOST_SIDE_ADDRESS,
    AddressRegistry,
    allocate,
    delete_bridge_if_unused,
    ensure_bridge,
)
from provisioner_lab.passwords import new_password, sha512_crypt
from provisioner_lab.paths import LabPaths, check_lab_name
from provisioner_lab.state import HostRecord, LabState, plan_new_hosts
from provisioner_lab.system import (
    LabError,
    check_nspawn_usable,
    ensure_host_packages,
    file_lock,
    remove_tree,
    require_root,
    run,
    write_file,
)

USERS = ("root", base_image.LAB_USER)
DISTRIBUTIONS = ("k3s", "kubeadm")
BOOT_TIMEOUT = 120.0
#: Hosts booting at once (a boot is CPU-heavy; more at once only makes each slower).
BOOT_CONCURRENCY = 6
#: Console lines shown when a host does not boot.
CONSOLE_TAIL_LINES = 25


@dataclass(frozen=True)
class LabHost:
    """One lab host as seen now (and, right after ``up``, how its boot went)."""

    name: str
    role: str
    address: str
    running: bool
    pid: int | None = None
    console_log: Path | None = None
    system_state: str | None = None  # "running" / "degraded" when this up booted it
    boot_seconds: float | None = None  # launch -> ssh answered, when this up booted it
    started: bool = False  # this up booted it (False: was already running)
    failed_units: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly view."""
        d = asdict(self)
        d["console_log"] = str(self.console_log) if self.console_log else None
        d["failed_units"] = list(self.failed_units)
        return d


def _silent(_msg: str) -> None:
    pass


class Lab:
    """One named lab of hosts on this machine (state in ``<state root>/<name>/``).

    ``echo`` receives progress lines (default: silent). Methods that change the machine need root.
    """

    def __init__(self, name: str = "lab", root: Path | str | None = None, echo: Callable[[str], None] | None = None) -> None:
        self.name = check_lab_name(name)
        self.paths = LabPaths.resolve(root)
        self.dir = self.paths.lab_dir(self.name)
        self.echo = echo or _silent

    # ---- paths ---------------------------------------------------------------------------

    @property
    def state_file(self) -> Path:
        return self.dir / "lab.json"

    @property
    def key_path(self) -> Path:
        """The lab's ed25519 client key (private; ``.pub`` beside it)."""
        return self.dir / "id_ed25519"

    @property
    def sudo_password_file(self) -> Path:
        """0600 file holding the lab user's sudo password."""
        return self.dir / "sudo-password"

    @property
    def lab_known_hosts(self) -> Path:
        """known_hosts kept in the state dir (used by :meth:`ssh`)."""
        return self.dir / "known_hosts"

    @property
    def inventory_path(self) -> Path | None:
        """Inventory written by the last ``up`` (None if the lab is not up)."""
        st = self.state()
        return Path(st.inventory) if st and st.inventory else None

    @property
    def known_hosts_path(self) -> Path:
        """known_hosts next to the inventory (the state dir's copy if no inventory yet)."""
        st = self.state()
        return Path(st.known_hosts) if st and st.known_hosts else self.lab_known_hosts

    @property
    def ssh_config_path(self) -> Path | None:
        """ssh_config next to the inventory (None if the lab is not up)."""
        st = self.state()
        return Path(st.ssh_config) if st and st.ssh_config else None

    def host_dir(self, host: str) -> nspawn.HostDir:
        return nspawn.HostDir(self.dir / "hosts" / host)

    # ---- reading -------------------------------------------------------------------------

    def exists(self) -> bool:
        """True when the lab has a state file."""
        return self.state_file.is_file()

    def state(self) -> LabState | None:
        """The recorded state, or None if the lab is not there."""
        try:
            return LabState.load(self.state_file)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            raise LabError(f"lab {self.name}: unreadable state {self.state_file}: {exc}") from exc

    def hosts(self) -> list[LabHost]:
        """Recorded hosts with whether their systemd-nspawn runs now."""
        st = self.state()
        if st is None:
            return []
        out = []
        for h in st.hosts:
            hd = self.host_dir(h.name)
            pid = nspawn.nspawn_pid(hd)
            out.append(LabHost(h.name, h.role, h.address, pid is not None, pid, hd.console_log))
        return out

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time each host has used so far (all its processes), for benchmarks: the hosts
        share this machine's cores, so their work bounds how fast many hosts can be set up."""
        st = self.state()
        usage = {h.name: nspawn.cpu_seconds(self.host_dir(h.name)) for h in (st.hosts if st else [])}
        return {name: seconds for name, seconds in usage.items() if seconds is not None}

    def sudo_password(self) -> str:
        """The lab user's sudo password (same on every host of this lab)."""
        try:
            return self.sudo_password_file.read_text().strip()
        except FileNotFoundError as exc:
            raise LabError(f"lab {self.name} is not there (no {self.sudo_password_file})") from exc

    def _address(self, host: str) -> str:
        st = self.state()
        for h in st.hosts if st else []:
            if host in (h.name, h.address):
                return h.address
        raise LabError(f"lab {self.name} has no host {host!r}")

    def ssh_argv(self, address: str, *, user: str = "root", connect_timeout: int = 5) -> list[str]:
        """System ssh arguments up to the destination: the lab key, its known_hosts, BatchMode."""
        return [
            "ssh",
            "-F",
            "/dev/null",
            "-i",
            os.fspath(self.key_path),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            f"UserKnownHostsFile={self.lab_known_hosts}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"ConnectTimeout={connect_timeout}",
            "-o",
            "LogLevel=ERROR",
            f"{user}@{address}",
        ]

    def ssh(
        self,
        host: str,
        command: str | Sequence[str],
        *,
        user: str = "root",
        check: bool = True,
        input: str | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` on ``host`` (name or address) with system ssh; text output captured.

        ``check`` raises subprocess.CalledProcessError on a non-zero exit (255: ssh itself failed).
        """
        cmd = command if isinstance(command, str) else shlex.join(command)
        argv = [*self.ssh_argv(self._address(host), user=user), "--", cmd]
        return subprocess.run(
            argv,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def ssh_reachable(self, host: str, timeout: float = 5) -> bool:
        """True when ``host`` runs ``true`` over ssh within ``timeout`` s."""
        try:
            return self.ssh(host, "true", check=False, timeout=timeout).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def status(self, check_ssh: bool = True) -> list[dict[str, object]]:
        """Per host: name, role, address, running, pid, ssh (reachable; None if not checked)."""
        hosts = self.hosts()
        reach: dict[str, bool | None] = {h.name: None for h in hosts}
        if check_ssh and hosts:
            with concurrent.futures.ThreadPoolExecutor(max_workers=len(hosts)) as pool:
                futs = {h.name: pool.submit(self.ssh_reachable, h.name, 5) for h in hosts if h.running}
                for n, f in futs.items():
                    reach[n] = f.result()
                for h in hosts:
                    if not h.running:
                        reach[h.name] = False
        return [
            {"name": h.name, "role": h.role, "address": h.address, "running": h.running, "pid": h.pid, "ssh": reach[h.name]} for h in hosts
        ]

    @classmethod
    def all(cls, root: Path | str | None = None, echo: Callable[[str], None] | None = None) -> list[Lab]:
        """Every lab with a state file under the state root."""
        paths = LabPaths.resolve(root)
        if not paths.state_root.is_dir():
            return []
        labs = []
        for d in sorted(paths.state_root.iterdir()):
            if (d / "lab.json").is_file():
                try:
                    labs.append(cls(d.name, root=root, echo=echo))
                except ValueError:
                    continue
        return labs

    # ---- up ------------------------------------------------------------------------------

    def up(
        self,
        servers: int = 1,
        agents: int = 2,
        inventory: Path | str | None = None,
        user: str = "root",
        distribution: str | None = None,
        boot_timeout: float = BOOT_TIMEOUT,
        boot_concurrency: int = BOOT_CONCURRENCY,
        raise_limits: bool = False,
    ) -> list[LabHost]:
        """Make the lab have ``servers`` + ``agents`` running hosts and write its inventory files.

        Changes: installs missing host packages, builds the base image once, creates the bridge,
        adds and boots missing hosts (recorded-but-stopped hosts are booted again with their
        identity), rewrites inventory / known_hosts / ssh_config. With ``distribution="kubeadm"``
        also builds the local apt repositories (cached), starts their server on 10.231.0.1 and
        points new hosts' apt at the local Debian subset only (``None``: the lab's recorded
        distribution, k3s for a new lab). Already done: hosts that run are
        left untouched. Refuses to shrink a lab or to change its distribution, and refuses before
        changing anything when the inotify limits are too low for the hosts to boot (raises them
        with ``raise_limits``). At most ``boot_concurrency`` hosts boot at once; a host that does
        not boot is reported with the tail of its console log.
        """
        if distribution is None:  # the lab's own, or k3s for a new lab
            recorded = self.state()
            distribution = recorded.distribution if recorded is not None and recorded.hosts else "k3s"
        if distribution not in DISTRIBUTIONS:
            raise LabError(f"--distribution {distribution}: use one of {', '.join(DISTRIBUTIONS)}")
        if user not in USERS:
            raise LabError(f"--user {user}: use one of {', '.join(USERS)}")
        require_root()
        ensure_host_packages(echo=self.echo)
        check_nspawn_usable()
        inv = Path(inventory) if inventory is not None else Path.cwd() / f"{self.name}.yaml"
        inv = inv.absolute()

        with file_lock(self.paths.lab_lock(self.name)):
            st = self.state()
            if st is not None and st.hosts and st.distribution != distribution:
                raise LabError(
                    f"lab {self.name} is a {st.distribution} lab; `provisioner lab down --name {self.name}` "
                    f"first to make a {distribution} lab"
                )
            new = plan_new_hosts(self.name, st.hosts if st else [], servers, agents)
            self._check_name_free()
            stopped = [h for h in (st.hosts if st else []) if not nspawn.is_running(self.host_dir(h.name))]
            limits.ensure_inotify(len(new) + len(stopped), raise_limits=raise_limits, echo=self.echo)
            base = self._base_for(st)
            repos = aptrepo.ensure_repos(self.paths, base, echo=self.echo) if distribution == "kubeadm" else None
            self._ensure_secrets()
            st = self._claim_hosts(st, base, new)
            st.distribution = distribution
            apt_sources = None
            if repos is not None:
                port = reposerver.ensure_server(self.paths, repos.www, self.state_file, echo=self.echo)
                st.repo_url = f"http://{HOST_SIDE_ADDRESS}:{port}/"
                st.package_repo = st.repo_url + repos.kubernetes_path
                st.save(self.state_file)
                apt_sources = (aptrepo.sources_list(st.repo_url), repos.key_file.read_text())

            password_hash = sha512_crypt(self.sudo_password())
            authorized = Path(f"{self.key_path}.pub").read_text()
            pubkeys: dict[str, str] = {}
            extra = shlex.split(os.environ.get("PROVISIONER_LAB_NSPAWN_EXTRA", ""))
            for h in st.hosts:
                hd = self.host_dir(h.name)
                pubkeys[h.name] = nspawn.prepare_identity(base, hd, h, authorized, password_hash)
            self._write_known_hosts(self.lab_known_hosts, st, pubkeys)
            to_boot = [h for h in st.hosts if not nspawn.is_running(self.host_dir(h.name))]
            if not to_boot:
                self.echo(f"lab {self.name}: all {len(st.hosts)} host(s) already running, nothing to boot")

            def launch(h: HostRecord) -> None:
                hd = self.host_dir(h.name)
                if apt_sources is not None:
                    nspawn.write_apt_sources(base, hd, apt_sources[0], aptrepo.HOST_KEYRING, apt_sources[1])
                nspawn.mount_overlay(base, hd)
                nspawn.start(hd, self.name, h.name, extra)
                self.echo(f"booting {h.name} ({h.address})")

            results = self._boot_all(to_boot, launch, boot_timeout, boot_concurrency)

            st.user = user
            st.inventory = os.fspath(inv)
            st.known_hosts = os.fspath(inv.parent / f"{inv.stem}.known_hosts")
            st.ssh_config = os.fspath(inv.parent / f"{inv.stem}.ssh_config")
            self._write_user_files(st, pubkeys)
            st.save(self.state_file)

        hosts = []
        for h in self.hosts():
            r = results.get(h.name)
            if r is None:
                hosts.append(h)
            else:
                state, secs, failed, _err = r
                hosts.append(LabHost(h.name, h.role, h.address, h.running, h.pid, h.console_log, state, secs, True, failed))
        bad = [(n, r) for n, r in results.items() if r[0] not in ("running", "degraded")]
        if bad:
            for n, _ in bad:
                log = self.host_dir(n).console_log
                self.echo(f"--- last lines of {n}'s console ({log}) ---")
                for line in console_tail(log):
                    self.echo(f"  {line}")
            n, r = bad[0]
            others = f" (also failed: {', '.join(b[0] for b in bad[1:])})" if len(bad) > 1 else ""
            raise LabError(
                f"host {n} did not boot: {r[3]}; see {self.host_dir(n).console_log}{others}. "
                f"The lab is left as it is: `provisioner lab down --name {self.name}` removes it"
            )
        return hosts

    def _check_name_free(self) -> None:
        """Refuse when a lab of the same name runs from another state root (same host names,
        veth names and cgroups would clash)."""
        with file_lock(self.paths.machine_lock):
            for entry in AddressRegistry(self.paths.address_dir).owned_by_others(self.state_file).values():
                if entry.get("lab") == self.name:
                    raise LabError(f"a lab named {self.name!r} already runs from {Path(entry['state']).parent}; pick another --name")

    def _base_for(self, st: LabState | None) -> Path:
        """Base rootfs for this lab: the one its hosts already use, else the current (built if needed)."""
        if st is not None:
            base = Path(st.base_rootfs)
            if base_image.is_ready(base.parent):
                return base
            if st.hosts:
                raise LabError(
                    f"lab {self.name}: its base image {base.parent} is gone; `provisioner lab down --name {self.name}` and up again"
                )
        return base_image.ensure_base_image(self.paths.cache_root, echo=self.echo)

    def _ensure_secrets(self) -> None:
        """Lab dir (0700), client key and sudo password. Already done: the files exist."""
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        if not self.key_path.is_file():
            for f in (self.key_path, Path(f"{self.key_path}.pub")):
                f.unlink(missing_ok=True)
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"provisioner-lab-{self.name}", "-f", self.key_path])
        os.chmod(self.key_path, 0o600)
        if not self.sudo_password_file.is_file():
            write_file(self.sudo_password_file, new_password() + "\n", mode=0o600)

    def _claim_hosts(self, st: LabState | None, base: Path, new: list[tuple[str, str]]) -> LabState:
        """Under the machine lock: allocate addresses for ``new`` hosts, record them, claim them
        in the machine registry, make sure br-lab exists."""
        with file_lock(self.paths.machine_lock):
            registry = AddressRegistry(self.paths.address_dir)
            if st is None:
                st = LabState(name=self.name, base_rootfs=os.fspath(base))
            used = set(registry.claimed()) | {h.address for h in st.hosts}
            addresses = allocate(len(new), used)
            added = [HostRecord(n, r, a) for (n, r), a in zip(new, addresses)]
            st.hosts = sorted(st.hosts + added, key=lambda h: (h.role != "server", _host_index(h.name)))
            st.save(self.state_file)
            claims = registry.claimed()
            for h in st.hosts:
                owner = claims.get(h.address)
                if owner is None:
                    registry.claim(h.address, self.state_file, self.name, h.name)
                elif owner.get("state") != os.fspath(self.state_file):
                    raise LabError(f"{h.name}: address {h.address} is claimed by lab {owner.get('lab')}")
            if ensure_bridge():
                self.echo("created bridge br-lab (10.231.0.1/24)")
        return st

    def _boot_all(
        self, hosts: list[HostRecord], launch: Callable[[HostRecord], None], timeout: float, concurrency: int
    ) -> dict[str, tuple[str, float, tuple[str, ...], str]]:
        """Boot ``hosts`` with at most ``concurrency`` booting at once: ``launch`` runs here, one
        host after the other; the waits for ssh run in threads. Returns {name: (state, seconds,
        failed units, error)}."""
        results: dict[str, tuple[str, float, tuple[str, ...], str]] = {}
        pending = list(hosts)
        booting: dict[concurrent.futures.Future[tuple[str, float, tuple[str, ...], str]], HostRecord] = {}
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            while pending or booting:
                while pending and len(booting) < max(1, concurrency):
                    h = pending.pop(0)
                    t0 = time.monotonic()
                    launch(h)
                    booting[pool.submit(self._wait_ready, h, t0, timeout)] = h
                done, _ = concurrent.futures.wait(booting, return_when=concurrent.futures.FIRST_COMPLETED)
                for fut in done:
                    h = booting.pop(fut)
                    results[h.name] = fut.result()
                    state, secs, failed, err = results[h.name]
                    line = f"{h.name} ({h.address}): {state} after {secs:.1f} s"
                    if failed:
                        line += f" (failed units: {', '.join(failed)})"
                    self.echo(line if not err else f"{h.name} ({h.address}): FAILED after {secs:.1f} s: {err}")
        return {h.name: results[h.name] for h in hosts}

    def _wait_ready(self, h: HostRecord, t0: float, timeout: float) -> tuple[str, float, tuple[str, ...], str]:
        """Poll ``h`` over ssh until ``systemctl is-system-running --wait`` answers.

        Returns (state, seconds since launch, failed units, error text or "")."""
        hd = self.host_dir(h.name)
        deadline = t0 + timeout
        last_err = "no answer"
        while time.monotonic() < deadline:
            if not nspawn.is_running(hd) and nspawn.loop_pid(hd) is None:
                return "stopped", time.monotonic() - t0, (), "systemd-nspawn exited"
            try:
                proc = subprocess.run(
                    [*self.ssh_argv(h.address, connect_timeout=2), "--", "systemctl is-system-running --wait"],
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    text=True,
                    timeout=max(1.0, deadline - time.monotonic()),
                )
            except subprocess.TimeoutExpired:
                break
            state = proc.stdout.strip()
            if proc.returncode != 255 and state:
                secs = time.monotonic() - t0
                failed: tuple[str, ...] = ()
                if state == "degraded":
                    out = subprocess.run(
                        [*self.ssh_argv(h.address), "--", "systemctl --failed --plain --no-legend"],
                        stdin=subprocess.DEVNULL,
                        capture_output=True,
                        text=True,
                        timeout=30,
                    ).stdout
                    failed = tuple(line.split()[0] for line in out.splitlines() if line.split())
                err = "" if state in ("running", "degraded") else f"system state {state}"
                return state, secs, failed, err
            last_err = (proc.stderr.strip().splitlines() or ["no answer"])[-1]
            time.sleep(0.3)
        return "unreachable", time.monotonic() - t0, (), f"no ssh answer within {timeout:.0f} s (last: {last_err})"

    def _write_known_hosts(self, path: Path, st: LabState, pubkeys: dict[str, str]) -> None:
        write_file(path, files.known_hosts_text(self.name, [(h.address, pubkeys[h.name]) for h in st.hosts]))

    def _write_user_files(self, st: LabState, pubkeys: dict[str, str]) -> None:
        """Inventory, known_hosts and ssh_config next to it (rewritten only if the text changed)."""
        assert st.inventory and st.known_hosts and st.ssh_config
        texts = {
            Path(st.inventory): self._inventory_text(st, st.hosts),
            Path(st.known_hosts): files.known_hosts_text(self.name, [(h.address, pubkeys[h.name]) for h in st.hosts]),
            Path(st.ssh_config): files.ssh_config_text(
                self.name, st.hosts, user=st.user, private_key=self.key_path, known_hosts=Path(st.known_hosts)
            ),
        }
        for path, text in texts.items():
            try:
                if path.read_text() == text:
                    continue
            except OSError:
                pass
            write_file(path, text)

    def _inventory_text(self, st: LabState, hosts: Sequence[HostRecord], proxy_jump: str | None = None) -> str:
        """The inventory of ``hosts`` (all of them reached through ``proxy_jump`` when given)."""
        assert st.known_hosts
        if st.distribution == "kubeadm":
            return files.inventory_text(
                lab=self.name,
                hosts=hosts,
                version=debs.minor_series(debs.kubernetes_version()),
                k3s_binary=None,
                install_script=None,
                user=st.user,
                private_key=self.key_path,
                known_hosts=Path(st.known_hosts),
                distribution="kubeadm",
                package_repo=st.package_repo,
                proxy_jump=proxy_jump,
            )
        # the k3s stand-in as the hosts get it: one zipapp, built from the package's modules
        return files.inventory_text(
            lab=self.name,
            hosts=hosts,
            version=zipapps.STANDINS["k3s"].version,
            k3s_binary=self.standin_k3s(),
            install_script=zipapps.install_script(),
            user=st.user,
            private_key=self.key_path,
            known_hosts=Path(st.known_hosts),
            proxy_jump=proxy_jump,
        )

    def bastion_inventory(self, bastion: str, path: Path | str) -> Path:
        """Write an inventory of every lab host but ``bastion``, each reached through ``bastion``
        (``ssh.proxy_jump: root@<its address>``: its real sshd forwards the connections; its host
        key is checked like the others', strictly, against the lab's known_hosts). Returns
        ``path``. Changes: writes ``path`` only; the bastion stays an ordinary lab host."""
        st = self.state()
        if st is None or not st.known_hosts:
            raise LabError(f"lab {self.name} is not up")
        jump = next((h for h in st.hosts if bastion in (h.name, h.address)), None)
        if jump is None:
            raise LabError(f"lab {self.name} has no host {bastion!r}")
        out = Path(path)
        write_file(out, self._inventory_text(st, [h for h in st.hosts if h != jump], proxy_jump=f"root@{jump.address}"))
        return out

    def standin_k3s(self, version: str | None = None) -> Path:
        """The k3s stand-in executable claiming ``version`` (default: its own), built once into the
        lab's cache: what ``cluster.airgap.k3s_binary`` names; another version is an upgrade."""
        return zipapps.build_cached("k3s", self.paths.cache_root / "standin", version)

    # ---- down ----------------------------------------------------------------------------

    def down(self) -> bool:
        """Stop and remove every host of the lab and its state; delete br-lab if no lab remains.

        Changes: stops the lab's own processes (by PID, comm checked), unmounts overlays, removes
        cgroups, host dirs, the lab's state dir and its address claims; for a kubeadm lab, stops
        the apt repository server when no other lab uses it. Keeps the base image, the built
        repositories and the inventory files. Already done: no state dir (returns False)."""
        require_root()
        with file_lock(self.paths.lab_lock(self.name)):
            if not self.dir.exists():
                return False
            st = None
            try:
                st = self.state()
            except LabError:
                pass
            hosts_root = self.dir / "hosts"
            dirs = [nspawn.HostDir(d) for d in sorted(hosts_root.iterdir())] if hosts_root.is_dir() else []
            if dirs:
                with concurrent.futures.ThreadPoolExecutor(max_workers=len(dirs)) as pool:
                    for hd, f in [(hd, pool.submit(nspawn.destroy, hd)) for hd in dirs]:
                        f.result()
                        self.echo(f"stopped {hd.root.name}")
            with file_lock(self.paths.machine_lock):
                registry = AddressRegistry(self.paths.address_dir)
                for h in st.hosts if st else []:
                    registry.release(h.address, self.state_file)
                remove_tree(self.dir)
                reposerver.release(self.paths, self.state_file, echo=self.echo)
                others = registry.claimed()
                if not others:
                    if delete_bridge_if_unused():
                        self.echo("deleted bridge br-lab (no lab left)")
                else:
                    labs = sorted({e.get("lab", "?") for e in others.values()})
                    self.echo(f"kept bridge br-lab (still used by lab {', '.join(labs)})")
        return True


def console_tail(path: Path, lines: int = CONSOLE_TAIL_LINES) -> list[str]:
    """The last ``lines`` lines of a host's console log, control characters removed ([] if none)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError:
        return []
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    clean = ["".join(ch for ch in line if ch.isprintable() or ch == "\t") for line in text.splitlines()]
    return [line for line in clean if line.strip()][-lines:]


def _host_index(name: str) -> int:
    digits = ""
    for ch in reversed(name):
        if not ch.isdigit():
            break
        digits = ch + digits
    return int(digits) if digits else 0


def status_json(labs: Sequence[Lab], check_ssh: bool = True) -> str:
    """JSON for `lab status --output json`: [{lab, hosts: [...]}, …]."""
    return json.dumps([{"lab": lab.name, "dir": str(lab.dir), "hosts": lab.status(check_ssh)} for lab in labs], indent=2)
