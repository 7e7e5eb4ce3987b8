"""How failures leave the CLI.

- :class:`~dwscli.errors.DwsError` (anything the user can fix): ``error: <message>`` on one line
  of stderr, then ``hint: <hint>`` when there is one; exit code 1 (or the error's own code).
- Usage errors (unknown option, missing argument): the same two-line form, exit code 2.
- Ctrl-C: ``aborted``, exit code 130.
- Anything else is a bug: one ``error: internal error …`` line asking to rerun with ``--debug``.

With ``--debug`` (or ``DWS_DEBUG=1``) tracebacks are shown: user errors print theirs before the
message, unexpected exceptions propagate untouched.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

from typer import Abort, Exit

from dwscli.errors import DwsError, describe_os_error

try:  # recent typer releases vendor click; older ones depend on it
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # pragma: no cover - depends on the installed typer
    from click.exceptions import ClickException, UsageError  # type: ignore[no-redef]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


MAX_MESSAGE_CHARS = 1000


class _State:
    """Global CLI flags set by the app callback; reset before every run."""

    debug: bool = False


state = _State()


def debug_enabled() -> bool:
    return state.debug or os.environ.get("DWS_DEBUG", "") not in ("", "0")


def one_line(text: str) -> str:
    """One line of safe text: newlines and runs of spaces collapsed, control characters
    (an ESC from a file name or a metadata value) shown escaped."""
    from dwscli.cli.output import safe_text

    line = " ".join(safe_text(text).split())
    if len(line) > MAX_MESSAGE_CHARS:  # a 5000-character file name must not fill the screen
        half = MAX_MESSAGE_CHARS // 2
        line = f"{line[:half]}…{line[-half:]}"
    return line


def print_error(message: str, hint: str | None = None) -> None:
    """``error: …`` (and ``hint: …``) on stderr, never wrapped."""
    from rich.text import Text

    from dwscli.cli.output import stderr_console

    console = stderr_console()
    console.print(Text.assemble(("error:", "bold red"), " ", one_line(message)), soft_wrap=True)
    if hint:
        console.print(Text.assemble(("hint:", "bold"), " ", one_line(hint)), soft_wrap=True)


def report(error: DwsError) -> None:
    """Show a user error; with ``--debug`` its traceback first.

    Commands that go on after a failure (``inspect`` with many paths) call this directly.
    """
    if debug_enabled():
        traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
    print_error(error.message, error.hint)


def _usage_hint(error: UsageError) -> str | None:
    ctx = getattr(error, "ctx", None)
    if ctx is None:
        return "see 'dws --help'"
    return f"see '{ctx.command_path} --help'"


def run_guarded(invoke: Callable[[], Any]) -> int:
    """Run the CLI (``invoke`` is click's non-standalone main) and return the exit code."""
    try:
        result = invoke()
    except DwsError as error:
        report(error)
        return error.exit_code
    except UsageError as error:
        if type(error).__name__ == "NoArgsIsHelpError":  # `dws` alone: the help was the answer
            help_text = error.format_message()
            if help_text.strip():  # plain (non-rich) mode returns the text instead of printing it
                sys.stdout.write(help_text + "\n")
            return error.exit_code
        print_error(error.format_message(), _usage_hint(error))
        return error.exit_code
    except ClickException as error:
        print_error(error.format_message())
        return error.exit_code
    except Exit as error:
        return int(error.exit_code or 0)
    except KeyboardInterrupt:  # typer turns Ctrl-C inside a command into Exit(130) itself
        print_error("interrupted")
        return EXIT_INTERRUPTED
    except Abort:  # end of input at a prompt
        print_error("aborted")
        return EXIT_ERROR
    except BrokenPipeError:
        # `dws … | head`: the reader left; stop quietly and keep Python from complaining.
        with contextlib.suppress(OSError, ValueError):  # not a real file (a test's buffer)
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except OSError as error:
        # A file system refusal that no check caught (a permission, a name too long, /proc):
        # the user's problem, not a bug, so reported like a DwsError.
        if debug_enabled():
            raise
        where = error.filename if error.filename is not None else "error"
        print_error(f"{os.fsdecode(where)}: {describe_os_error(error)}")
        return EXIT_ERROR
    except MemoryError:
        if debug_enabled():
            raise
        print_error(
            "out of memory",
            "the input needs more memory than this machine has; "
            "see 'Security model and limits' in the README",
        )
        return EXIT_ERROR
    except Exception as error:
        if debug_enabled():
            raise
        detail = one_line(f"{type(error).__name__}: {error}")
        print_error(
            f"internal error ({detail})",
            "this is a bug in dws; rerun with --debug for the traceback and report it",
        )
        return EXIT_ERROR
    if isinstance(result, bool) or not isinstance(result, int):
        return EXIT_OK
    return result


__all__ = [
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "debug_enabled",
    "one_line",
    "print_error",
    "report",
    "run_guarded",
    "state",
]
