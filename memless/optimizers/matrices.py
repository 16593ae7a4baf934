"""What the optimizers that act per matrix share: the layout check and the per-matrix map."""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from ..errors import HyperparameterError
from ..parameters import Layout


def check_matrices(label: str, layout: Optional[Layout], what: str) -> None:
    """Raise HyperparameterError unless every parameter in ``layout`` is a 2-D matrix.

    Like torch.optim.Muon, which raises ValueError for a parameter that is not 2-D:
    the common practice is to give vectors (biases, gains) to AdamW.
    """
    if layout is None:
        raise HyperparameterError(
            f"{label} {what}: give a loss over named 2-D arrays (theta as a dict of arrays, or "
            "memless.structured(loss, params)) or a matrix reference loss ('factorization', 'network'); "
            "got one flat vector")
    vectors = [f"{name!r} has shape {shape}" for name, shape in layout.shapes.items() if len(shape) != 2]
    if vectors:
        raise HyperparameterError(
            f"{label} {what}, and only 2-D matrices (as torch.optim.Muon): {', '.join(vectors)}; "
            "the common practice is AdamW for vectors -- analyze those parameters with 'adamw'")


def per_matrix(layout: Layout, fun: Callable, x, *others):
    """The flat vector of ``fun(matrix, *other matrices)`` over the layout's matrices (an error
    about one matrix names it)."""
    return layout.map(lambda name, *arrays: named(name, fun, *arrays), x, *others)


def named(name: str, fun: Callable, *arrays):
    """``fun(*arrays)``; a :class:`~memless.numerics.linalg.SingularPolarError` is raised again with the matrix's name."""
    from ..numerics.linalg import SingularPolarError
    try:
        return fun(*arrays)
    except SingularPolarError as exc:
        if repr(name) in str(exc):
            raise
        raise SingularPolarError(str(exc).replace("at a ", f"at matrix {name!r}, a ", 1)) from None


def smallest_singular_values(layout: Layout, gradients: np.ndarray) -> np.ndarray:
    """sigma_min of every matrix of every gradient row (rows: points along a path)."""
    rows = np.atleast_2d(np.asarray(gradients, dtype=float))
    out = []
    for row in rows:
        parts = layout.unflatten(row)
        out.append([np.linalg.svd(parts[name], compute_uv=False)[-1] for name in layout.matrices])
    return np.asarray(out)
