"""Everything memless does with JAX, in one import: :func:`objective` (a JAX function
as a memless loss, :mod:`memless.frameworks.losses.jax`; importing it turns on float64)
and :class:`OptaxTransformation` (an optax transformation as a MemoryOptimizer,
:mod:`memless.frameworks.optimizers.blackbox`).
"""
from .losses.jax import objective
from .optimizers.blackbox import OptaxTransformation

__all__ = ["objective", "OptaxTransformation"]
