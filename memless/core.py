"""The core interface: an optimizer with memory, in the two forms of the paper.

* :class:`MemoryOptimizer` -- any algorithm of the form (Eq. 1)::

      theta^(n+1) = theta^(n) - h F^(n)(theta^(n), theta^(n-1), ..., theta^(0))

  A subclass implements ONE method, :meth:`MemoryOptimizer.direction`, which
  maps the history (newest first) to F^(n).  The correction engine
  (:mod:`memless.engine`) needs nothing else.

* :class:`MomentumOptimizer` -- the momentum-variable form of Remark 3.2::

      m_l^(n+1) = b_l^(n+1) sum_{k=0..n} beta_l^k g_l(theta^(n-k)),
      F^(n) = Phi(m_1^(n+1), ..., m_L^(n+1))

  A subclass lists its memory :class:`Channel` s and writes Phi
  (:meth:`MomentumOptimizer.combine`); it then gets streaming O(1)-per-step
  trajectories, the exact finite-n correction at a cost independent of n and
  the closed-form n -> infinity limit of Section 3.2, all for free.
"""
import abc
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import HyperparameterError

# ----------------------------------------------------------------------------
# Hyperparameters: declared once per optimizer, validated in one place
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Hyperparameter:
    """A named hyperparameter with its default, its allowed values and a doc line.

    ``check(value)`` returns the value converted to its canonical type, or raises
    :class:`~memless.errors.HyperparameterError` naming what is allowed.
    """

    name: str
    default: Any
    allowed: str
    check: Callable[[Any], Any] = field(repr=False)
    doc: str = ""
    #: the value the conformance kit (:mod:`memless.testing`) uses for its order
    #: check, where the first-order theory holds (None: keep the instance's value)
    tame: Any = None

    def validate(self, value, owner="optimizer"):
        try:
            return self.check(value)
        except (TypeError, ValueError) as exc:
            raise HyperparameterError(
                f"{owner}: {self.name}={value!r} is invalid; allowed: {self.allowed}"
            ) from exc


