"""Module names memless used before 0.7, kept working (with a DeprecationWarning) until 0.8.

0.7 put the modules into folders that show the layers (see ARCHITECTURE in the README):
``import memless.core`` still gives the module now at ``memless.contract.optimizer`` --
the same module object, so its attributes (``memless.analysis.analyze``) are the new
ones; ``memless.core``, whose report vocabulary went to ``memless.studies.meanings``, reads
each name where it is now.  ``import memless; memless.analysis`` works too (the package's
``__getattr__``).  ``memless.plot``, ``memless.minibatch`` and ``memless.frameworks.*`` are public
names and stay without a warning; ``memless.trajectory`` is the function.
"""
from __future__ import annotations

import abc
import importlib
import importlib.abc
import importlib.machinery
import os
import importlib.util
import sys
import types
import warnings
from types import FrameType
from typing import Optional

#: old module name -> where it lives now
MOVED = {
    "memless.core": "memless.contract.optimizer",
    "memless.hyperparameters": "memless.contract.hyperparameters",
    "memless.linalg": "memless.numerics.linalg",
    "memless.objective": "memless.engine.objective",
    "memless.registry": "memless.optimizers.registry",
    "memless.analysis": "memless.studies.analysis",
    "memless.modified": "memless.studies.modified",
    "memless.probe": "memless.studies.probe",
    "memless.report": "memless.show.report",
    "memless.frameworks.external": "memless.frameworks.losses.external",
}


#: 0.6 names that left the module they were in for another layer: old module -> {name: its module now}
SPLIT = {
    "memless.core": {name: "memless.studies.meanings"
                     for name in ("Effect", "Structure", "ImplicitLoss", "VECTOR_LOSSES", "MATRIX_LOSSES")},
}


def warn(old: str, new: str) -> None:
    """The DeprecationWarning of a moved name, at the user's line."""
    warn_user(f"{old} moved to {new} in memless 0.7; the old name goes in 0.8")


def warn_user(message: str, category: type = DeprecationWarning) -> None:
    """Warn at the first frame outside memless, importlib and abc: the user's line (an import, an
    attribute read, a class statement), which Python's default filters show when it is in __main__."""
    warnings.warn(message, category, stacklevel=_caller_level())


class _Forward(types.ModuleType):
    """A 0.6 module whose names now live in two modules: each attribute read where it is now."""

    def __init__(self, name: str, target: str, split):
        super().__init__(name, f"memless 0.6's {name}, now {target} (and {', '.join(sorted(set(split.values())))})")
        self._target, self._split = target, dict(split)

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(importlib.import_module(self._split.get(attr, self._target)), attr)


#: the folder of the package: frames inside it are memless's, not the user's
PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _caller_level() -> int:
    """The stack level, for a warnings.warn called in this module, of the first frame outside memless,
    importlib and abc."""
    frame: Optional[FrameType] = sys._getframe(1)
    level = 1
    while frame is not None:
        name = frame.f_code.co_filename
        if "importlib" in name and "_bootstrap" in name:
            frame = frame.f_back            # warnings.warn does not count importlib's frozen frames
            continue
        if not (name.startswith(PACKAGE) or name in (importlib.__file__, "<frozen abc>", abc.__file__)):
            break
        frame, level = frame.f_back, level + 1
    return level


class _Alias(importlib.abc.Loader):
    """Loads an old name as the module at its new name (the same object, its own spec kept)."""

    def __init__(self, target: str):
        self.target = target
        self.spec: Optional[importlib.machinery.ModuleSpec] = None

    def create_module(self, spec):
        if spec.name in SPLIT:
            return _Forward(spec.name, self.target, SPLIT[spec.name])
        module = importlib.import_module(self.target)
        self.spec = module.__spec__
        return module

    def exec_module(self, module) -> None:
        if self.spec is not None:
            module.__spec__ = self.spec     # importlib set the old name's spec; give back the real one


class MovedModules(importlib.abc.MetaPathFinder):
    """A finder on ``sys.meta_path`` that answers only for the names in :data:`MOVED`."""

    def find_spec(self, name, path=None, target=None):
        if name not in MOVED:
            return None
        warn(name, MOVED[name])
        return importlib.util.spec_from_loader(name, _Alias(MOVED[name]))


def install() -> None:
    if not any(isinstance(finder, MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(MovedModules())
