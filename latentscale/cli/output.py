"""Terminal and JSON rendering for the command line: stdout carries results, stderr the rest.

- :func:`print_json` writes exactly one strict JSON document (non-finite floats become null);
- :func:`error` / :func:`warning` write one ``error: ...`` / ``warning: ...`` line on stderr;
- :class:`Progress` reports a long computation on stderr: a rich spinner on a terminal, plain
  time-stamped lines otherwise (logs, CI), nothing when disabled;
- :func:`render_description` / :func:`render_datasets` draw the ``data`` / ``datasets`` tables.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import warnings

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from latentscale.data.validate import name_rows
from latentscale.results.jsonable import to_json


def stdout() -> Console:
    # Created per call: sys.stdout may be swapped (pipes, test runners).
    return Console(highlight=False, soft_wrap=False)


def stderr() -> Console:
    return Console(stderr=True, highlight=False)


def error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)


def warning(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def print_json(obj) -> None:
    """Write one JSON document on stdout."""
    sys.stdout.write(json.dumps(to_json(obj), indent=2, allow_nan=False) + "\n")
    sys.stdout.flush()


class CapturedWarnings:
    """Collect the warnings raised inside the ``with`` block instead of printing them."""

    def __enter__(self) -> "CapturedWarnings":
        self._context = warnings.catch_warnings(record=True)
        self._caught = self._context.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        return self._context.__exit__(*exc)

    def messages(self) -> list[str]:
        """Each message once, in the order first raised (so far)."""
        return list(dict.fromkeys(str(w.message) for w in self._caught))


def merge_warnings(data_warnings, caught) -> list[str]:
    """The data set's own notes, then any other caught warning (a note is caught as ``'<name>: <note>'``)."""
    notes = list(data_warnings)
    return notes + [m for m in caught if not any(m == n or m.endswith(": " + n) for n in notes)]


def shorten(message: str, limit: int = 300) -> str:
    return message if len(message) <= limit else message[: limit - 1].rstrip() + "…"


class Progress:
    """Progress messages on stderr; call the instance with a message (usable as ``progress=``).

    On a terminal a rich spinner shows the current stage and its elapsed time; elsewhere (logs,
    CI) each message is a time-stamped line. While a stage runs longer than ``heartbeat`` seconds
    without a message (a first compilation, a long evaluation), a line repeats the stage with the
    time spent in it, so the command is never silent for long. Disabled: prints nothing.
    """

    def __init__(self, enabled: bool = True, heartbeat: float = 4.0):
        self.enabled = enabled
        self.console = stderr()
        self.live = enabled and self.console.is_terminal
        self.heartbeat = heartbeat
        self._status = None
        self._t0 = time.perf_counter()
        self._stage, self._stage_t0, self._last = "starting", self._t0, self._t0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self) -> "Progress":
        self._t0 = self._stage_t0 = self._last = time.perf_counter()
        if self.live:
            self._status = self.console.status("starting", spinner="dots")
            self._status.start()
        if self.enabled and self.heartbeat:
            self._thread = threading.Thread(target=self._beat, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        if self._status is not None:
            self._status.stop()
            self._status = None

    def _beat(self) -> None:
        while not self._stop.wait(0.5):
            now = time.perf_counter()
            with self._lock:
                if now - self._last < self.heartbeat:
                    continue
                self._emit(f"{self._stage} (still working, {now - self._stage_t0:.0f} s in this step)", now,
                           keep_stage=True)

    def _emit(self, message: str, now: float, keep_stage: bool = False) -> None:
        line = f"[{now - self._t0:6.1f}s] {message}"
        if not keep_stage:
            self._stage, self._stage_t0 = message, now
        self._last = now
        if self._status is not None:
            if not keep_stage:
                self.console.print(Text(line, style="dim"))
            self._status.update(Text(f"{self._stage} ({now - self._stage_t0:.0f} s)"))
        else:
            print(line, file=sys.stderr, flush=True)

    def warn(self, message: str) -> None:
        """A ``warning: ...`` line on stderr (above the spinner on a terminal)."""
        if not self.enabled:
            return
        with self._lock:
            self._last = time.perf_counter()
            if self._status is not None:
                self.console.print(Text(f"warning: {message}", style="yellow"))
            else:
                warning(message)

    def __call__(self, message: str) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._emit(message, time.perf_counter())


def _fmt(x, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def render_description(desc: dict, usable_rows: int) -> None:
    """The ``latentscale data`` report: counts, one row per benchmark, rows without covariates, warnings."""
    out = stdout()
    n_bench = len(desc["benchmarks"])
    out.print(Text(
        f"{desc['name']}: {desc['rows']} models, {desc['families']} families, {desc['groups']} groups, "
        f"{n_bench} benchmarks"
    ))
    out.print(Text(f"rows with every benchmark observed: {desc['complete_rows']}"))
    out.print(Text(f"rows with size and tokens (usable for fitting): {usable_rows}"))
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for col, justify in [("benchmark", "left"), ("floor", "right"), ("observed", "right"), ("missing", "right"),
                         ("min", "right"), ("mean", "right"), ("max", "right")]:
        table.add_column(col, justify=justify)
    for b in desc["benchmarks"]:
        table.add_row(
            Text(b["name"]), f"{b['floor']:.4g}", str(b["observed"]), f"{100 * b['missing_fraction']:.1f}%",
            _fmt(b["min"]), _fmt(b["mean"]), _fmt(b["max"]),
        )
    out.print(table)
    for what in ("size", "tokens"):
        rows = desc[f"rows_missing_{what}"]
        out.print(Text(f"rows missing {what}: " + (f"{len(rows)} ({name_rows(rows, 20)})" if rows else "none")))
    notes = desc["warnings"]
    if notes:
        out.print(Text(f"\nwarnings ({len(notes)}):", style="bold"))
        listing = Table.grid(padding=(0, 1))
        listing.add_column(no_wrap=True)
        listing.add_column()
        for note in notes:
            listing.add_row("-", Text(note))
        out.print(listing)
    else:
        out.print(Text("\nno warnings"))


def render_datasets(entries: list[dict]) -> None:
    """The ``latentscale datasets`` table."""
    out = stdout()
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("name", no_wrap=True)
    table.add_column("description")
    for e in entries:
        table.add_row(Text(e["name"]), Text(e["description"]))
    out.print(table)
