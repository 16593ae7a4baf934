"""Numerical groundwork shared by the optimizers and the engine: autograd derivative
rules memless adds (:mod:`.autodiff`) and matrix kernels such as the polar factor
(:mod:`.linalg`).  Imports nothing above :mod:`memless.errors`.
"""
