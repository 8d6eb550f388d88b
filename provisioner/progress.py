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
    """rich live table on a terminal, plain lines otherwise.

    On a terminal an event only updates the host's row; the table is drawn at most
    ``REFRESH_PER_SECOND`` times a second and shows as many rows as the terminal has lines
    (failed and busy hosts first, then a count of the others), so a thousand hosts cost what
    a handful do per event.
    """

    REFRESH_PER_SECOND = 8

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
            if not self.console.is_terminal or self._live is not None:
                return
        live = Live(
            get_renderable=self._render,
            console=self.console,  # draws: takes the lock
            refresh_per_second=self.REFRESH_PER_SECOND,
            transient=False,
        )
        with self._lock:
            self._live = live
        live.start()

    def step(self, host: str, text: str) -> None:
        self._update(host, text, "run")

    def done(self, host: str, text: str, ok: bool = True) -> None:
        self._update(host, text, "ok" if ok else "failed")

    def note(self, text: str) -> None:
        with self._lock:
            if self._live is not None:
                self._notes = [*self._notes[-2:], text]
                return
        self.console.print(f"[dim]{self._elapsed()}[/] {text}", highlight=False)

    def end(self) -> None:
        with self._lock:
            live, self._live = self._live, None
            self._notes = []
        if live is not None:
            live.stop()  # draws the final table once more

    def _update(self, host: str, text: str, state: str) -> None:
        with self._lock:
            row = self._rows.setdefault(host, ["", ""])
            if row[1] == text and self._state.get(host) == state:
                return
            row[1] = text
            self._state[host] = state
            if self._live is not None:
                return  # drawn at the next refresh
        mark = {"ok": "[green]✓[/]", "failed": "[red]✗[/]"}.get(state, "•")
        self.console.print(f"[dim]{self._elapsed()}[/] {mark} {host}: {text}", highlight=False)

    def _elapsed(self) -> str:
        return f"{time.monotonic() - self._started:6.1f}s"

    def _render(self) -> Group:
        with self._lock:
            rows = [(name, role, text, self._state.get(name, "run")) for name, (role, text) in self._rows.items()]
            notes = list(self._notes)
        room = max(3, self.console.size.height - 2 - len(notes))
        hidden: dict[str, int] = {}
        if len(rows) > room:
            rank = {"failed": 0, "run": 1, "ok": 2}
            busy = {name for name, _, text, state in rows if state == "run" and text != "waiting"}
            chosen = sorted(rows, key=lambda r: rank[r[3]] if r[3] != "run" or r[0] in busy else 3)[: room - 1]
            keep = {r[0] for r in chosen}
            for name, _, text, state in rows:
                if name not in keep:
                    key = "waiting" if state == "run" and text == "waiting" else {"ok": "done"}.get(state, state)
                    hidden[key] = hidden.get(key, 0) + 1
            rows = [r for r in rows if r[0] in keep]
        table = Table.grid(padding=(0, 2))
        for name, role, text, state in rows:
            mark = {"ok": Text("✓", style="green"), "failed": Text("✗", style="red")}.get(state) or Spinner("dots")
            table.add_row(mark, Text(name, style="bold"), Text(role, style="dim"), Text(text, style="red" if state == "failed" else ""))
        parts: list[Table | Text] = [table]
        if hidden:
            counts = ", ".join(f"{count} {key}" for key, count in sorted(hidden.items()))
            parts.append(Text(f"… {sum(hidden.values())} more hosts: {counts}", style="dim"))
        return Group(*parts, *(Text(n, style="cyan") for n in notes))
