"""Module names memless used before 0.7, kept working (with a DeprecationWarning) until 0.8.

0.7 put the modules into folders that show the layers (see ARCHITECTURE in the README):
``import memless.core`` still gives the module now at ``memless.contract.optimizer`` --
the same module object, so its attributes (``memless.analysis.analyze``) are the new
ones.  ``memless.plot``, ``memless.minibatch`` and ``memless.frameworks.*`` are public
names and stay without a warning; ``memless.trajectory`` is the function.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
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


def _caller_level() -> int:
    """The stack level of the first frame outside this file and importlib: the user's import, which
    Python's default filters then show a DeprecationWarning for when it is in ``__main__``."""
    frame: Optional[FrameType] = sys._getframe(1)
    level = 1
    while frame is not None:
        name = frame.f_code.co_filename
        if "importlib" in name and "_bootstrap" in name:
            frame = frame.f_back            # warnings.warn does not count importlib's frozen frames
            continue
        if name not in (__file__, importlib.__file__):
            break
        frame, level = frame.f_back, level + 1
    return level


class _Alias(importlib.abc.Loader):
    """Loads an old name as the module at its new name (the same object, its own spec kept)."""

    def __init__(self, target: str):
        self.target = target
        self.spec = None

    def create_module(self, spec):
        module = importlib.import_module(self.target)
        self.spec = module.__spec__
        return module

    def exec_module(self, module) -> None:
        module.__spec__ = self.spec         # importlib set the old name's spec; give back the real one


class MovedModules(importlib.abc.MetaPathFinder):
    """A finder on ``sys.meta_path`` that answers only for the names in :data:`MOVED`."""

    def find_spec(self, name, path=None, target=None):
        if name not in MOVED:
            return None
        warnings.warn(f"{name} moved to {MOVED[name]} in memless 0.7; the old name goes in 0.8",
                      DeprecationWarning, stacklevel=_caller_level())
        return importlib.util.spec_from_loader(name, _Alias(MOVED[name]))


def install() -> None:
    if not any(isinstance(finder, MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(MovedModules())
