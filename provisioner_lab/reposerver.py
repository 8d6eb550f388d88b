"""TEST DOUBLE: the HTTP server of the lab's local apt repositories (not product code).

A small static file server (read-only GET/HEAD) for ``<cache>/apt-repos/www``, bound to
10.231.0.1 -- this machine's address on br-lab -- and to nothing else, so only lab hosts (and
this machine) reach it. It runs detached, named ``lab-apt-repo`` (its comm, checked before any
signal), and is shared by every kubeadm lab that uses the same served directory.

Its record ``<run root>/apt-repo-servers/<id>.json`` holds pid, port, served directory and the
state files of the labs using it; ``release`` removes a lab and stops the server (by PID, comm
checked) when none is left.

Run as ``python -m provisioner_lab.reposerver --bind 10.231.0.1 --port 8181 --root DIR
--pid-file FILE``.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import json
import os
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from provisioner_lab.network import HOST_SIDE_ADDRESS
from provisioner_lab.paths import LabPaths
from provisioner_lab.system import LabError, file_lock, pid_is, read_pid, signal_if, wait_gone, write_file

COMM = "lab-apt-repo"
DEFAULT_PORT = 8181
PORT_RANGE = range(DEFAULT_PORT, DEFAULT_PORT + 20)


# ---- the server process --------------------------------------------------------------------


class _Handler(http.server.SimpleHTTPRequestHandler):
    server_version = "provisioner-lab-apt-repo"
    sys_version = ""

    def log_message(self, fmt: str, *args: object) -> None:
        sys.stderr.write("%s %s %s\n" % (time.strftime("%F %T"), self.client_address[0], fmt % args))

    def do_POST(self) -> None:
        self.send_error(405)

    do_PUT = do_DELETE = do_PATCH = do_POST


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(bind: str, port: int, root: Path, pid_file: Path | None = None) -> None:
    """Serve ``root`` on ``bind:port`` until SIGTERM."""
    try:
        Path("/proc/self/comm").write_text(COMM)
    except OSError:
        pass
    handler = functools.partial(_Handler, directory=os.fspath(root))
    httpd = _Server((bind, port), handler)
    if pid_file is not None:
        write_file(pid_file, f"{os.getpid()}\n")
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=httpd.shutdown, daemon=True).start())
    sys.stderr.write(f"{time.strftime('%F %T')} serving {root} on http://{bind}:{port}/ (pid {os.getpid()})\n")
    sys.stderr.flush()
    try:
        httpd.serve_forever(poll_interval=0.5)
    finally:
        httpd.server_close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="provisioner lab: static apt repository server (test double)")
    ap.add_argument("--bind", default=HOST_SIDE_ADDRESS)
    ap.add_argument("--port", type=int, default=DEFAULT_PORT)
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--pid-file", type=Path)
    a = ap.parse_args(argv)
    if a.bind in ("0.0.0.0", "::", ""):
        ap.error("refusing to listen on every address; bind the lab bridge address")
    serve(a.bind, a.port, a.root, a.pid_file)
    return 0


# ---- management from `lab up` / `lab down` ------------------------------------------------


def _record_dir(paths: LabPaths) -> Path:
    return paths.run_root / "apt-repo-servers"


def _record_path(paths: LabPaths, www: Path) -> Path:
    rid = hashlib.sha256(os.fspath(www.resolve()).encode()).hexdigest()[:12]
    return _record_dir(paths) / f"{rid}.json"


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _port_free(bind: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((bind, port))
            return True
        except OSError:
            return False


def _answers(bind: str, port: int) -> bool:
    try:
        with socket.create_connection((bind, port), timeout=1):
            return True
    except OSError:
        return False


def ensure_server(paths: LabPaths, www: Path, user: Path, echo: Callable[[str], None] = print, bind: str = HOST_SIDE_ADDRESS) -> int:
    """Make sure a repository server serves ``www`` on ``bind`` and record ``user`` (a lab's
    state file) as using it; return its port.

    Changes: starts the server (detached, comm lab-apt-repo) on the recorded port, else the
    first free one from 8181; writes the record. Already done: the recorded PID is alive with
    that comm -- then only ``user`` is added to the record."""
    rec_path = _record_path(paths, www)
    with file_lock(_record_dir(paths) / "lock"):
        rec = _load(rec_path)
        users = sorted({*rec.get("users", []), os.fspath(user)})
        pid = rec.get("pid")
        if pid_is(pid, COMM) and rec.get("www") == os.fspath(www):
            rec["users"] = users
            write_file(rec_path, json.dumps(rec, indent=2) + "\n", mode=0o600)
            return int(rec["port"])
        wanted = [rec["port"]] if rec.get("port") else []
        port = next((p for p in [*wanted, *PORT_RANGE] if _port_free(bind, p)), None)
        if port is None:
            raise LabError(f"no free port for the lab apt repository on {bind} ({PORT_RANGE.start}-{PORT_RANGE.stop - 1})")
        pid_file = rec_path.with_suffix(".pid")
        pid_file.unlink(missing_ok=True)
        log = rec_path.with_suffix(".log")
        with open(log, "ab") as out:
            subprocess.run(
                [
                    "setsid",
                    "-f",
                    sys.executable,
                    "-m",
                    "provisioner_lab.reposerver",
                    "--bind",
                    bind,
                    "--port",
                    str(port),
                    "--root",
                    os.fspath(www),
                    "--pid-file",
                    os.fspath(pid_file),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                check=True,
                close_fds=True,
                env={**os.environ, "PYTHONPATH": _package_parent()},
            )
        deadline = time.monotonic() + 15
        new_pid = None
        while time.monotonic() < deadline:
            new_pid = read_pid(pid_file)
            if pid_is(new_pid, COMM) and _answers(bind, port):
                break
            time.sleep(0.1)
        else:
            raise LabError(f"the lab apt repository server did not start on {bind}:{port}; see {log}")
        write_file(
            rec_path,
            json.dumps({"pid": new_pid, "port": port, "bind": bind, "www": os.fspath(www), "users": users}, indent=2) + "\n",
            mode=0o600,
        )
        echo(f"apt repository server: http://{bind}:{port}/ (pid {new_pid})")
        return port


def _package_parent() -> str:
    """The directory holding the ``provisioner`` package, for the server's PYTHONPATH."""
    parent = os.fspath(Path(__file__).resolve().parents[2])
    old = os.environ.get("PYTHONPATH")
    return f"{parent}:{old}" if old else parent


