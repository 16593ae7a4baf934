"""Losses computed by a framework: what the engine needs from a loss, as one small interface.

The engine needs three things from a loss, all as NumPy vectors on the flat parameter
vector: its value, its gradient, and Hessian-vector products.  :class:`ExternalLoss`
takes those three callables and becomes a loss every memless function accepts (its
derivatives reach autograd as primitives, so nothing else changes).  The frameworks
supply them on whatever hardware they run:

* :func:`memless.frameworks.torch.objective` -- a ``torch.nn.Module`` and a loss function;
* :func:`memless.frameworks.jax.objective` -- a JAX function of a dict of arrays;
* your own: ``ExternalLoss(value, gradient, hvp, start=theta0)`` (and optionally
  ``linearize=theta -> (value, gradient, v -> H v)``, one pass that keeps what the HVPs need).

Optimizers you did not write as memless classes -- a step function, a torch.optim class, an
optax transformation -- become MemoryOptimizers in :mod:`memless.frameworks.blackbox`.
PyTorch and JAX are imported only by these modules when used, never by the core.

>>> import numpy as np
>>> A = np.array([[2.0, 0.5], [0.5, 1.0]])
>>> f = ExternalLoss(lambda t: 0.5 * t @ A @ t, lambda t: A @ t, lambda t, v: A @ v, start=np.ones(2))
>>> import memless
>>> M = memless.correction(memless.get_optimizer("heavy-ball", beta=0.5), f, None, lr=0.01)
>>> bool(np.allclose(M, 0.01 * 0.5 / 0.5 ** 3 * A @ (A @ np.ones(2))))
True
"""
from .losses.external import ExternalLoss

__all__ = ["ExternalLoss"]
