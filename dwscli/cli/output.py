"""The one output sink of the CLI.

Data goes to stdout: rich tables for people, or JSON for scripts when ``--json`` is given.
Everything else (progress, notes, warnings, errors) goes to stderr, so ``dws … --json | jq`` and
``dws … > out.txt`` only ever see data. Consoles are created per call and resolve
``sys.stdout``/``sys.stderr`` when they print, which keeps test runners' captures working.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.table import Table


# C0 and C1 control characters (ESC starts terminal sequences) except tab and newline, DEL,
# bidirectional overrides, and the surrogates Python uses for bytes of non-UTF-8 file names.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\udc80-\udcff]")


_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # a byte of a non-UTF-8 name (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe_text(text: object) -> str:
    """``str(text)`` with every character that could drive the terminal shown escaped.

    File names and metadata values come from untrusted files; an ESC in one must appear as
    ``\\x1b`` rather than clear the screen or retitle the window.
    """
    return _UNSAFE.sub(_escape, str(text))


def stdout_console() -> Console:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


def stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _json_default(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def to_json(data: object) -> str:
    """JSON text; the bytes of a non-UTF-8 file name (surrogates) as ``\\udcNN`` escapes, which
    JSON allows and which decode back to the same Python string."""
    text = json.dumps(data, indent=2, default=_json_default, ensure_ascii=False)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def format_number(value: object) -> str:
    """A table cell for a metric: floats to 4 significant digits, None as ``-``."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def make_table(
    columns: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    title: str | None = None,
    no_wrap: Sequence[str] = (),
    min_width: Mapping[str, int] | None = None,
) -> Table:
    """A plain rich table; cells are shown as text, never as rich markup.

    Columns named in ``no_wrap`` are never broken (short values such as specs and numbers); the
    others fold long values (paths) to fit the terminal, keeping at least ``min_width``.
    """
    from rich.table import Table
    from rich.text import Text

    table = Table(
        title=None if title is None else Text(safe_text(title)),
        title_justify="left",
        header_style="bold",
    )
    for column in columns:
        table.add_column(
            column,
            overflow="fold",
            no_wrap=column in no_wrap,
            min_width=(min_width or {}).get(column),
        )
    for row in rows:
        table.add_row(*(Text("" if cell is None else safe_text(cell)) for cell in row))
    return table


def key_value_table(items: Mapping[str, object], *, title: str | None = None) -> Table:
    """Two columns, no header: one line per field."""
    from rich.table import Table
    from rich.text import Text

    table = Table(
        title=None if title is None else Text(safe_text(title)),
        title_justify="left",
        show_header=False,
        box=None,
        pad_edge=False,
    )
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in items.items():
        table.add_row(Text(safe_text(key)), Text("" if value is None else safe_text(value)))
    return table


class Output:
    """Where a command sends its results and messages."""

    def __init__(self, *, json_mode: bool = False, quiet: bool = False) -> None:
        self.json_mode = json_mode
        self.quiet = quiet

    # data: stdout -------------------------------------------------------------------------
    def emit(self, data: object, render: Callable[[], RenderableType | None] | None = None) -> None:
        """Write ``data`` as JSON (``--json``) or show what ``render`` builds from it."""
        if self.json_mode or render is None:
            sys.stdout.write(to_json(data) + "\n")
            sys.stdout.flush()
            return
        renderable = render()
        if renderable is not None:
            stdout_console().print(renderable)

    def print(self, renderable: RenderableType) -> None:
        """Human-readable data on stdout (ignored in JSON mode: use :meth:`emit`)."""
        if not self.json_mode:
            stdout_console().print(renderable)

    # messages: stderr ---------------------------------------------------------------------
    def message(self, text: str) -> None:
        if not self.quiet:
            from rich.text import Text

            stderr_console().print(Text(safe_text(text)), soft_wrap=True)

    def success(self, text: str) -> None:
        if not self.quiet:
            from rich.text import Text

            stderr_console().print(Text.assemble(("✓ ", "green"), safe_text(text)), soft_wrap=True)

    def warning(self, text: str) -> None:
        from rich.text import Text

        stderr_console().print(
            Text.assemble(("warning:", "bold yellow"), " ", safe_text(text)), soft_wrap=True
        )

    @contextmanager
    def status(self, text: str) -> Iterator[None]:
        """A spinner on stderr while a slow step runs (only when stderr is a terminal)."""
        console = stderr_console()
        if self.quiet or not console.is_terminal:
            yield
            return
        with console.status(text):
            yield


class Advance:
    """What :func:`progress_bar` yields: ``advance(n)`` counts n units done now;
    ``advance.skip(n)`` counts n units found already done (a resumed run), which move the bar
    but not the rate, so the rate and ETA stay those of the work this run does."""

    def __init__(self, report: Callable[[int, int], None]) -> None:
        self._report = report

    def __call__(self, n: int) -> None:
        self._report(n, 0)

    def skip(self, n: int) -> None:
        self._report(n, n)


@contextmanager
def progress_bar(
    total: int, description: str, *, unit: str = "nets", enabled: bool = True
) -> Iterator[Advance]:
    """A progress bar on stderr (done/total, rate, ETA); yields an :class:`Advance`.

    When stderr is not a terminal (a batch job writing a log), a plain line is printed at most
    every 30 seconds instead, so logs show progress without control characters.
    """
    import time

    if not enabled:
        yield Advance(lambda n, skipped: None)
        return
    console = stderr_console()
    start = time.monotonic()
    done = skipped = 0

    def count(n: int, skipped_now: int) -> float:
        """Add to the counts; the rate of this run's own work."""
        nonlocal done, skipped
        done += n
        skipped += skipped_now
        return (done - skipped) / max(time.monotonic() - start, 1e-9)

    if not console.is_terminal:
        last = start

        def advance_plain(n: int, skipped_now: int) -> None:
            nonlocal last
            rate = count(n, skipped_now)
            now = time.monotonic()
            if now - last >= 30 or done >= total:
                eta = (total - done) / rate if rate > 0 else float("inf")
                console.print(
                    f"{description}: {done}/{total} {unit}, {rate:.1f} {unit}/s, ETA {eta:.0f} s",
                    soft_wrap=True,
                )
                last = now

        yield Advance(advance_plain)
        return

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(f"{unit}"),
        TextColumn("[progress.data.speed]{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA {task.fields[eta]}"),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(description, total=total, rate="", eta="-")

        def advance(n: int, skipped_now: int) -> None:
            rate = count(n, skipped_now)
            eta = f"{(total - done) / rate:.0f} s" if rate > 0 else "-"
            bar.update(task, advance=n, rate=f"{rate:.1f} {unit}/s", eta=eta)

        yield Advance(advance)


__all__ = [
    "Advance",
    "Output",
    "key_value_table",
    "make_table",
    "progress_bar",
    "safe_text",
    "stderr_console",
    "stdout_console",
    "to_json",
]
