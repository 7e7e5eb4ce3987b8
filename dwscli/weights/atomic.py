"""Atomic file output: write a temporary file next to the target, then rename it into place.

A reader never sees a half-written output, and a failed or interrupted write leaves nothing
behind: the temporary file lives in the target's directory (so the final rename stays on one file
system and is atomic) and is removed on any error. Without ``force`` an existing file is never
replaced, and the check is made by the link itself (``os.link`` fails if the name exists), so a
file created by someone else between our check and our rename is not overwritten either.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import socket
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from dwscli.errors import DwsError, describe_os_error


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _stat_mode(path: Path) -> int | None:
    """``st_mode`` of ``path``, None when it does not exist; other OS errors are one-line errors."""
    try:
        return path.stat().st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DwsError(f"{path}: {describe_os_error(exc)}") from None


def check_writable_target(
    path: Path, *, force: bool = False, parent_may_be_missing: bool = False
) -> None:
    """Refuse early (before any work is done) when ``path`` cannot or must not be written.

    ``parent_may_be_missing``: the caller creates the directory just before writing.
    """
    mode = _stat_mode(path)
    if mode is not None and stat.S_ISDIR(mode):
        raise DwsError(f"{path}: is a directory; give an output file name")
    if mode is not None and not force:
        raise DwsError(f"{path}: exists; pass --force to overwrite")
    parent = path.parent
    parent_mode = _stat_mode(parent)
    if parent_mode is None:
        if parent_may_be_missing:
            check_out_dir(_existing_ancestor(parent))
            return
        raise DwsError(f"{path}: output directory {parent} does not exist")
    if not stat.S_ISDIR(parent_mode):
        raise DwsError(f"{path}: {parent} is not a directory")


def _existing_ancestor(path: Path) -> Path:
    """The nearest ancestor of ``path`` that exists (``path`` itself if it does)."""
    for candidate in (path, *path.parents):
        if _stat_mode(candidate) is not None:
            return candidate
    return path


def check_out_dir(directory: Path) -> None:
    """Refuse an output directory that is an existing file or cannot be reached (no creation)."""
    mode = _stat_mode(directory)
    if mode is not None and not stat.S_ISDIR(mode):
        raise DwsError(f"{directory}: exists and is not a directory (--out-dir names a directory)")


def make_out_dir(directory: Path) -> None:
    """Create an output directory (and its parents) when the first output is written."""
    check_out_dir(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DwsError(f"{directory}: cannot create directory ({describe_os_error(exc)})") from None


# Temporary files are named .<target name>.dws-<host>-<pid>-<random>.tmp: a run killed with
# SIGKILL cannot remove its own, so a later run's first write into the same directory removes
# those whose process (on this host) is gone. The target name is cut so the whole name stays short.
_TEMP_NAME = re.compile(r"\.dws-(?P<host>[^-]*)-(?P<pid>\d+)-[^.]*\.tmp$")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"


def _temporary_prefix(target: Path) -> str:
    return f".{target.name[:120]}.dws-{_host()}-"


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but is someone else's
        return True
    return True


#: Directories this process has already cleared of stale temporaries (see below).
_cleared_directories: set[str] = set()


def remove_stale_temporaries(target: Path) -> list[Path]:
    """Remove the temporaries that killed dws runs on this host left in ``target``'s directory;
    returns them.

    A directory is scanned once per process, at its first write, for the temporaries of every
    target: whatever a dead process left there is garbage, and a process's own temporaries are
    never stale while it runs. Scanning once matters for ``--out-dir`` runs: one scan per file
    would cost time quadratic in the number of files. The price: in a long-lived process, what
    runs killed *after* its first write into a directory leave there waits for the next process
    that writes there.
    """
    removed: list[Path] = []
    directory = os.path.abspath(target.parent)
    if directory in _cleared_directories:
        return removed
    host = _host()
    try:
        with os.scandir(directory) as entries:
            candidates = [Path(e.path) for e in entries if e.name.startswith(".")]
    except OSError:
        return removed
    _cleared_directories.add(directory)
    for candidate in candidates:
        match = _TEMP_NAME.search(candidate.name)
        if match is None or match["host"] != host or _process_alive(int(match["pid"])):
            continue
        with contextlib.suppress(OSError):
            candidate.unlink()
            removed.append(candidate)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s directory; on success move it to ``path``.

    The caller writes the complete file to the yielded path. When the block exits normally the
    file is moved into place (replacing an existing ``path`` only if ``force``); when it raises,
    the temporary file is removed and the exception propagates.
    """
    target = Path(path)
    check_writable_target(target, force=force)
    remove_stale_temporaries(target)
    try:
        fd, tmp_name = tempfile.mkstemp(
            prefix=_temporary_prefix(target) + f"{os.getpid()}-", suffix=".tmp", dir=target.parent
        )
    except OSError as exc:
        raise DwsError(f"{target}: cannot write ({exc.strerror or exc})") from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates the file 0600; give the output the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        _move_into_place(tmp, target, force=force)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _move_into_place(tmp: Path, target: Path, *, force: bool) -> None:
    try:
        if force:
            os.replace(tmp, target)
            return
        try:
            os.link(tmp, target)  # atomic "create if absent": fails if target appeared meanwhile
        except FileExistsError:
            raise DwsError(f"{target}: exists; pass --force to overwrite") from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            # File systems without hard links: fall back to check-then-rename.
            if target.exists():
                raise DwsError(f"{target}: exists; pass --force to overwrite") from None
            os.replace(tmp, target)
            return
        with contextlib.suppress(OSError):  # the output is in place; a stray link is harmless
            tmp.unlink()
    except OSError as exc:
        raise DwsError(f"{target}: cannot write ({exc.strerror or exc})") from exc


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, force: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`); returns the path."""
    return atomic_write_chunks(path, [data], force=force)


def atomic_write_chunks(
    path: str | os.PathLike[str], chunks: Iterable[bytes | memoryview], *, force: bool = False
) -> Path:
    """Write ``chunks`` one after the other to ``path``, atomically (see :func:`atomic_path`),
    without joining them into one buffer first; returns the path."""
    target = Path(path)
    with atomic_path(target, force=force) as tmp:
        try:
            with open(tmp, "wb") as handle:
                for chunk in chunks:
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise DwsError(f"{target}: cannot write ({exc.strerror or exc})") from exc
    return target
