"""A JAX function as a memless loss: ``jax.grad`` and ``jax.jvp`` of it, jitted.

>>> import jax.numpy as jnp, memless                                   # doctest: +SKIP
>>> from memless.frameworks.jax import objective                      # doctest: +SKIP
>>> loss = objective(lambda p: jnp.sum((p["U"] @ p["V"].T - Y) ** 2) / 2, params)   # doctest: +SKIP
>>> M = memless.correction(memless.get_optimizer("muon"), loss, None, lr=1e-3)       # doctest: +SKIP

``params`` is a dict of arrays (its sorted keys and shapes become the loss's
:class:`~memless.parameters.Layout`) or one flat array.  Importing this module turns on
JAX's float64 (``jax_enable_x64``): import it before you create your arrays, or they stay
float32 and the loss's numbers carry float32 rounding.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ...errors import LossError
from ...parameters import Layout, real_array
from .external import ExternalLoss

try:                                    # float64, before the user's arrays are made
    import jax as _jax
    _jax.config.update("jax_enable_x64", True)
except ImportError:                     # reported when objective() is called
    _jax = None  # type: ignore[assignment]


def objective(fun: Callable, params, *, name: str = "") -> ExternalLoss:
    """``fun(params) -> scalar`` as a loss on the flat parameter vector, starting at ``params``.

    value and gradient: one jitted ``jax.value_and_grad``; Hessian-vector products: jitted
    ``jax.jvp`` of ``jax.grad`` (forward over reverse); third derivatives (for ``order=2``): a jitted
    ``jax.jvp`` of that.  At the point where the engine takes its correction, the gradient comes
    from a jitted ``jax.linearize`` of ``jax.grad``, whose linear map gives each HVP there without
    a second gradient.
    """
    try:
        import jax
    except ImportError:
        raise LossError("memless.frameworks.jax needs JAX: pip install memless[jax]") from None
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    if not callable(fun):
        raise LossError(f"fun must be a callable params -> scalar, got {type(fun).__name__}")
    if isinstance(params, dict):
        params = {k: jnp.asarray(real_array(v, f"params[{k!r}]")) for k, v in params.items()}
        layout = Layout({k: tuple(np.shape(params[k])) for k in sorted(params)})
    else:
        params = jnp.asarray(real_array(params, "params"))
        layout = None
    flat, unravel = ravel_pytree(params)

    def flat_fun(x):
        return fun(unravel(x))

    value = jax.jit(flat_fun)
    gradient = jax.jit(jax.grad(flat_fun))
    value_and_gradient = jax.jit(jax.value_and_grad(flat_fun))
    hvp = jax.jit(lambda x, v: jax.jvp(jax.grad(flat_fun), (x,), (v,))[1])
    third = jax.jit(lambda x, v, w: jax.jvp(lambda y: jax.jvp(jax.grad(flat_fun), (y,), (v,))[1], (x,), (w,))[1])

    def gradient_and_value(x):
        value, g = jax.value_and_grad(flat_fun)(x)
        return g, value

    recorded = jax.jit(lambda x: jax.linearize(gradient_and_value, x, has_aux=True))
    push = jax.jit(lambda tangent, v: tangent(v))

    def linearize(t):
        g, tangent, value = recorded(jnp.asarray(t))
        return float(value), np.asarray(g), lambda v: np.asarray(push(tangent, jnp.asarray(v)))
    return ExternalLoss(lambda t: float(value(jnp.asarray(t))), lambda t: np.asarray(gradient(jnp.asarray(t))),
                        lambda t, v: np.asarray(hvp(jnp.asarray(t), jnp.asarray(v))),
                        value_and_gradient=lambda t: value_and_gradient(jnp.asarray(t)), linearize=linearize,
                        third=lambda t, v, w: np.asarray(third(jnp.asarray(t), jnp.asarray(v), jnp.asarray(w))),
                        start=np.asarray(flat, dtype=float), layout=layout, name=name or getattr(fun, "__name__", "jax"))
