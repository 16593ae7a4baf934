"""Losses computed by a framework: :class:`ExternalLoss` (value, gradient, HVP as NumPy
callables) and the PyTorch (:mod:`.torch`) and JAX (:mod:`.jax`) builders of one."""
from .external import ExternalLoss

__all__ = ["ExternalLoss"]
