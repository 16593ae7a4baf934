"""Parameters with structure: named arrays (matrices, vectors) over one flat vector.

The engine works on one flat parameter vector theta.  A model's parameters are
named arrays; a :class:`Layout` says how theta is cut into them, and optimizers
that act per matrix (Muon, Lion-K with K the nuclear norm, Shampoo) read it.

A loss over named arrays is given in either of two ways, and every analysis takes it:

* ``theta`` as a dict of arrays: ``memless.correction(opt, loss, {"W": W, "b": b}, lr)``
  with ``loss(params)`` taking the dict;
* :func:`structured`: ``loss = memless.structured(loss_of_dict, params)`` is a loss on
  flat theta that carries its layout and start point (``loss.start``).

>>> import memless, numpy as np, autograd.numpy as anp
>>> def loss(p):
...     return anp.sum((p["U"] @ p["V"].T - 1.0) ** 2) / 2
>>> params = {"U": np.full((3, 2), 0.5), "V": np.full((4, 2), 0.3)}
>>> f = memless.structured(loss, params)
>>> f.layout
Layout(U=(3, 2), V=(4, 2))
>>> f.start.shape, float(f(f.start)) == float(loss(params))
((14,), True)
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

import numpy as np

from .errors import LossError
from .numerics.autodiff import numpy_for


def real_array(value, what: str) -> np.ndarray:
    """``value`` as a float64 array, refused in one line unless it holds real numbers (not complex,
    strings, dicts or other objects)."""
    try:
        array = np.asarray(value)
    except Exception:
        raise LossError(f"{what} must be an array of real numbers, got {type(value).__name__}") from None
    if array.dtype.kind not in "iuf":
        kind = "complex numbers" if array.dtype.kind == "c" else f"{type(value).__name__} of dtype {array.dtype}"
        raise LossError(f"{what} must be an array of real numbers, got {kind}")
    return array.astype(float)


# ----------------------------------------------------------------------------
# Layout: named shapes over a flat vector
# ----------------------------------------------------------------------------


class Layout:
    """Named shapes cut, in order, from one flat parameter vector.

    >>> layout = Layout({"W": (2, 3), "b": (3,)})
    >>> layout.size, layout.matrices
    (9, ('W',))
    >>> parts = layout.unflatten(np.arange(9.0))
    >>> parts["W"].tolist(), parts["b"].tolist()
    ([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]], [6.0, 7.0, 8.0])
    """

    def __init__(self, shapes: Mapping):
        if not isinstance(shapes, Mapping) or not shapes:
            raise LossError(f"a layout needs a non-empty mapping name -> shape, got {shapes!r}")
        cleaned: Dict[str, Tuple[int, ...]] = {}
        for name, shape in shapes.items():
            if not isinstance(name, str):
                raise LossError(f"parameter names must be strings, got {name!r}")
            try:
                shape = tuple(int(s) for s in (shape if isinstance(shape, (tuple, list)) else (shape,)))
            except (TypeError, ValueError):
                raise LossError(f"parameter {name!r}: shape must be a tuple of ints, got {shape!r}") from None
            if any(s < 1 for s in shape):
                raise LossError(f"parameter {name!r}: every dimension must be >= 1, got {shape}")
            cleaned[name] = shape
        self.shapes = cleaned
        sizes = [int(np.prod(s)) if s else 1 for s in cleaned.values()]
        ends = np.cumsum(sizes)
        self._slices = {name: slice(int(e - n), int(e)) for name, n, e in zip(cleaned, sizes, ends)}
        self.size = int(ends[-1])

    @classmethod
    def of(cls, params: Mapping) -> "Layout":
        """The layout of a dict of arrays."""
        return cls({name: np.shape(value) for name, value in params.items()})

    @property
    def matrices(self) -> Tuple[str, ...]:
        """The names of the 2-D entries."""
        return tuple(name for name, shape in self.shapes.items() if len(shape) == 2)

    def __iter__(self) -> Iterator[Tuple[str, slice, Tuple[int, ...]]]:
        for name, shape in self.shapes.items():
            yield name, self._slices[name], shape

    def __len__(self) -> int:
        return len(self.shapes)

    def __eq__(self, other) -> bool:
        return isinstance(other, Layout) and list(self.shapes.items()) == list(other.shapes.items())

    def __hash__(self) -> int:
        return hash(tuple(self.shapes.items()))

    def __repr__(self) -> str:
        return "Layout(" + ", ".join(f"{name}={shape}" for name, shape in self.shapes.items()) + ")"

    def flatten(self, params: Mapping) -> np.ndarray:
        """The flat vector of a dict of arrays with this layout."""
        missing = [name for name in self.shapes if name not in params]
        extra = [name for name in params if name not in self.shapes]
        if missing or extra:
            raise LossError(f"parameters {sorted(params)} do not match the layout {self!r}")
        parts = []
        for name, _, shape in self:
            value = real_array(params[name], f"parameter {name!r}")
            if value.shape != shape:
                raise LossError(f"parameter {name!r} has shape {value.shape}; the layout says {shape}")
            parts.append(value.ravel())
        return np.concatenate(parts)

    def unflatten(self, theta) -> Dict[str, Any]:
        """The named arrays of a flat vector (autograd-traceable: works inside a loss or direction)."""
        if np.shape(theta) != (self.size,):
            raise LossError(f"a flat vector of {self.size} parameters is needed for {self!r}, "
                            f"got shape {np.shape(theta)}")
        xp = numpy_for(theta)                     # plain arrays: NumPy's views, without autograd's wrappers
        return {name: xp.reshape(theta[cut], shape) for name, cut, shape in self}

    def map(self, fun: Callable, theta, *others):
        """The flat vector of ``fun(name, array, *other arrays)`` over every entry (autograd-traceable;
        on plain arrays, plain NumPy: autograd's wrappers cost a few microseconds a call)."""
        parts = []
        xp = numpy_for(theta, *others)
        for name, cut, shape in self:
            out = fun(name, *[xp.reshape(x[cut], shape) for x in (theta,) + others])
            parts.append(numpy_for(out).ravel(out))
        return numpy_for(*parts).concatenate(parts)


# ----------------------------------------------------------------------------
# A loss over named arrays
# ----------------------------------------------------------------------------


class StructuredLoss:
    """A loss on flat theta made from a loss over named arrays; carries ``layout`` and ``start``."""

    def __init__(self, loss: Callable, layout: Layout, start: Optional[np.ndarray] = None, name: str = ""):
        if not callable(loss):
            raise LossError(f"loss must be a callable params -> scalar, got {type(loss).__name__}")
        self.loss_of_params, self.layout = loss, layout
        self.start = None if start is None else np.asarray(start, dtype=float)
        self.__name__ = name or getattr(loss, "__name__", "loss")

    def __call__(self, theta):
        return self.loss_of_params(self.layout.unflatten(theta))

    def __repr__(self) -> str:
        return f"structured({self.__name__}, {self.layout!r})"


def structured(loss: Callable, params: Mapping) -> StructuredLoss:
    """A loss on flat theta from ``loss(params)`` over a dict of named arrays, starting at ``params``.

    The result has ``.layout`` (a :class:`Layout`) and ``.start`` (the flat start point).
    """
    if isinstance(loss, StructuredLoss):
        loss = loss.loss_of_params
    if not isinstance(params, Mapping):
        raise LossError(f"params must be a dict of named arrays, got {type(params).__name__}")
    layout = Layout.of(params)
    return StructuredLoss(loss, layout, layout.flatten(params))


def layout_of(loss) -> Optional[Layout]:
    """The layout a loss carries, or None for a loss on a plain flat vector."""
    return getattr(loss, "layout", None) if isinstance(getattr(loss, "layout", None), Layout) else None
