"""memless: how memory in optimization algorithms implicitly modifies the loss.

An optimizer with memory, theta^(n+1) = theta^(n) - h F^(n)(theta^(n), ..., theta^(0)),
is tracked to O(h^2) by the memoryless iteration
theta <- theta - h [F^(n)(theta) + M^(n)(theta)] (Cattaneo & Shigida 2025, Eq. 4 and 12).
memless computes the correction M for any optimizer and tells what it does to the loss.

>>> import memless, numpy as np
>>> opt = memless.get_optimizer("adamw")
>>> M = memless.correction(opt, lambda t: (t ** 4).sum(), np.ones(2), lr=1e-3)

Where things live: :mod:`memless.core` (the optimizer contract), :mod:`memless.engine`
(Eq. 12), :mod:`memless.optimizers` (the built-ins), :mod:`memless.registry`
(plugins), :mod:`memless.analysis` (what memory does, measured) and
:mod:`memless.report` (its rendering), :mod:`memless.extend` (for plugin authors).
"""
from ._version import __version__  # noqa: F401  (memless.__version__)

from .core import (Channel, DecoupledWeightDecay, ImplicitLoss, MemoryOptimizer, MomentumOptimizer, Term,
                   ema, ema_bias_correction)
from .engine import CorrectionInfo, correction, correction_terms
from .errors import (DerivativeWarning, OrderWarning, DivergenceError, HyperparameterError, LossError, MemlessError,
                     MemoryTruncationWarning, OptimizerError, PluginError, UnknownOptimizerError)
from .hyperparameters import Hyperparameter, choice, decay, flag, nonnegative, positive, weight_decay
from .modified import ModifiedEquation, implicit_loss, modified_equation
from .parameters import Layout, structured
from .probe import Probe
from .registry import PluginWarning, available, get_optimizer
from .trajectory import OrderStudy, order_study, trajectory
from . import _display  # noqa: E402,F401  (the presentation layer registers the Jupyter views)

__all__ = [
    "MemoryOptimizer", "MomentumOptimizer", "DecoupledWeightDecay", "Channel", "Term", "Hyperparameter",
    "ImplicitLoss", "decay", "positive", "nonnegative", "weight_decay", "flag", "choice", "ema",
    "ema_bias_correction",
    "correction", "correction_terms", "CorrectionInfo",
    "trajectory", "order_study", "OrderStudy",
    "modified_equation", "ModifiedEquation", "implicit_loss",
    "get_optimizer", "available", "Layout", "structured", "Probe",
    "MemlessError", "HyperparameterError", "UnknownOptimizerError", "LossError",
    "DivergenceError", "PluginError", "OptimizerError", "MemoryTruncationWarning", "PluginWarning", "DerivativeWarning", "OrderWarning",
]
