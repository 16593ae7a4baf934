"""The exceptions memless raises: each one says what is wrong and what is allowed.

All derive from :class:`MemlessError`, so ``except memless.MemlessError`` catches
every usage error; each also derives from the matching builtin (``ValueError``,
``LookupError``, ...) so generic handlers keep working.
"""


class MemlessError(Exception):
    """Base class of every error memless raises on bad input."""


class HyperparameterError(MemlessError, ValueError):
    """A hyperparameter is unknown or outside its allowed range."""


class UnknownOptimizerError(MemlessError, LookupError):
    """No optimizer is registered under the requested name."""

    def __str__(self):  # LookupError would quote the message like a KeyError
        return str(self.args[0]) if self.args else ""


class LossError(MemlessError, ValueError):
    """The loss is not a finite scalar function of theta, or theta is malformed."""


class DivergenceError(MemlessError, FloatingPointError):
    """An iteration produced a non-finite iterate (the learning rate is too large)."""


class PluginError(MemlessError, RuntimeError):
    """A third-party optimizer plugin could not be loaded or constructed."""


class OptimizerError(MemlessError, RuntimeError):
    """An optimizer's own code misbehaved at run time: it raised, or returned a value of the wrong
    shape, or a non-finite value at a finite iterate with a finite gradient."""


class MemoryTruncationWarning(UserWarning):
    """The history was cut before the optimizer's memory had decayed below tolerance."""


class OrderWarning(UserWarning):
    """An order study's fitted order is NaN: an error was 0 or not finite."""


class DerivativeWarning(UserWarning):
    """A derivative taken by difference quotients (a black-box optimizer's) is not accurate:
    the function is not smooth at the scale of the differences."""
