"""memless: how memory in optimization algorithms implicitly modifies the loss.

An optimizer with memory, theta^(n+1) = theta^(n) - h F^(n)(theta^(n), ..., theta^(0)),
is tracked to O(h^2) by the memoryless iteration
theta <- theta - h [F^(n)(theta) + M^(n)(theta)] (Cattaneo & Shigida 2025, Eq. 4 and 12).
memless computes the correction M for any optimizer and tells what it does to the loss.

>>> import memless, numpy as np
>>> opt = memless.get_optimizer("adamw")
>>> M = memless.correction(opt, lambda t: (t ** 4).sum(), np.ones(2), lr=1e-3)

Where things live, lowest layer first (README, Architecture): :mod:`memless.contract` (the
optimizer contract), :mod:`memless.optimizers` (the built-ins and the plugin registry),
:mod:`memless.engine` (Eq. 12), :mod:`memless.studies` (paths, order studies, what memory
does, measured), :mod:`memless.show` (report, figures, Jupyter), :mod:`memless.frameworks`
(PyTorch and JAX), :mod:`memless.extend` (for plugin authors).
"""
from ._version import __version__  # noqa: F401  (memless.__version__)

from .contract.optimizer import (Channel, DecoupledWeightDecay, MemoryOptimizer, MomentumOptimizer, Term, ema,
                                 ema_bias_correction)
from .engine.corrections import CorrectionInfo, correction, correction_terms
from .errors import (DerivativeWarning, OrderWarning, DivergenceError, HyperparameterError, LossError, MemlessError,
                     MemoryTruncationWarning, OptimizerError, PluginError, UnknownOptimizerError)
from .contract.hyperparameters import Hyperparameter, choice, decay, flag, nonnegative, positive, weight_decay
from .studies.modified import ModifiedEquation, implicit_loss, modified_equation
from .parameters import Layout, structured
from .studies.probe import Probe
from .optimizers.registry import PluginWarning, available, get_optimizer
from .studies.trajectories import OrderStudy, order_study, trajectory
from .studies.analysis import Analysis, analyze
from .studies.meanings import ImplicitLoss
from .show import jupyter as _jupyter  # noqa: E402,F401  (the presentation layer registers the Jupyter views)
from . import deprecation

deprecation.install()  # memless.core, memless.analysis, ... : the 0.6 module names, until 0.8


def __getattr__(name: str):
    """``memless.analysis`` and the other 0.6 module names after a plain ``import memless``, until 0.8."""
    old = f"memless.{name}"
    if old not in deprecation.MOVED:
        raise AttributeError(f"module 'memless' has no attribute {name!r}")
    import importlib
    return importlib.import_module(old)        # the finder warns, at the user's line


__all__ = [
    "MemoryOptimizer", "MomentumOptimizer", "DecoupledWeightDecay", "Channel", "Term", "Hyperparameter",
    "ImplicitLoss", "decay", "positive", "nonnegative", "weight_decay", "flag", "choice", "ema",
    "ema_bias_correction",
    "correction", "correction_terms", "CorrectionInfo",
    "trajectory", "order_study", "OrderStudy", "analyze", "Analysis",
    "modified_equation", "ModifiedEquation", "implicit_loss",
    "get_optimizer", "available", "Layout", "structured", "Probe",
    "MemlessError", "HyperparameterError", "UnknownOptimizerError", "LossError",
    "DivergenceError", "PluginError", "OptimizerError", "MemoryTruncationWarning", "PluginWarning", "DerivativeWarning", "OrderWarning",
]
