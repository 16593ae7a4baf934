"""Studies kept on disk between runs, keyed by everything they depend on.

The report's tamed evidence (an order study of the tamed optimizer on its evidence loss)
depends only on the tamed optimizer and on memless's code, yet it is most of the time of
``python -m memless report lion``.  The command line keeps it in :data:`DIRECTORY` and
reuses it; ``--no-cache`` (or ``MEMLESS_NO_CACHE=1``) turns that off.  The Python API
writes nothing unless you set :data:`DIRECTORY` yourself.

A key is the SHA-256 of: the digest of every source file of memless (taken when memless is
imported) and of the versions of Python, NumPy and autograd and the machine type; the
optimizer's class and every attribute of the instance (arrays by their bytes); and what is
kept.  Only memless's own optimizers are kept: a plugin's or your class may change without a
version, and an attribute without a canonical text (a function) cannot be keyed.  A file is written to
a temporary name and renamed into place; a file that does not parse, or whose key or
fields differ, is ignored (and replaced).  At most :data:`MAX_FILES` files are kept.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pathlib
import platform
import sys
from typing import Any, Dict, Optional

import numpy as np

from ..errors import MemlessError
from ..files import write_atomic
from ..losses import REFERENCE_LOSSES

#: where studies are kept; None: nowhere (the Python API's default; the CLI sets it)
DIRECTORY: Optional[str] = None
#: most files kept in DIRECTORY; the least recently written go first
MAX_FILES = 256
#: the package whose source is part of every key
PACKAGE = pathlib.Path(__file__).resolve().parent.parent


def default_directory() -> Optional[str]:
    """``$MEMLESS_CACHE_DIR``, else ``$XDG_CACHE_HOME/memless``, else ``~/.cache/memless``; None with
    ``MEMLESS_NO_CACHE`` set to anything but "" or "0"."""
    if os.environ.get("MEMLESS_NO_CACHE", "") not in ("", "0"):
        return None
    if os.environ.get("MEMLESS_CACHE_DIR"):
        return os.environ["MEMLESS_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "memless")


def code_digest() -> str:
    """The digest of memless's source and of the versions its numbers depend on."""
    import autograd

    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        digest.update(str(path.relative_to(PACKAGE)).encode() + b"\0" + path.read_bytes() + b"\0")
    versions = (sys.version, np.__version__, getattr(autograd, "__version__", "?"), platform.machine())
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


def load(key: Optional[str], fields) -> Optional[Dict[str, Any]]:
    """The kept value for ``key`` if there is one whose fields are exactly ``fields``, else None."""
    if DIRECTORY is None or key is None:
        return None
    try:
        with open(_path(key), encoding="utf-8") as fh:
            data = json.load(fh)
        value = data["value"]
        if data.get("key") != key or not isinstance(value, dict) or set(value) != set(fields):
            return None
        return value
    except (OSError, ValueError, KeyError, TypeError):
        return None                      # absent, unreadable or corrupt: computed again


def store(key: Optional[str], value: Dict[str, Any]) -> None:
    """Keep ``value`` (JSON data) under ``key``; a directory that cannot be written keeps nothing."""
    if DIRECTORY is None or key is None:
        return
    try:
        os.makedirs(str(DIRECTORY), exist_ok=True)
        text = json.dumps({"key": key, "value": value})
        write_atomic(_path(key), lambda fh: fh.write(text), binary=False)
        _prune()
    except (OSError, MemlessError, TypeError, ValueError):
        pass                             # a cache that cannot be written costs time, nothing else


def _prune() -> None:
    """Remove the least recently written files beyond MAX_FILES (another process may be removing them too)."""
    with contextlib.suppress(OSError):
        kept = [entry for entry in os.scandir(str(DIRECTORY)) if entry.name.endswith(".json") and entry.is_file()]
        kept.sort(key=lambda entry: entry.stat().st_mtime)
        for entry in kept[:max(len(kept) - MAX_FILES, 0)]:
            os.remove(entry.path)
