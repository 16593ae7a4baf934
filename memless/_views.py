"""How results show themselves in Jupyter, without a result importing its presentation.

A result class inherits :class:`Viewable`: its ``_repr_html_`` and ``_repr_png_`` ask
:func:`view` for a function registered for its type and format.  The presentation layer
(:mod:`memless.show.jupyter`, imported by the package) registers them.  This module imports nothing
from memless, so the math core never reaches plotting or rich.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Tuple

#: (result class, format) -> function(result, **options); formats: "html", "png", "figure"
VIEWS: Dict[Tuple[type, str], Callable] = {}


def register(cls: type, kind: str) -> Callable:
    """Decorator: the function that shows ``cls`` results in format ``kind``."""
    def decorate(function: Callable) -> Callable:
        VIEWS[(cls, kind)] = function
        return function
    return decorate


def view(result: Any, kind: str, **options) -> Any:
    """``result`` shown in format ``kind`` by the function registered for its class (or a base),
    None where none is registered (Jupyter then falls back to the next format)."""
    for cls in type(result).__mro__:
        function = VIEWS.get((cls, kind))
        if function is not None:
            return function(result, **options)
    return None


class Viewable:
    """Jupyter's rich display through the registered views."""

    def _repr_html_(self):
        return view(self, "html")

    def _repr_png_(self):
        return view(self, "png")
