"""Everything a plugin author needs to write a new optimizer, in one import.

>>> from memless.extend import MomentumOptimizer, Channel, decay, gradient_signal

A generic optimizer subclasses :class:`MemoryOptimizer` and writes ``direction``;
one in momentum form subclasses :class:`MomentumOptimizer` and writes ``channels``
and ``combine``; :class:`DecoupledWeightDecay` adds ``lambda theta``.  What its memory
means for the loss is read from its declared ``sharpness`` ("l2" or "l1") and
``modified_loss``; an optimizer with a closed form of its own declares a
:class:`Meaning` (structure, implicit loss) with :func:`declare_meaning`.
:func:`check_optimizer` is the conformance kit its tests call.
"""
from .contract.hyperparameters import Hyperparameter, choice, decay, flag, nonnegative, positive, weight_decay
from .contract.optimizer import (Channel, DecoupledWeightDecay, MemoryOptimizer, MomentumOptimizer, Term, ema,
                                 ema_bias_correction, gradient_signal, parameter_signal, squared_gradient_signal)
from .studies.meanings import GENERIC, Effect, ImplicitLoss, Meaning, Structure
from .studies.meanings import declare as declare_meaning
from .testing import check_optimizer, tame

__all__ = ["MemoryOptimizer", "MomentumOptimizer", "DecoupledWeightDecay", "Channel", "Term", "ImplicitLoss",
           "Hyperparameter", "decay", "positive", "nonnegative", "weight_decay", "flag", "choice", "ema",
           "ema_bias_correction", "gradient_signal", "squared_gradient_signal", "parameter_signal",
           "Meaning", "GENERIC", "Effect", "Structure", "declare_meaning", "check_optimizer", "tame"]