def _real(value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError("not a real number")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError("not finite")
    return value


def _in_range(lo, hi, lo_open=False, hi_open=True):
    def check(value):
        value = _real(value)
        if (value <= lo if lo_open else value < lo) or (value >= hi if hi_open else value > hi):
            raise ValueError("out of range")
        return value

    return check


def decay(name, default, doc="", tame=0.5):
    """A memory decay (momentum) parameter, in [0, 1)."""
    return Hyperparameter(name, default, "a number in [0, 1)", _in_range(0.0, 1.0), doc, tame)


def positive(name, default, doc="", tame=None):
    """A strictly positive number (e.g. a numerical-stability epsilon)."""
    return Hyperparameter(name, default, "a number > 0", _in_range(0.0, math.inf, lo_open=True), doc, tame)


def nonnegative(name, default, doc=""):
    """A number >= 0 (e.g. a weight decay)."""
    return Hyperparameter(name, default, "a number >= 0", _in_range(0.0, math.inf), doc)


def flag(name, default, doc=""):
    """A boolean switch."""

    def check(value):
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError("not a bool")
        return bool(value)

    return Hyperparameter(name, default, "True or False", check, doc)


def choice(name, default, options, doc=""):
    """One of a fixed set of strings."""
    options = tuple(options)

    def check(value):
        if value not in options:
            raise ValueError("not an option")
        return value

    return Hyperparameter(name, default, "one of " + ", ".join(repr(o) for o in options), check, doc)


# ----------------------------------------------------------------------------
# The implicit (modified) loss an optimizer declares (Section 5.1)
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ImplicitLoss:
    """F + M = P(theta) grad Ltilde(theta): the loss the memoryless iteration descends.

    * ``loss``: Ltilde(theta), written with autograd.numpy;
    * ``preconditioner``: P(theta, grad) -> a scalar or a vector (diagonal P);
    * ``formula``: Ltilde in words, for reports;
    * ``regime``: where the identity holds exactly ("exact", or e.g. "eps -> 0": the
      difference is then O(h eps) and :func:`memless.implicit_loss` measures it).
    """

    loss: Callable = field(repr=False)
    preconditioner: Callable = field(repr=False)
    formula: str
    regime: str = "exact"


# ----------------------------------------------------------------------------
# MemoryOptimizer: F^(n) over the history of iterates (Eq. 1)
# ----------------------------------------------------------------------------


class MemoryOptimizer(abc.ABC):
    """An optimizer with memory, ``theta^(n+1) = theta^(n) - h F^(n)(history)`` (Eq. 1).

    Subclass it and implement :meth:`direction`; declare hyperparameters in the
    class attribute ``hyperparameters`` (a tuple of :class:`Hyperparameter`, see
    :func:`decay`, :func:`positive`, ...).  They become attributes of the
    instance, validated on construction.

    Example -- the average of the last ``window`` gradients (not in momentum form)::

        >>> import memless
        >>> class WindowAverage(memless.MemoryOptimizer):
        ...     name = "window-average"
        ...     window = 3
        ...     def direction(self, history, gradient):
        ...         recent = history[: self.window]
        ...         return sum(gradient(theta) for theta in recent) / len(recent)
        >>> import numpy as np
        >>> opt = WindowAverage()
        >>> M = memless.correction(opt, lambda t: (t ** 4).sum(), np.ones(2), lr=0.01, n=10)

    Memory must decay (Assumption 3.1): ``||dF^(n)/dtheta^(n-k)|| <= gamma_k`` with
    ``sum k^2 gamma_k < infinity``.
    """

    #: registry name (set by the registry when loaded from an entry point)
    name: ClassVar[Optional[str]] = None
    #: the hyperparameters, in order
    hyperparameters: ClassVar[Tuple[Hyperparameter, ...]] = ()
    #: number of past iterates F^(n) reads (None: possibly all of them)
    window: ClassVar[Optional[int]] = None
    #: the update rule, in words or symbols, for reports
    update_rule: ClassVar[str] = ""
    #: where the optimizer is defined in the literature (e.g. "Example 1.1")
    reference: ClassVar[str] = ""
    #: sharpness proxy the memory term is judged against: "l2" (||grad L||^2)
    #: for GD-type methods, "l1" (||grad L||_{1,eps}) for adaptive ones
    sharpness: ClassVar[str] = "l2"
    #: the implicitly modified loss, where the correction is a (preconditioned) gradient field
    modified_loss: ClassVar[str] = ""

    def __init__(self, **values):
        cls = type(self)
        known = {hp.name: hp for hp in cls.hyperparameters}
        unknown = sorted(set(values) - set(known))
        if unknown:
            allowed = ", ".join(known) or "none"
            raise HyperparameterError(
                f"{self._label()}: unknown hyperparameter {unknown[0]!r}; allowed: {allowed}"
            )
        for hp in cls.hyperparameters:
            value = values.get(hp.name, hp.default)
            setattr(self, hp.name, hp.validate(value, owner=self._label()))
        self._check()

    def _label(self):
        return type(self).name or type(self).__name__

    def _check(self):
        """Hook for cross-parameter validation; raise HyperparameterError."""

    @property
    def hyper(self):
        """The hyperparameters in force, as an ordered dict."""
        return {hp.name: getattr(self, hp.name) for hp in type(self).hyperparameters}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyper.items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return type(self) is type(other) and self.hyper == other.hyper

    def __hash__(self):
        return hash((type(self), tuple(self.hyper.items())))

    # -- the one hook ------------------------------------------------------

    @abc.abstractmethod
    def direction(self, history, gradient):
        """F^(n): the update direction given the history, newest first.

        ``history[k]`` is theta^(n-k), so ``history[0]`` is the current iterate
        and ``n = len(history) - 1``; ``gradient(theta)`` is the loss gradient.
        Write it with ``autograd.numpy`` (or plain arithmetic) so the engine can
        differentiate it with respect to the history.
        """

    # -- optional -----------------------------------------------------------

    def implicit_loss(self, loss, lr):
        """The :class:`ImplicitLoss` with F + M = P grad Ltilde, or None if M is not such a field.

        Override it where the correction is a (preconditioned) gradient field;
        :func:`memless.implicit_loss` checks the claim numerically.
        """
        return None

    # -- derived ------------------------------------------------------------

    def memoryless_direction(self, theta, gradient, n):
        """F^(n)(theta) := F^(n)(theta, ..., theta), the direction at a constant history (Eq. 4)."""
        return self.direction([theta] * (n + 1), gradient)


# ----------------------------------------------------------------------------
# Momentum-variable form (Remark 3.2)
# ----------------------------------------------------------------------------

Scale = Union[float, Callable[[Any], Any]]


@dataclass(frozen=True)
class Channel:
    """One memory channel ``m_l^(n+1) = b_l^(n+1) sum_k beta_l^k g_l(theta^(n-k))``.

    * ``name``: how reports and :func:`memless.correction_terms` call it;
    * ``decay``: beta_l in [0, 1); 0 means no memory (it reads theta^(n) only);
    * ``signal(theta, grad)``: g_l, given theta and the loss gradient at theta
      (e.g. ``lambda theta, grad: grad ** 2``);
    * ``scale``: b_l^(t) as a function of the number of summed terms t = n + 1,
      vectorized over arrays of t and accepting ``t = inf`` for the limit b_l
      (see :func:`ema_bias_correction`), or a constant;
    * ``formula``: optional closed form of this channel's correction, for reports.
    """

    name: str
    decay: float
    signal: Callable = field(repr=False)
    scale: Scale = 1.0
    formula: str = ""

    def b(self, t):
        """b_l^(t), vectorized over t; t = inf gives the limit b_l."""
        t = np.asarray(t, dtype=float)
        if callable(self.scale):
            return np.broadcast_to(np.asarray(self.scale(t), dtype=float), t.shape)
        return np.full(t.shape, float(self.scale))

    def weight(self, n):
        """a_l(n) = b_l^(n+1) sum_{k=0..n} beta_l^k: m_l^(n+1) = a_l(n) g_l at a constant history."""
        n = np.asarray(n, dtype=float)
        beta = self.decay
        total = n + 1.0 if beta == 1.0 else (1.0 - beta ** (n + 1.0)) / (1.0 - beta)
        return self.b(n + 1.0) * total


# Signals g_l(theta, grad) shared by the built-ins.

def gradient_signal(theta, grad):
    """g_l = grad L(theta)."""
    return grad


def squared_gradient_signal(theta, grad):
    """g_l = (grad L(theta))^2, componentwise (Adam's second moment)."""
    return grad ** 2


def parameter_signal(theta, grad):
    """g_l = theta (decoupled weight decay)."""
    return theta


def ema_bias_correction(beta):
    """b^(t) = (1 - beta) / (1 - beta^t): Adam's bias-corrected exponential moving average."""

    def scale(t):
        return (1.0 - beta) / (1.0 - np.power(beta, t))

    return scale


def ema(beta):
    """b = 1 - beta: an exponential moving average without bias correction."""
    return 1.0 - beta


class MomentumOptimizer(MemoryOptimizer):
    """An optimizer written in momentum variables (Remark 3.2).

    Implement :meth:`channels` (the memories and their decays) and
    :meth:`combine` (Phi).  Example -- heavy-ball::

        >>> import memless
        >>> class HeavyBall(memless.MomentumOptimizer):
        ...     hyperparameters = (memless.decay("beta", 0.9),)
        ...     def channels(self):
        ...         return [memless.Channel("momentum", self.beta, lambda theta, grad: grad)]
        ...     def combine(self, m):
        ...         return m["momentum"]

    Set ``elementwise = True`` when Phi broadcasts over a leading batch axis
    (all built-ins do); the engine then evaluates the finite-n sums in one call.
    Set ``linear = True`` when Phi is linear in the memories; the finite-n sums
    then cost O(n) scalar operations instead of O(n d).
    """

    elementwise: ClassVar[bool] = False
    #: True when Phi is linear in the memories (heavy-ball, Nesterov): the engine
    #: then sums finite-n histories as scalars, at a cost independent of n
    linear: ClassVar[bool] = False

    @abc.abstractmethod
    def channels(self) -> Sequence[Channel]:
        """The memory channels, in a fixed order."""

    @abc.abstractmethod
    def combine(self, m):
        """Phi: the direction F^(n) from the memories ``m[channel name]``."""

    # -- history form (what Eq. 12 differentiates) --------------------------

    def direction(self, history, gradient):
        n = len(history) - 1
        m = {}
        for ch in self.channels():
            b = float(ch.b(n + 1))
            if ch.decay == 0.0:
                m[ch.name] = b * ch.signal(history[0], gradient(history[0]))
                continue
            total = 0.0
            for k, theta in enumerate(history):
                total = total + ch.decay ** k * ch.signal(theta, gradient(theta))
            m[ch.name] = b * total
        return self.combine(m)

    def memoryless_direction(self, theta, gradient, n):
        g = gradient(theta)
        return self.combine({ch.name: float(ch.weight(n)) * ch.signal(theta, g) for ch in self.channels()})

    # -- streaming form: O(1) per step ---------------------------------------

    def initial_memory(self, theta):
        """The memories before the first step (running sums, without b_l)."""
        return {ch.name: 0.0 for ch in self.channels()}

    def advance(self, memory, theta, grad, n):
        """One streaming step at iterate theta^(n): returns (F^(n), new memory)."""
        new = {}
        scaled = {}
        for ch in self.channels():
            new[ch.name] = ch.decay * memory[ch.name] + ch.signal(theta, grad)
            scaled[ch.name] = float(ch.b(n + 1)) * new[ch.name]
        return self.combine(scaled), new

    # -- the limit n -> infinity (Section 3.2) --------------------------------

    def limit_direction(self, theta, gradient):
        """F(theta) = Phi(gbar_1, ..., gbar_L), gbar_l = b_l g_l / (1 - beta_l)."""
        g = gradient(theta)
        return self.combine({ch.name: float(ch.weight(math.inf)) * ch.signal(theta, g) for ch in self.channels()})
