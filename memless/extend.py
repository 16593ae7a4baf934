"""Everything a plugin author needs to write a new optimizer, in one import.

>>> from memless.extend import MomentumOptimizer, Channel, decay, gradient_signal

A generic optimizer subclasses :class:`MemoryOptimizer` and writes ``direction``;
one in momentum form subclasses :class:`MomentumOptimizer` and writes ``channels``
and ``combine``; :class:`DecoupledWeightDecay` adds ``lambda theta``.
:func:`check_optimizer` is the conformance kit its tests call.
"""
from .contract.hyperparameters import Hyperparameter, choice, decay, flag, nonnegative, positive, weight_decay
from .contract.optimizer import (
                                 Channel,
                                 DecoupledWeightDecay,
                                 ImplicitLoss,
                                 MemoryOptimizer,
                                 MomentumOptimizer,
                                 Term,
                                 ema,
                                 ema_bias_correction,
                                 gradient_signal,
                                 parameter_signal,
                                 squared_gradient_signal,
)
from .testing import check_optimizer, tame

__all__ = ["MemoryOptimizer", "MomentumOptimizer", "DecoupledWeightDecay", "Channel", "Term", "ImplicitLoss",
           "Hyperparameter", "decay", "positive", "nonnegative", "weight_decay", "flag", "choice", "ema",
           "ema_bias_correction", "gradient_signal", "squared_gradient_signal", "parameter_signal",
           "check_optimizer", "tame"]
