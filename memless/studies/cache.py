"""Studies kept on disk between runs, keyed by everything they depend on.

The report's evidence (order studies of the tamed optimizer, and at your settings on a
reference loss) and the ``modified`` check depend only on the optimizer, the loss, the
learning rates and the code, yet they are most of the time of ``python -m memless report
lion``.  The command line keeps them in :data:`DIRECTORY` and reuses them; ``--no-cache``
(or ``MEMLESS_NO_CACHE=1``) turns that off.  The Python API writes nothing unless you set
:data:`DIRECTORY` yourself.

A key is the SHA-256 of: the digest of every source file of memless (taken when memless is
imported) and of the versions of Python, NumPy, SciPy and autograd and the machine type; the
optimizer's class and every attribute of the instance (arrays by their bytes); the loss, start
and learning rates; and what is kept.  Only memless's own optimizers and reference losses are
kept: a plugin's class or your loss may change without a version, and an attribute without a
canonical text (a function) cannot be keyed.

A file is written to a temporary name in the folder and renamed over its name (a symbolic link
there is replaced, never followed).  A file is read only if it is a regular file of at most
:data:`MAX_FILE_BYTES`, not through a link, without blocking; a file that does not parse, whose
key or fields differ, or whose values are not of their kinds (or fail the caller's check) is
ignored, computed again and written over.  At most :data:`MAX_FILES` kept files: pruning removes
only files named like them (64 hexadecimal digits, ``.json``) and temporaries left by stopped
processes, nothing else in the folder.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pathlib
import platform
import re
import stat
import sys
import tempfile
import time
from typing import Any, Callable, Dict, Optional

import numpy as np

from ..losses import REFERENCE_LOSSES

#: where studies are kept; None: nowhere (the Python API's default; the CLI sets it)
DIRECTORY: Optional[str] = None
#: most files kept in DIRECTORY; the least recently written go first
MAX_FILES = 256
#: the package whose source is part of every key
PACKAGE = pathlib.Path(__file__).resolve().parent.parent


#: values of MEMLESS_NO_CACHE that leave the cache on
CACHE_ON = ("", "0", "false", "no", "off")


def default_directory() -> Optional[str]:
    """``$MEMLESS_CACHE_DIR`` (``~`` expanded), else ``$XDG_CACHE_HOME/memless`` (when absolute, as the
    XDG specification asks), else ``~/.cache/memless``; None when ``MEMLESS_NO_CACHE`` is set to anything
    but "", "0", "false", "no" or "off"."""
    if os.environ.get("MEMLESS_NO_CACHE", "").strip().lower() not in CACHE_ON:
        return None
    if os.environ.get("MEMLESS_CACHE_DIR", "").strip():
        return os.path.expanduser(os.environ["MEMLESS_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = xdg if os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "memless")


def code_digest() -> str:
    """The digest of memless's source and of the versions its numbers depend on."""
    import autograd

    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        digest.update(str(path.relative_to(PACKAGE)).encode() + b"\0" + path.read_bytes() + b"\0")
    import scipy
    versions = (sys.version, np.__version__, getattr(autograd, "__version__", "?"), scipy.__version__,
                platform.machine())
    digest.update(repr(versions).encode())
    return digest.hexdigest()


#: taken when memless is imported, so that it describes the code this process runs
CODE_DIGEST = code_digest()


def _value_text(value: Any) -> Optional[str]:
    """A canonical text of an attribute value, or None for a kind not kept."""
    if isinstance(value, np.ndarray):
        return f"array:{value.dtype.str}:{value.shape}:{hashlib.sha256(value.tobytes()).hexdigest()}"
    if value is None or isinstance(value, (bool, int, float, str, np.generic)):
        return repr(value)
    if isinstance(value, (tuple, list)):
        parts = [_value_text(v) for v in value]
        return None if any(p is None for p in parts) else f"{type(value).__name__}({','.join(parts)})"  # type: ignore[arg-type]
    if type(value).__name__ == "Layout" and type(value).__module__ == "memless.parameters":
        return repr(value)
    return None


def key(optimizer: Any, what: str) -> Optional[str]:
    """The key of ``what`` computed for ``optimizer``, or None if it cannot be keyed safely: an
    optimizer with a class from outside memless (a plugin's, yours: its code may change without a
    version) or an attribute without a canonical text."""
    for cls in type(optimizer).__mro__:
        module = cls.__module__ or ""
        if not (module == "memless" or module.startswith("memless.") or module in ("builtins", "abc")):
            return None
    digest = hashlib.sha256(CODE_DIGEST.encode())
    digest.update(f"{type(optimizer).__module__}.{type(optimizer).__qualname__}\0{what}\0".encode())
    for name, value in sorted(vars(optimizer).items()):
        text = _value_text(value)
        if text is None:
            return None
        digest.update(f"{name}={text}\0".encode())
    return digest.hexdigest()


