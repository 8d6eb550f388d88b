"""The program's entry point: SIGINT/SIGTERM handlers first, then the command line.

The handlers are installed before the CLI and its dependencies are imported, so an interrupt at
any moment — start-up, connecting, applying — ends the same way: the run log (when one is open)
gets a last line with the signal and the exit code, stderr gets one line, and the process exits
128 + the signal number (130 for Ctrl-C, 143 for SIGTERM), without a traceback. With
``--output json`` stdout gets the error as JSON too. This module imports only the standard library.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from types import FrameType
from typing import NoReturn

SIGNALS = (signal.SIGINT, signal.SIGTERM)
GRACE_SECONDS = 2.0  # time the main thread gets to unwind (temporary files, sessions) before exit


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived. A ``BaseException``, so no ``except Exception`` swallows it."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        self.exit_code = 128 + signum
        super().__init__(f"interrupted by {self.signal_name}")


_ending = threading.Lock()
_as_json = False


def json_requested(argv: list[str]) -> bool:
    """Whether ``argv`` asks for ``--output json`` (read before click parses anything)."""
    for index, arg in enumerate(argv):
        if arg in ("--output=json", "-ojson"):
            return True
        if arg in ("--output", "-o") and index + 1 < len(argv) and argv[index + 1] == "json":
            return True
    return False


def end(error: Interrupted) -> NoReturn:
    """Log the interrupt in the run log (when one is open), print one line, exit 128 + N now."""
    _ending.acquire()  # a second caller waits here until the first one has ended the process
    runlog = sys.modules.get("provisioner.runlog")
    log_path = runlog.end_interrupted(error.signal_name, error.exit_code) if runlog is not None else None
    line = f"interrupted by {error.signal_name}; exit code {error.exit_code}"
    try:
        if _as_json:
            data = {
                "ok": False,
                "error": {"type": "Interrupted", "lines": [line]},
                "exit_code": error.exit_code,
                "log": str(log_path) if log_path else None,
            }
            sys.stdout.write(json.dumps(data, indent=2) + "\n")
        sys.stdout.flush()
        sys.stderr.write(f"error: {line}" + (f" (log: {log_path})" if log_path else "") + "\n")
        sys.stderr.flush()
    finally:
        os._exit(error.exit_code)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """Raise ``Interrupted`` in the main thread; end the process anyway after a short grace."""
    error = Interrupted(signum)
    for other in SIGNALS:  # a second signal while ending changes nothing
        signal.signal(other, signal.SIG_IGN)
    timer = threading.Timer(GRACE_SECONDS, end, args=(error,))
    timer.daemon = True
    timer.start()
    raise error


def _exit_now(signum: int, frame: FrameType | None) -> None:
    os._exit(128 + signum)


def install_handlers() -> None:
    for signum in SIGNALS:
        signal.signal(signum, _on_signal)


def run() -> NoReturn:
    """``provisioner``: install the handlers, then import and run the command line."""
    global _as_json
    install_handlers()
    _as_json = json_requested(sys.argv[1:])
    try:
        from provisioner.cli import main

        main()
    except Interrupted as error:
        end(error)
    except KeyboardInterrupt:  # a handler replaced by a library: still one line and 130
        end(Interrupted(signal.SIGINT))
    except SystemExit:
        for signum in SIGNALS:  # the run is over: a late signal just ends the process
            signal.signal(signum, _exit_now)
        raise
    sys.exit(0)
