"""The one error type of dws.

Anything the user can fix (a bad file, a spec that does not fit, a missing data set) is raised as
:class:`DwsError`. The CLI turns it into a one-line message and a non-zero exit; library users can
catch it like any exception.
"""

from __future__ import annotations

import errno


class DwsError(Exception):
    """A user-facing error: the message is one line that names the file and the problem."""

    def __init__(self, message: str, *, hint: str | None = None, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message if self.hint is None else f"{self.message} (hint: {self.hint})"


_ERRNO_TEXT = {
    errno.ENOENT: "no such file or directory",
    errno.ELOOP: "too many levels of symbolic links (a symlink loop)",
    errno.ENAMETOOLONG: "file name too long",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a component of the path is not a directory",
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on device",
}


def describe_os_error(exc: OSError) -> str:
    """A short lower-case reason for an OS error, for ``<file>: <reason>`` messages."""
    if exc.errno == errno.ENOENT:
        return "no such file"
    return _ERRNO_TEXT.get(exc.errno or 0) or (exc.strerror or type(exc).__name__).lower()
