"""The optimizer registry: the built-ins (:data:`memless.optimizers.BUILTIN`) and
every plugin of the ``memless.optimizers`` entry-point group.

A package registers an optimizer in its ``setup.cfg``::

    [options.entry_points]
    memless.optimizers =
        my-method = my_package.module:MyMethod

The value is a :class:`~memless.MemoryOptimizer` subclass or a factory returning
an instance.  A plugin that fails to import, is not an optimizer, or takes a
name already taken (a built-in's, or an earlier plugin's) is skipped with a :class:`PluginWarning` naming it and its
distribution; :func:`entries` still lists it, marked broken, with the reason.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import os
import re
import signal
import sys
import threading
import warnings
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import entrypoints

from ..checks import shown
from ..contract.hyperparameters import Hyperparameter
from ..contract.optimizer import MemoryOptimizer
from ..errors import MemlessError, PluginError, UnknownOptimizerError

GROUP = "memless.optimizers"


class PluginWarning(UserWarning):
    """A third-party optimizer plugin was skipped."""


@dataclass
class Entry:
    """One registered optimizer: where it comes from and whether it loaded."""

    name: str
    target: str                     #: "module:object"
    distribution: str               #: the distribution that declared it
    version: str
    factory: Any = None             #: the loaded class or factory, None if broken
    error: Optional[str] = None     #: why it is broken

    @property
    def description(self) -> str:
        """The first line of the optimizer's docstring."""
        doc = (getattr(self.factory, "__doc__", None) or "").strip()
        return doc.splitlines()[0].replace("``", "") if doc else ""

    @property
    def hyperparameters(self) -> Dict[str, Any]:
        """{name: default} where the factory declares them."""
        return {hp.name: hp.default for hp in getattr(self.factory, "hyperparameters", ())}

    @property
    def broken(self) -> bool:
        return self.error is not None

    @property
    def builtin(self) -> bool:
        return self.distribution == "memless"


_cache: Optional[Dict[str, Entry]] = None