def release(paths: LabPaths, user: Path, echo: Callable[[str], None] = print) -> None:
    """Remove ``user`` from every server record; stop a server nobody uses any more.

    Changes: records; SIGTERM (then SIGKILL) to the server's PID if its comm is lab-apt-repo.
    Already done: no record names ``user`` and no unused server runs."""
    d = _record_dir(paths)
    if not d.is_dir():
        return
    with file_lock(d / "lock"):
        for rec_path in sorted(d.glob("*.json")):
            rec = _load(rec_path)
            users = [u for u in rec.get("users", []) if u != os.fspath(user) and Path(u).is_file()]
            if users:
                rec["users"] = users
                write_file(rec_path, json.dumps(rec, indent=2) + "\n", mode=0o600)
                continue
            pid = rec.get("pid")
            if signal_if(pid, COMM, signal.SIGTERM):
                if not wait_gone(pid, COMM, 5):
                    signal_if(pid, COMM, signal.SIGKILL)
                echo(f"stopped the lab apt repository server (pid {pid}, no kubeadm lab left)")
            for f in (rec_path, rec_path.with_suffix(".pid")):
                f.unlink(missing_ok=True)


def server_for(paths: LabPaths, www: Path) -> dict:
    """The record of the server for ``www`` ({} if none)."""
    return _load(_record_path(paths, www))


if __name__ == "__main__":
    sys.exit(main())
