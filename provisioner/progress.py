"""Progress on the console: one live line per host with its current step.

``LiveReporter`` draws with rich on a terminal and prints plain ``host: step`` lines elsewhere
(CI logs); ``SilentReporter`` prints nothing (``--output json``).
"""

from __future__ import annotations

import threading
import time

from rich.console import Console, Group
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text


class SilentReporter:
    """Reports nothing; the base of the others."""

    def begin(self, hosts: list[tuple[str, str]]) -> None:
        """Start showing ``hosts`` as (name, role) pairs."""

    def step(self, host: str, text: str) -> None:
        """``host`` is now doing ``text``."""

    def done(self, host: str, text: str, ok: bool = True) -> None:
        """``host`` finished with ``text``."""

    def note(self, text: str) -> None:
        """A line about the whole cluster."""

    def end(self) -> None:
        """Stop drawing."""


class LiveReporter(SilentReporter):
    """rich live table on a terminal, plain lines otherwise."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._rows: dict[str, list[str]] = {}
        self._state: dict[str, str] = {}  # "run" | "ok" | "failed"
        self._notes: list[str] = []
        self._lock = threading.Lock()
        self._live: Live | None = None
        self._started = time.monotonic()

    def begin(self, hosts: list[tuple[str, str]]) -> None:
        with self._lock:
            for name, role in hosts:
                self._rows.setdefault(name, [role, "waiting"])
                self._state.setdefault(name, "run")
            if self.console.is_terminal and self._live is None:
                self._live = Live(self._render(), console=self.console, refresh_per_second=8, transient=False)
                self._live.start()

    def step(self, host: str, text: str) -> None:
        self._update(host, text, "run")

    def done(self, host: str, text: str, ok: bool = True) -> None:
        self._update(host, text, "ok" if ok else "failed")

    def note(self, text: str) -> None:
        with self._lock:
            if self._live is not None:
                self._notes.append(text)
                self._notes = self._notes[-3:]
                self._live.update(self._render())
            else:
                self.console.print(f"[dim]{self._elapsed()}[/] {text}", highlight=False)

    def end(self) -> None:
        with self._lock:
            if self._live is not None:
                self._notes = []
                self._live.update(self._render())
                self._live.stop()
                self._live = None

    def _update(self, host: str, text: str, state: str) -> None:
        with self._lock:
            row = self._rows.setdefault(host, ["", ""])
            if row[1] == text and self._state.get(host) == state:
                return
            row[1] = text
            self._state[host] = state
            if self._live is not None:
                self._live.update(self._render())
            else:
                mark = {"ok": "[green]✓[/]", "failed": "[red]✗[/]"}.get(state, "•")
                self.console.print(f"[dim]{self._elapsed()}[/] {mark} {host}: {text}", highlight=False)

    def _elapsed(self) -> str:
        return f"{time.monotonic() - self._started:6.1f}s"

    def _render(self) -> Group:
        table = Table.grid(padding=(0, 2))
        for name, (role, text) in self._rows.items():
            state = self._state.get(name, "run")
            mark = {"ok": Text("✓", style="green"), "failed": Text("✗", style="red")}.get(state) or Spinner("dots")
            table.add_row(mark, Text(name, style="bold"), Text(role, style="dim"), Text(text, style="red" if state == "failed" else ""))
        notes = [Text(n, style="cyan") for n in self._notes]
        return Group(table, *notes)