def canonical_name(distribution: str) -> str:
    """A distribution's name as PEP 503 normalizes it: memless_ademamix -> memless-ademamix."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


# ----------------------------------------------------------------------------
# Plugin code runs guarded: its prints go to stderr, SystemExit becomes a PluginError, and in
# the CLI each call has a time budget (CALL_SECONDS)
# ----------------------------------------------------------------------------

#: seconds one call of plugin code may take (None: no limit; the CLI sets one)
CALL_SECONDS: Optional[float] = None
#: also send what plugin code writes to file descriptor 1 to 2 (the CLI: --json stays clean)
CONTAIN_OUTPUT = False
_depth = [0]


class _OutOfTime(BaseException):
    """Raised by the alarm inside plugin code that ran past CALL_SECONDS."""


@contextlib.contextmanager
def guarded(who: str):
    """Run plugin code: stdout to stderr (it must not corrupt --json), SystemExit and a call past
    :data:`CALL_SECONDS` turned into a :class:`PluginError` naming ``who``."""
    outermost = _depth[0] == 0
    seconds = CALL_SECONDS
    timed = (outermost and seconds is not None and hasattr(signal, "setitimer")
             and threading.current_thread() is threading.main_thread())
    if timed and seconds is not None:
        def alarm(signum, frame):
            raise _OutOfTime()
        previous = signal.signal(signal.SIGALRM, alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)
    _depth[0] += 1
    saved = _divert_fd() if outermost and CONTAIN_OUTPUT else None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    except SystemExit as exc:
        raise PluginError(f"{who} called sys.exit({shown(exc.code, 40)}); a plugin must raise an exception "
                          "instead") from None
    except _OutOfTime:
        raise PluginError(f"{who} ran for more than {CALL_SECONDS:g} s in one call (the CLI's limit for plugin "
                          "code): it hangs or is far too slow") from None
    finally:
        _depth[0] -= 1
        if saved is not None:
            _restore_fd(saved)
        if timed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def _divert_fd():
    """Point file descriptor 1 at 2 (a plugin's os.write(1, ...) must not reach --json); the saved fd."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
        sys.stderr.flush()
        os.dup2(2, 1)
        return saved
    except (OSError, ValueError, AttributeError):
        return None


def _restore_fd(saved) -> None:
    try:
        os.dup2(saved, 1)
        os.close(saved)
    except OSError:
        pass


def _guard_method(function, who):
    @functools.wraps(function)
    def call(*args, **kwargs):
        with guarded(who):
            return function(*args, **kwargs)
    return call


_GUARDED: Dict[type, type] = {}


def guarded_class(cls: type, who: str) -> type:
    """A subclass of a plugin's optimizer class whose own methods (those defined outside memless)
    run :func:`guarded`."""
    if cls in _GUARDED.values():
        return cls
    if cls not in _GUARDED:
        namespace = {"__module__": cls.__module__, "__doc__": cls.__doc__, "__qualname__": cls.__qualname__}
        for klass in cls.__mro__:
            if klass.__module__.split(".")[0] == "memless" or klass is object:
                continue
            for attribute, value in vars(klass).items():
                if attribute in namespace or not inspect.isfunction(value) or (
                        attribute.startswith("__") and attribute != "__init__"):
                    continue
                namespace[attribute] = _guard_method(value, who)
        _GUARDED[cls] = type(cls.__name__, (cls,), namespace)
    return _GUARDED[cls]


def _check_factory(obj):
    if inspect.isclass(obj):
        if not issubclass(obj, MemoryOptimizer):
            return f"{obj.__name__} is not a memless.MemoryOptimizer subclass"
        if inspect.isabstract(obj):
            missing = ", ".join(sorted(obj.__abstractmethods__))
            return f"{obj.__name__} is abstract (does not implement {missing})"
        declared = getattr(obj, "hyperparameters", ())
        if not isinstance(declared, (tuple, list)) or not all(isinstance(hp, Hyperparameter) for hp in declared):
            return (f"{obj.__name__}.hyperparameters must be a tuple of memless Hyperparameter objects "
                    f"(memless.extend: decay(), positive(), ...), got {shown(declared, 60)}")
        return None
    if not callable(obj):
        return f"{type(obj).__name__} object is neither a MemoryOptimizer subclass nor a factory"
    return None


def _builtin_entries():
    from . import BUILTIN

    return [Entry(name, f"{cls.__module__}:{cls.__name__}", "memless", _version(), cls)
            for name, cls in BUILTIN.items()]


def _version():
    from .._version import __version__
    return __version__


def discover(path=None) -> Dict[str, Entry]:
    """The built-ins, then every entry point of the group (``path``: folders to search instead of sys.path)."""
    found: Dict[str, Entry] = {entry.name: entry for entry in _builtin_entries()}
    points = entrypoints.get_group_all(GROUP, path=path)
    points.sort(key=lambda ep: canonical_name(getattr(ep.distro, "name", "")))
    seen = set()
    for ep in points:
        dist = canonical_name(getattr(ep.distro, "name", None) or "unknown distribution")
        if dist == "memless":     # stale metadata of an older memless: the built-ins come from BUILTIN
            continue
        version = getattr(ep.distro, "version", None) or "?"
        target = f"{ep.module_name}:{ep.object_name}" if ep.object_name else ep.module_name
        key = (ep.name, dist, target)
        if key in seen:           # the same distribution seen twice on the path
            continue
        seen.add(key)
        entry = Entry(ep.name, target, dist, version)
        if ep.name in found:
            other = found[ep.name]
            entry.error = f"name clashes with {other.distribution}'s {other.target}"
            warnings.warn(f"memless: optimizer plugin {ep.name!r} from {dist} {version} skipped: "
                          f"{entry.error}", PluginWarning, stacklevel=2)
            found[f"{ep.name} ({dist})"] = entry
            continue
        try:
            with guarded(f"optimizer plugin {ep.name!r} from {dist}"):
                obj = ep.load()
        except PluginError as exc:
            entry.error = f"import failed: {exc}"
        except Exception as exc:  # a broken plugin must not take memless down
            entry.error = f"import failed: {type(exc).__name__}: {shown(str(exc), 200)}"
        else:
            entry.error = _check_factory(obj)
            entry.factory = None if entry.error else obj
        if entry.error:
            warnings.warn(f"memless: optimizer plugin {ep.name!r} from {dist} {version} skipped: "
                          f"{entry.error}", PluginWarning, stacklevel=2)
        found[ep.name] = entry
    return found


def entries(refresh: bool = False) -> Dict[str, Entry]:
    """{name: Entry} for every optimizer found, broken ones included (cached)."""
    global _cache
    if _cache is None or refresh:
        _cache = discover()
    return _cache


def refresh() -> None:
    """Forget the cached plugins (after installing or removing one)."""
    global _cache
    _cache = None


def available() -> List[str]:
    """Sorted names of the optimizers that loaded."""
    return sorted(name for name, e in entries().items() if not e.broken)


def get_optimizer(name: str, **hyperparameters: Any) -> MemoryOptimizer:
    """An instance of the optimizer registered as ``name``, with the given hyperparameters.

    >>> import memless
    >>> memless.get_optimizer("heavy-ball", beta=0.8)
    HeavyBall(beta=0.8)
    """
    if isinstance(name, MemoryOptimizer):
        raise MemlessError("get_optimizer takes a registered name; you passed an optimizer instance")
    if not isinstance(name, str):
        raise UnknownOptimizerError(f"optimizer name must be a string, got {shown(name)}; available: "
                                    f"{', '.join(available())}")
    from . import BUILTIN
    table = entries() if name not in BUILTIN or _cache is not None else {
        entry.name: entry for entry in _builtin_entries()}
    entry = table.get(name)
    if entry is None:
        raise UnknownOptimizerError(f"unknown optimizer {shown(name)}; available: {', '.join(available())}")
    if entry.broken:
        raise UnknownOptimizerError(
            f"optimizer {shown(name)} from {entry.distribution} is broken ({entry.error}); "
            f"available: {', '.join(available())}")
    who = f"optimizer plugin {shown(name)} from {entry.distribution}"
    try:
        if entry.builtin:
            optimizer = entry.factory(**hyperparameters)
        else:
            with guarded(who):
                optimizer = entry.factory(**hyperparameters)
    except MemlessError:
        raise
    except Exception as exc:     # a plugin's own constructor failing is the plugin's fault: say whose
        raise PluginError(f"optimizer plugin {shown(name)} from {entry.distribution} failed to construct: "
                          f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(optimizer, MemoryOptimizer):
        raise MemlessError(f"optimizer plugin {shown(name)} from {entry.distribution} returned "
                           f"{type(optimizer).__name__}, not a memless.MemoryOptimizer")
    if getattr(optimizer, "name", None) is None:
        optimizer.name = name
    if not entry.builtin:
        optimizer.__class__ = guarded_class(type(optimizer), who)
    return optimizer
