"""Writing the user's files: every path is checked before any work, and every file is written to
a temporary name in the same directory and renamed into place, so a failed write (a full disk, a
file-size limit, an interrupt) leaves the old file as it was and no half-written one.

>>> import os, tempfile
>>> from memless.files import check_output_path, write_atomic
>>> folder = tempfile.mkdtemp()
>>> path = check_output_path(os.path.join(folder, "log.csv"), "path", (".csv",))
>>> write_atomic(path, lambda fh: fh.write(b"a,b\\n")) == path
True
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Callable, Optional, Sequence

from .checks import shown
from .errors import MemlessError

#: the longest file name (one path component) most file systems accept
MAX_NAME = 255


def check_output_path(path, what: str = "path", extensions: Optional[Sequence[str]] = None, *,
                      trial: bool = True) -> str:
    """``path`` as a string, refused in one line unless a file can be written there: a non-empty
    file name (str or os.PathLike, not an open file descriptor), its folder existing and writable,
    not a directory, not a special file (a device, a pipe), a name of at most 255 characters, a
    folder in which a file can actually be made (tried, unless ``trial`` is False), and one of ``extensions`` (e.g. ``(".png", ".svg", ".pdf")``) when given.  A symbolic link is
    followed: the file it points to is the one replaced."""
    if isinstance(path, (bool, int)):
        raise MemlessError(f"{what} must be a file name (str or os.PathLike), got the integer {path!r}: memless "
                           "does not write to open file descriptors")
    try:
        path = os.fspath(path)
    except TypeError:
        raise MemlessError(f"{what} must be a file name (str or os.PathLike), got {type(path).__name__}") from None
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not path.strip():
        raise MemlessError(f"{what} is empty: give a file name")
    if "\x00" in path:
        raise MemlessError(f"{what} {shown(path)} contains a NUL character")
    name = os.path.basename(path)
    if not name or path.endswith(os.sep):
        raise MemlessError(f"{what} {shown(path)} names a folder, not a file")
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME:
        raise MemlessError(f"{what}: the file name is {len(name)} characters long; at most {MAX_NAME} are allowed")
    if extensions is not None and os.path.splitext(name)[1].lower() not in extensions:
        allowed = ", ".join(extensions[:-1]) + " or " + extensions[-1] if len(extensions) > 1 else extensions[0]
        raise MemlessError(f"{what} {shown(path)}: the file must end in {allowed}")
    target = os.path.realpath(path)
    if os.path.isdir(target):
        raise MemlessError(f"{what} {shown(path)} is a directory, not a file")
    if os.path.isfile(target) and not os.access(target, os.W_OK):
        raise MemlessError(f"{what} {shown(path)} is read-only: memless does not replace a file you cannot write")
    if os.path.exists(target) and not os.path.isfile(target):
        raise MemlessError(f"{what} {shown(path)} is not a regular file (a device, a pipe or a socket): memless "
                           "writes only regular files")
    folder = os.path.dirname(target) or "."
    if not os.path.isdir(folder):
        raise MemlessError(f"{what} {shown(path)}: the folder {shown(folder)} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise MemlessError(f"{what} {shown(path)}: the folder {shown(folder)} is not writable")
    try:                     # the folder's permissions can say yes where a file cannot be made (/proc, root)
        if trial:
            handle, made = tempfile.mkstemp(prefix=".memless-check.", dir=folder)
            os.close(handle)
            os.unlink(made)
    except OSError as exc:
        raise MemlessError(f"{what} {shown(path)}: no file can be made in {shown(folder)}: "
                           f"{exc.strerror or exc}") from None
    return path


def write_atomic(path, write: Callable, *, binary: bool = True) -> str:
    """Call ``write(file)`` on a temporary file beside ``path`` and rename it into place.

    On any failure the temporary file is removed, ``path`` is untouched, and a one-line
    :class:`~memless.MemlessError` names the path and the cause (KeyboardInterrupt is re-raised
    after the clean-up).  The new file gets the old one's permissions, or the usual 0o666 & ~umask."""
    path = check_output_path(path, trial=False)      # the temporary file below is the trial
    target = os.path.realpath(path)
    folder, name = os.path.split(target)
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{name[:200]}.", suffix=".tmp", dir=folder or ".")
    except OSError as exc:
        raise MemlessError(f"cannot write {shown(path)}: {exc.strerror or exc}") from None
    try:
        with (os.fdopen(handle, "wb") if binary else os.fdopen(handle, "w", newline="")) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            mode = os.stat(target).st_mode & 0o7777
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(exc, (OSError, ValueError)) and not isinstance(exc, MemlessError):
            cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise MemlessError(f"cannot write {shown(path)}: {cause}; the file there, if any, is unchanged") from None
        raise
    return path
