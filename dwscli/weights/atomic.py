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
import tempfile
from collections.abc import Iterator
from pathlib import Path

from dwscli.errors import DwsError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_writable_target(path: Path, *, force: bool = False) -> None:
    """Refuse early (before any work is done) when ``path`` cannot or must not be written."""
    if path.is_dir():
        raise DwsError(f"{path}: is a directory; give an output file name")
    if path.exists() and not force:
        raise DwsError(f"{path}: exists; pass --force to overwrite")
    parent = path.parent
    if not parent.is_dir():
        raise DwsError(f"{path}: output directory {parent} does not exist")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s directory; on success move it to ``path``.

    The caller writes the complete file to the yielded path. When the block exits normally the
    file is moved into place (replacing an existing ``path`` only if ``force``); when it raises,
    the temporary file is removed and the exception propagates.
    """
    target = Path(path)
    check_writable_target(target, force=force)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
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
    target = Path(path)
    with atomic_path(target, force=force) as tmp:
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise DwsError(f"{target}: cannot write ({exc.strerror or exc})") from exc
    return target
