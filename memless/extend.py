"""Everything a plugin author needs to write a new optimizer, in one import.

>>> from memless.extend import MomentumOptimizer, Channel, decay, gradient_signal
"""
from .core import (Channel, Hyperparameter, MemoryOptimizer, MomentumOptimizer, choice, decay, ema,
                   ema_bias_correction, flag, gradient_signal, nonnegative, parameter_signal, positive,
                   squared_gradient_signal)
from .testing import check_optimizer, tame

__all__ = ["MemoryOptimizer", "MomentumOptimizer", "Channel", "Hyperparameter", "decay", "positive",
           "nonnegative", "flag", "choice", "ema", "ema_bias_correction", "gradient_signal",
           "squared_gradient_signal", "parameter_signal", "check_optimizer", "tame"]