def on_reference_loss(optimizer: Any, loss: Any, theta: Any, what: str) -> Optional[str]:
    """The key of ``what`` computed for ``optimizer`` on a reference loss (the loss object itself, not a
    name) from ``theta``; None for your own loss, whose code may change between runs, or when nothing
    is kept."""
    if DIRECTORY is None:
        return None
    name = next((name for name, reference in REFERENCE_LOSSES.items() if reference.loss is loss), None)
    if name is None:
        return None
    start = np.ascontiguousarray(theta, dtype=float)
    where = hashlib.sha256(repr(start.shape).encode() + start.tobytes()).hexdigest()
    return key(optimizer, f"{what}|{name}|{where}")


def _path(key: str) -> str:
    return os.path.join(str(DIRECTORY), f"{key}.json")


#: a kept file larger than this is not read
MAX_FILE_BYTES = 1 << 20
#: the names of kept files: the only ones pruning ever removes (with their left-over temporaries)
KEPT_NAME = re.compile(r"^[0-9a-f]{64}\.json$")
LEFT_OVER = re.compile(r"^\.[0-9a-f]{64}\.json\.[^/]*\.tmp$")
#: a temporary file older than this (seconds) was left by a process that stopped
STALE_SECONDS = 3600

#: kinds of the values a schema names: what each accepts
KINDS: Dict[str, Callable[[Any], bool]] = {
    "str": lambda v: isinstance(v, str),
    "str?": lambda v: v is None or isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "number?": lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)),
    "numbers": lambda v: isinstance(v, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                    for x in v),
    "strs": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
}


def load(key: Optional[str], schema: Dict[str, str], check: Optional[Callable[[Dict], bool]] = None
         ) -> Optional[Dict[str, Any]]:
    """The kept value for ``key`` if there is one whose fields are exactly those of ``schema`` (field ->
    a kind of :data:`KINDS`), each of its kind, and that passes ``check``; else None (it is computed
    again and written over).  Only a regular file of at most MAX_FILE_BYTES is read, never through a
    symbolic link, never blocking (a FIFO)."""
    if DIRECTORY is None or key is None:
        return None
    try:
        handle = os.open(_path(key), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None                      # absent, a symbolic link, unreadable
    try:
        info = os.fstat(handle)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_FILE_BYTES:
            return None
        with os.fdopen(handle, "rb") as fh:
            handle = -1
            data = json.loads(fh.read(MAX_FILE_BYTES + 1).decode("utf-8"))
        value = data["value"]
        if data.get("key") != key or not isinstance(value, dict) or set(value) != set(schema):
            return None
        if not all(KINDS[kind](value[name]) for name, kind in schema.items()):
            return None
        return value if check is None or check(value) else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        return None                      # unreadable or corrupt: computed again
    finally:
        if handle >= 0:
            os.close(handle)


def store(key: Optional[str], value: Dict[str, Any]) -> None:
    """Keep ``value`` (JSON data) under ``key``: written to a temporary file in DIRECTORY and renamed
    over the name (a symbolic link there is replaced, never followed); a directory that cannot be
    written keeps nothing."""
    if DIRECTORY is None or key is None:
        return
    temporary = None
    try:
        os.makedirs(str(DIRECTORY), exist_ok=True)
        text = json.dumps({"key": key, "value": value})
        handle, temporary = tempfile.mkstemp(prefix=f".{key}.json.", suffix=".tmp", dir=str(DIRECTORY))
        with os.fdopen(handle, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(temporary, _path(key))
        temporary = None
        _prune()
    except (OSError, TypeError, ValueError):
        pass                             # a cache that cannot be written costs time, nothing else
    finally:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.remove(temporary)


def _prune() -> None:
    """Remove the least recently written kept files beyond MAX_FILES and temporaries left by stopped
    processes; nothing else in the folder is touched (another process may be pruning too)."""
    with contextlib.suppress(OSError):
        entries = list(os.scandir(str(DIRECTORY)))
        now = time.time()
        for entry in entries:
            if LEFT_OVER.match(entry.name) and entry.is_file(follow_symlinks=False) \
                    and now - entry.stat(follow_symlinks=False).st_mtime > STALE_SECONDS:
                with contextlib.suppress(OSError):
                    os.remove(entry.path)
        kept = [entry for entry in entries if KEPT_NAME.match(entry.name) and entry.is_file(follow_symlinks=False)]
        kept.sort(key=lambda entry: entry.stat(follow_symlinks=False).st_mtime)
        for entry in kept[:max(len(kept) - MAX_FILES, 0)]:
            with contextlib.suppress(OSError):
                os.remove(entry.path)
