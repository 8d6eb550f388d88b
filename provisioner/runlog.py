"""The run log: every command, exit code and timing per host, with secrets masked.

Each run writes its own file under the user's state directory
(``$XDG_STATE_HOME/provisioner/logs`` or ``~/.local/state/provisioner/logs``) unless ``--log-file``
names one, and the CLI prints where it is.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

from provisioner.secrets import RedactingFilter

FORMAT = "%(asctime)s.%(msecs)03d %(levelname)-7s %(threadName)s %(name)s: %(message)s"


def state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "provisioner"


def default_log_path(action: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return state_dir() / "logs" / f"{stamp}-{action}-{os.getpid()}.log"


_handlers: list[logging.Handler] = []
_path: Path | None = None


def start(action: str, log_file: Path | None = None, *, debug: bool = False) -> Path:
    """Send the ``provisioner`` loggers to a new 0600 log file (and to stderr with ``debug``)."""
    global _path
    stop()
    path = log_file or default_log_path(action)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.close(fd)
    handler: logging.Handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT, datefmt="%Y-%m-%dT%H:%M:%S"))
    handler.addFilter(RedactingFilter())
    _handlers.append(handler)
    if debug:
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        console.addFilter(RedactingFilter())
        _handlers.append(console)
    logger = logging.getLogger("provisioner")
    logger.setLevel(logging.DEBUG)
    for h in _handlers:
        logger.addHandler(h)
    for noisy in ("paramiko", "invoke", "fabric"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
        for h in _handlers:
            logging.getLogger(noisy).addHandler(h)
    logger.info("provisioner %s started: %s", action, " ".join(_safe_argv()))
    _path = path
    return path


def end_interrupted(signal_name: str, exit_code: int) -> Path | None:
    """Write the last line of an interrupted run (signal and exit code), close the log, return its
    path; nothing when no run log is open (an interrupt during start-up)."""
    path = _path
    if path is None:
        return None
    logging.getLogger("provisioner").warning("interrupted by %s; exit code %d", signal_name, exit_code)
    stop()
    return path


def stop() -> None:
    """Detach and close this process's run-log handlers."""
    global _path
    _path = None
    for handler in _handlers:
        for name in ("provisioner", "paramiko", "invoke", "fabric"):
            logging.getLogger(name).removeHandler(handler)
        handler.close()
    _handlers.clear()


def _safe_argv() -> list[str]:
    return [os.path.basename(sys.argv[0])] + sys.argv[1:]
