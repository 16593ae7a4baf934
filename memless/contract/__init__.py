"""The optimizer contract: what an optimizer with memory declares and computes.

* :mod:`.optimizer` -- :class:`MemoryOptimizer` (F^(n) over the history of iterates,
  Cattaneo & Shigida 2025, Eq. 1), :class:`MomentumOptimizer` (the momentum form of
  Section 3.2: channels and their combination), :class:`DecoupledWeightDecay`;
* :mod:`.hyperparameters` -- declared, checked hyperparameters (``decay``, ``positive``, ...).

Nothing here computes a correction; :mod:`memless.engine` does.
"""
