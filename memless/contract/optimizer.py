"""The core interface: an optimizer with memory, in the two forms of the paper.

* :class:`MemoryOptimizer` -- any algorithm of the form (Cattaneo & Shigida 2025, Eq. 1)::

      theta^(n+1) = theta^(n) - h F^(n)(theta^(n), theta^(n-1), ..., theta^(0))

  A subclass implements ONE method, :meth:`MemoryOptimizer.direction`, which
  maps the history (newest first) to F^(n).  Everything an analysis needs --
  streaming steps, the memoryless and limit directions, the correction terms'
  names, the memory length -- has a default built on it, so a plugin that writes
  only ``direction`` gets every analysis.  What its memory means for the loss (the
  sharpness proxy, modified and implicit losses) is read in :mod:`memless.studies.meanings`.

* :class:`MomentumOptimizer` -- the momentum-variable form of Remark 3.2::

      m_l^(n+1) = b_l^(n+1) sum_{k=0..n} beta_l^k g_l(theta^(n-k)),
      F^(n) = Phi(m_1^(n+1), ..., m_L^(n+1))

  A subclass lists its memory :class:`Channel` s and writes Phi
  (:meth:`MomentumOptimizer.combine`); it then gets O(1)-per-step streaming, the
  exact finite-n correction at a cost independent of n, the closed-form
  n -> infinity limit of Section 3.2 and one correction term per channel.

* :class:`DecoupledWeightDecay` -- ``+ lambda theta`` added to any momentum
  optimizer's direction, written once.

The callers (:mod:`memless.engine`, :mod:`memless.studies.trajectories`,
:mod:`memless.studies.analysis`, ...) use only the public methods defined here.
"""
from __future__ import annotations

import abc
import copy
import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..checks import shown
from ..deprecation import warn_user
from ..errors import HyperparameterError, MemlessError, OptimizerError
from ..parameters import Layout
from .hyperparameters import Hyperparameter

#: the history length at which a generic optimizer without a ``window`` stands for its
#: n -> infinity limit (a momentum optimizer has the limit in closed form)
LIMIT_STEPS = 10_000

# ----------------------------------------------------------------------------
# The terms M splits into
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Term:
    """One term of the correction M = sum of terms, as reports describe it.

    ``decay`` is the channel's beta (None for a generic optimizer's single term),
    ``weight`` its coefficient b beta/(1 - beta)^2 in M, ``formula`` its closed form.
    """

    name: str
    decay: Optional[float] = None
    weight: Optional[float] = None
    formula: str = ""

    @property
    def has_memory(self) -> bool:
        return self.decay is None or self.decay > 0


# ----------------------------------------------------------------------------
# MemoryOptimizer: F^(n) over the history of iterates (Eq. 1)
# ----------------------------------------------------------------------------


class History:
    """The streaming state of a generic optimizer: every iterate so far and the gradient
    function each step used (they differ on mini-batches)."""

    def __init__(self):
        self.thetas: List[np.ndarray] = []
        self.gradients: List[Callable] = []

    def append(self, theta, gradient: Callable) -> None:
        self.thetas.append(theta)
        self.gradients.append(gradient)

    def newest_first(self) -> List[np.ndarray]:
        return self.thetas[::-1]

    def gradient(self) -> Callable:
        """One gradient function for ``direction``: each history entry's own."""
        first = self.gradients[0]
        if all(g is first for g in self.gradients):
            return first
        return slot_gradient(self.thetas, self.gradients)


class OutsideWindow:
    """A history entry older than the optimizer's declared ``window``: reading it in any way (as an
    array, in arithmetic, by attribute) raises :class:`~memless.OptimizerError` naming the window --
    the engine sums only the declared window, so a read beyond it would be silently wrong."""

    __slots__ = ("label", "k", "window")

    def __init__(self, label: str, k: int, window: int):
        object.__setattr__(self, "label", label)
        object.__setattr__(self, "k", k)
        object.__setattr__(self, "window", window)

    def _refuse(self, *args, **kwargs):
        raise OptimizerError(
            f"{object.__getattribute__(self, 'label')}: direction() read history[{object.__getattribute__(self, 'k')}]"
            f", outside its declared window={object.__getattribute__(self, 'window')} (it may read history[0] to "
            f"history[{object.__getattribute__(self, 'window') - 1}]): declare the window it reads, or window = None")

    def __getattr__(self, name):
        self._refuse()

    __array__ = __array_ufunc__ = __array_function__ = _refuse
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _refuse
    __pow__ = __rpow__ = __matmul__ = __rmatmul__ = __neg__ = __pos__ = __abs__ = _refuse
    __getitem__ = __iter__ = __len__ = __float__ = __bool__ = __lt__ = __gt__ = __le__ = __ge__ = _refuse


def slot_gradient(thetas: Sequence[Any], gradients: Sequence[Callable]) -> Callable:
    """A gradient function that evaluates ``gradients[i]`` at ``thetas[i]`` (matched by identity):
    for histories whose steps used different losses (mini-batches)."""
    table = {id(theta): gradient for theta, gradient in zip(thetas, gradients)}

    def gradient(x):
        try:
            return table[id(x)](x)
        except KeyError:
            from ..errors import MemlessError
            raise MemlessError("direction() must evaluate gradient() on the history's own arrays "
                               "(gradient(history[k])) when the steps used different losses") from None

    return gradient


def _check_composition(cls) -> None:
    """Refuse an add-on (:class:`DecoupledWeightDecay`) placed after the optimizer it extends among
    the bases (``class AdamW(Adam, DecoupledWeightDecay)``: Adam's ``channels`` and ``combine`` come
    first in the method order and never reach the add-on, so its hyperparameter would be accepted
    and dropped), or an add-on whose hyperparameter is not declared."""
    add_ons = [a for a in globals().get("ADD_ONS", ()) if a in cls.__mro__ and a is not cls]
    for add_on in add_ons:
        ahead = [k for k in cls.__mro__[1:cls.__mro__.index(add_on)]
                 if k not in add_ons and ("channels" in vars(k) or "combine" in vars(k))]
        if ahead:
            raise TypeError(f"{cls.__name__}: put {add_on.__name__} before {ahead[0].__name__} among the bases "
                            f"(class {cls.__name__}({add_on.__name__}, {ahead[0].__name__})): after it, "
                            f"{ahead[0].__name__}'s channels and combine never reach {add_on.__name__}, and its "
                            "hyperparameter would be accepted and ignored")
    if add_ons and DecoupledWeightDecay in add_ons and "weight_decay" not in {hp.name for hp in cls.hyperparameters}:
        raise TypeError(f"{cls.__name__} extends DecoupledWeightDecay but does not declare its hyperparameter: "
                        "add memless.weight_decay(default) to hyperparameters")


class MemoryOptimizer(abc.ABC):
    """An optimizer with memory, ``theta^(n+1) = theta^(n) - h F^(n)(history)`` (Eq. 1).

    Subclass it and implement :meth:`direction`; declare hyperparameters in the
    class attribute ``hyperparameters`` (a tuple of :class:`Hyperparameter`, see
    :func:`memless.decay`, :func:`memless.positive`, ...).  They become attributes
    of the instance, validated on construction.

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
    ``sum k^2 gamma_k < infinity``.  Declare ``window`` when F^(n) reads only the
    last ``window`` iterates: the engine then sums only those.
    """

    #: registry name (set by the registry when loaded from an entry point)
    name: Optional[str] = None
    #: the hyperparameters, in order
    hyperparameters: ClassVar[Tuple[Hyperparameter, ...]] = ()
    #: number of past iterates F^(n) reads (None: possibly all of them)
    window: ClassVar[Optional[int]] = None
    #: the update rule, in words or symbols, for reports
    update_rule: ClassVar[str] = ""
    #: where the optimizer is defined in the literature (e.g. "Example 1.1")
    reference: ClassVar[str] = ""
    #: the sharpness proxy memory is judged against, for an optimizer without a family reading
    #: (memless.studies.meanings): "l2" (||grad L||^2) for GD-type methods, "l1" (||grad L||_{1,eps},
    #: with the optimizer's ``eps``) for sign-like ones
    sharpness: ClassVar[str] = "l2"
    #: the implicitly modified loss in words, where there is one (read the same way)
    modified_loss: ClassVar[str] = ""
    #: how theta is cut into named arrays (set by :meth:`bind`; None: one flat vector)
    layout: Optional[Layout] = None

    def __init_subclass__(cls, **kwargs):
        """Every optimizer class gets a real signature and a documented list of its hyperparameters
        (``inspect.signature(Adam)`` is ``(*, beta1=0.9, ...)``; ``help(Adam)`` lists them), and a
        composition that would drop an add-on is refused here, when the class is made."""
        super().__init_subclass__(**kwargs)
        own = [name for name in MOVED_READINGS_06 if name in cls.__dict__]
        if own:
            warn_user(f"{cls.__name__} defines {', '.join(own)}: memless 0.7 still reads them (until 0.8), but what "
                      "an optimizer's memory means is now declared beside the analysis: memless.extend."
                      "declare_meaning(cls, dataclasses.replace(memless.extend.GENERIC, structure=..., ...))")
        declared = cls.hyperparameters
        if not (isinstance(declared, tuple) and all(isinstance(hp, Hyperparameter) for hp in declared)):
            return                 # the registry and the constructor say what is wrong, in one line
        _check_composition(cls)
        if cls.__init__ is MemoryOptimizer.__init__:        # a class with its own __init__ keeps its signature
            cls.__signature__ = inspect.Signature([  # type: ignore[attr-defined]  # for inspect and help()
                inspect.Parameter(hp.name, inspect.Parameter.KEYWORD_ONLY, default=hp.default)
                for hp in cls.hyperparameters])
        if "hyperparameters" in cls.__dict__ and cls.hyperparameters:
            listed = "\n".join(f"    {hp.name} = {hp.default!r}: {hp.doc + '; ' if hp.doc else ''}{hp.allowed}"
                               for hp in cls.hyperparameters)
            cls.__doc__ = f"{(cls.__doc__ or '').rstrip()}\n\nHyperparameters (keyword arguments):\n{listed}\n"

    def __init__(self, **values: Any):
        cls = type(self)
        known = {hp.name: hp for hp in cls.hyperparameters}
        unknown = sorted(set(values) - set(known))
        if unknown:
            allowed = ", ".join(known) or "none"
            raise HyperparameterError(
                f"{self.label}: unknown hyperparameter {shown(unknown[0], 60)}; allowed: {allowed}")
        for hp in cls.hyperparameters:
            value = values.get(hp.name, hp.default)
            setattr(self, hp.name, hp.validate(value, owner=self.label))
        self.validate()

    def __getattr__(self, name: str):
        """The 0.6 report methods (``opt.structure(g)``, ``opt.sharpness_formula``, ...), read now in
        :mod:`memless.studies.meanings`: still answered, with a DeprecationWarning, until 0.8."""
        reading = READINGS.get(name)
        if reading is None or name.startswith("__"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        warn_user(f"{type(self).__name__}.{name} moved in memless 0.7: use "
                  f"memless.studies.meanings.{reading[0]}(optimizer, ...); the attribute goes in 0.8")
        return reading[1](self)

    @property
    def label(self) -> str:
        """The name reports print: the registered name, else the class name."""
        return getattr(self, "name", None) or type(self).__name__

    def validate(self) -> None:  # noqa: B027  (an optional hook, not an abstract method)
        """Hook for cross-parameter validation; raise HyperparameterError."""

    # -- parameters with structure ---------------------------------------------

    @property
    def needs_matrices(self) -> bool:
        """True for an optimizer that acts per matrix (it needs a loss over named 2-D arrays)."""
        return False

    def check_layout(self, layout: Optional[Layout]) -> None:
        """Hook: raise HyperparameterError if the optimizer cannot act on parameters with this layout."""
        if self.needs_matrices and (layout is None or not layout.matrices):
            raise HyperparameterError(
                f"{self.label} acts on matrices: give a loss over named 2-D arrays (theta as a dict of "
                "arrays, or memless.structured(loss, params)) or a matrix reference loss such as "
                "'factorization'; got one flat vector")

    def bind(self, layout: Optional[Layout]) -> "MemoryOptimizer":
        """The optimizer as it acts on parameters with this :class:`~memless.parameters.Layout`
        (None: one flat vector).  Every analysis binds the optimizer to its loss's layout once;
        optimizers that act per matrix read ``self.layout``."""
        self.check_layout(layout)
        if layout == self.layout:
            return self
        bound = copy.copy(self)
        bound.layout = layout
        return bound

    def tamed(self) -> "MemoryOptimizer":
        """A copy with every hyperparameter that declares a ``tame`` value set to it (decays 0.5,
        smoothing constants large): where the first-order theory holds within a short horizon.
        The conformance kit and the report's evidence use it."""
        values = dict(self.hyper)
        for hp in type(self).hyperparameters:
            if hp.tame is not None:
                values[hp.name] = hp.tame
        tamed = type(self)(**values)
        if getattr(tamed, "name", None) is None and getattr(self, "name", None) is not None:
            tamed.name = self.name
        if self.layout is not None:
            tamed.layout = self.layout
        return tamed

    @property
    def hyper(self) -> Dict[str, Any]:
        """The hyperparameters in force, as an ordered dict."""
        return {hp.name: getattr(self, hp.name) for hp in type(self).hyperparameters}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyper.items())
        return f"{type(self).__name__}({args})"

    def _state(self):
        """Everything that defines the instance: its type, class-level settings and attributes."""
        own = {k: v for k, v in vars(self).items()}
        settings = {k: getattr(self, k) for k in ("window",) if k not in own}
        return type(self), _freeze({**settings, **own})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MemoryOptimizer) and self._state() == other._state()

    def __hash__(self) -> int:
        return hash((type(self), tuple(self.hyper.items())))

    # -- the one hook ------------------------------------------------------

    @abc.abstractmethod
    def direction(self, history: Sequence[Any], gradient: Callable) -> Any:
        """F^(n): the update direction given the history, newest first.

        ``history[k]`` is theta^(n-k), so ``history[0]`` is the current iterate
        and ``n = len(history) - 1``; ``gradient(theta)`` is the loss gradient.
        Write it with ``autograd.numpy`` (or plain arithmetic) so the engine can
        differentiate it with respect to the history.
        """

    # -- defaults every analysis uses; MomentumOptimizer overrides them ------

    def memoryless_direction(self, theta, gradient: Callable, n: int):
        """F^(n)(theta) := F^(n)(theta, ..., theta), the direction at a constant history (Eq. 4).

        The n + 1 history entries are one array, so its gradient is computed once."""
        known: List[Any] = []

        def gradient_once(x):
            if x is not theta:
                return gradient(x)
            if not known:
                known.append(gradient(theta))
            return known[0]

        return self.direction(self.constant_history(theta, n), gradient_once)

    def constant_history(self, theta, n: int) -> list:
        """The history (theta, ..., theta) of n + 1 entries, as ``direction`` sees it at a constant
        history; entries beyond a declared ``window`` refuse to be read (:class:`OutsideWindow`)."""
        if self.window is None or n + 1 <= self.window:
            return [theta] * (n + 1)
        window = max(int(self.window), 0)
        return [theta] * window + [OutsideWindow(self.label, k, window) for k in range(window, n + 1)]

    def limit_steps(self) -> int:
        """The n at which F^(n) stands for its n -> infinity limit."""
        return LIMIT_STEPS if self.window is None else max(int(self.window) - 1, 0)

    def limit_direction(self, theta, gradient: Callable):
        """F(theta) = lim F^(n)(theta, ..., theta)."""
        return self.memoryless_direction(theta, gradient, self.limit_steps())

    def limit_correction(self, theta, gradient: Callable, lr: float, tol: float, max_history: int):
        """The limit M(theta) by the optimizer's own means, as ``(M, n, settled, tail)`` (tail: the
        relative change of M over the last doubling of n), or None (the
        default): the engine then takes M^(n) for growing n.  A black box, whose every history
        JVP replays its whole history, computes it in one derivative along the stationary
        history direction (see :mod:`memless.frameworks.blackbox`)."""
        return None

    def initial_state(self, theta) -> Any:
        """The streaming state before the first step."""
        return History()

    def advance(self, state: Any, theta, gradient: Callable, n: int) -> Tuple[Any, Any]:
        """One step at iterate theta^(n), whose gradient function is ``gradient``: (F^(n), new state).

        The default keeps the whole history and applies :meth:`direction` to it.
        """
        state.append(theta, gradient)
        return self.direction(state.newest_first(), state.gradient()), state

    def terms(self) -> List[Term]:
        """The terms the correction splits into (:func:`memless.correction_terms`): one by default."""
        return [Term("memory")]

    def memory_length(self) -> float:
        """How many steps the memory spans: ``window`` (or 10 if undeclared) for a generic optimizer."""
        return float(self.window or 10)

    def declared_decay(self) -> Optional[str]:
        """Why memory decays (Assumption 3.1), where the optimizer's form says so, else None: then
        :func:`memless.engine.memory_profile` measures it."""
        if self.window is not None:
            return f"declared: F^(n) reads the last {self.window} iterates only"
        return None

    def measured_decay(self, theta, gradient: Callable) -> Optional[Tuple[bool, str]]:
        """(decays, reason) measured by the optimizer's own means where nothing is declared, or None
        (the default): the engine then compares sum_k k^2 gamma_k at n = 128 and 256.  A black box,
        whose memory may be thousands of steps long, measures it along the stationary history
        direction until it settles (see :mod:`memless.frameworks.blackbox`)."""
        return None


#: the 0.6 report methods that moved to memless.studies.meanings (which registers READINGS)
MOVED_READINGS_06 = ("sharpness_proxy", "sharpness_formula", "structure", "implicit_loss", "implicit_loss_at",
                     "reference_losses", "evidence_loss")
#: name -> (the meanings function, function(optimizer) -> the 0.6 attribute's value); filled by meanings
READINGS: Dict[str, Tuple[str, Callable]] = {}


def _freeze(value):
    """A hashable, comparable stand-in for attribute values (arrays by content)."""
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, np.ndarray):
        return ("array", value.shape, value.tobytes())
    return value


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
      (e.g. ``lambda theta, grad: grad ** 2``); usually of theta's shape, but any fixed
      shape works (Shampoo's accumulators read G G^T): Phi is what maps the memories to theta;
    * ``scale``: b_l^(t) as a function of the number of summed terms t = n + 1,
      vectorized over arrays of t and accepting ``t = inf`` for the limit b_l
      (see :func:`ema_bias_correction`), or a constant;
    * ``formula``: optional closed form of this channel's limit correction M_l, for reports;
    * ``closed_form(h, theta, g, HF)``: the same closed form as a function of the
      learning rate, theta, the gradient and the Hessian times the limit direction F
      (the conformance tests hold ``formula``'s function to the engine's output).  Where
      every memory channel has one, the engine computes M from these functions instead
      of a forward-mode pass through the signals and Phi (at the limit, and at a finite n
      for channels of constant weight), once they have matched that pass on a probe loss;
      a closed form that does not match is not used.
    """

    name: str
    decay: float
    signal: Callable = field(repr=False)
    scale: Scale = 1.0
    formula: str = ""
    closed_form: Optional[Callable] = field(default=None, repr=False, compare=False)

    def b(self, t) -> np.ndarray:
        """b_l^(t), vectorized over t; t = inf gives the limit b_l."""
        t = np.asarray(t, dtype=float)
        if callable(self.scale):
            value = np.asarray(self.scale(t), dtype=float)
            return value if value.shape == t.shape else np.broadcast_to(value, t.shape)
        return np.full(t.shape, float(self.scale))

    def weight(self, n) -> np.ndarray:
        """a_l(n) = b_l^(n+1) sum_{k=0..n} beta_l^k: m_l^(n+1) = a_l(n) g_l at a constant history."""
        n = np.asarray(n, dtype=float)
        beta = self.decay
        total = n + 1.0 if beta == 1.0 else (1.0 - beta ** (n + 1.0)) / (1.0 - beta)
        return self.b(n + 1.0) * total

    @property
    def constant_weight(self) -> bool:
        """True when a_l(n) is the same at every n, so this channel leaves no finite-n residual:
        a bias-corrected EMA (b^(t) sum_{k<t} beta^k = 1 exactly) or a channel without memory
        whose b is a constant."""
        if getattr(self.scale, "normalizes", False):
            return True
        return self.decay == 0 and not callable(self.scale)

    @property
    def coefficient(self) -> float:
        """b_l beta_l/(1 - beta_l)^2: the channel's weight in the limit correction M_l."""
        if self.decay == 0:
            return 0.0
        return float(self.b(math.inf)) * memory_sum(self.decay)


def history_weights(beta: float, n: int, s):
    """omega(n, s) = sum_{k=n-s..n} beta^k: the weight of F^(s) in w = sum_k beta^k v_k, vectorized over s
    (how a step s < n enters the history sums of the corrections at step n)."""
    return (np.power(beta, n - s) - beta ** (n + 1)) / (1.0 - beta)


def memory_sum(beta: float, n: Optional[int] = None) -> float:
    """c(n) = sum_{k=1..n} k beta^k (c(inf) = beta/(1-beta)^2): how far back, on average, memory reaches.

    Summed directly while beta^n is not small (the closed form cancels there).

    >>> memory_sum(0.5), memory_sum(0.5, 2)
    (2.0, 1.0)
    """
    if n is None or math.isinf(n):
        return beta / (1.0 - beta) ** 2
    if n * (1.0 - beta) < 50.0:
        k = np.arange(1, n + 1, dtype=float)
        return float(np.sum(k * np.power(beta, k)))
    return (beta * (1.0 - beta ** n) / (1.0 - beta) - n * beta ** (n + 1)) / (1.0 - beta)


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


def ema_bias_correction(beta: float) -> Callable:
    """b^(t) = (1 - beta) / (1 - beta^t): Adam's bias-corrected exponential moving average."""

    def scale(t):
        return (1.0 - beta) / (1.0 - np.power(beta, t))

    scale.normalizes = True  # type: ignore[attr-defined]  # b^(t) sum_{k<t} beta^k = 1 (Channel.constant_weight)
    return scale


def ema(beta: float) -> float:
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
    #: True when F^(n)(theta) = F(theta) for every n: Phi is scale-invariant and every channel with
    #: memory reads the same signal as the others (Muon, exact-sign Lion); the engine then skips the
    #: finite-n residual sums (the conformance kit holds the claim to the generic history JVPs)
    stationary: ClassVar[bool] = False

    @abc.abstractmethod
    def channels(self) -> Sequence[Channel]:
        """The memory channels, in a fixed order."""

    @abc.abstractmethod
    def combine(self, m: Dict[str, Any]) -> Any:
        """Phi: the direction F^(n) from the memories ``m[channel name]``."""

    # -- history form (what Eq. 12 differentiates) --------------------------

    def direction(self, history: Sequence[Any], gradient: Callable) -> Any:
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

    def memoryless_direction(self, theta, gradient: Callable, n: int) -> Any:
        g = gradient(theta)
        return self.combine({ch.name: float(ch.weight(n)) * ch.signal(theta, g) for ch in self.channels()})

    # -- streaming form: O(1) per step ---------------------------------------

    def initial_state(self, theta) -> Dict[str, Any]:
        """The running sums before the first step (without b_l)."""
        return {ch.name: 0.0 for ch in self.channels()}

    def advance(self, state: Dict[str, Any], theta, gradient: Callable, n: int) -> Tuple[Any, Dict[str, Any]]:
        grad = gradient(theta)
        new, scaled = {}, {}
        for ch in self.channels():
            new[ch.name] = ch.decay * state[ch.name] + ch.signal(theta, grad)
            scaled[ch.name] = float(ch.b(n + 1)) * new[ch.name]
        return self.combine(scaled), new

    # -- the limit n -> infinity (Section 3.2) --------------------------------

    def limit_direction(self, theta, gradient: Callable) -> Any:
        """F(theta) = Phi(gbar_1, ..., gbar_L), gbar_l = b_l g_l / (1 - beta_l)."""
        g = gradient(theta)
        return self.combine({ch.name: float(ch.weight(math.inf)) * ch.signal(theta, g) for ch in self.channels()})

    # -- what reports need ----------------------------------------------------

    def terms(self) -> List[Term]:
        return [Term(ch.name, ch.decay, ch.coefficient, ch.formula) for ch in self.channels()]

    def declared_decay(self) -> Optional[str]:
        decays = [ch.decay for ch in self.channels() if ch.decay > 0]
        return (f"declared: every channel decays geometrically (beta <= {max(decays):g})" if decays
                else "declared: no channel has memory")

    def memory_length(self) -> float:
        """1/(1 - beta) of the slowest-decaying channel (1 without memory)."""
        decays = [ch.decay for ch in self.channels() if ch.decay > 0]
        return 1.0 / (1.0 - max(decays)) if decays else 1.0


# ----------------------------------------------------------------------------
# Decoupled weight decay, written once
# ----------------------------------------------------------------------------

WEIGHT_DECAY = "weight-decay"


class DecoupledWeightDecay(MomentumOptimizer):
    """Decoupled weight decay (Loshchilov & Hutter 2019) for any momentum optimizer:
    ``F = Phi(m) + lambda theta``, as a memory-less channel ``"weight-decay"``.

    Put it first among the bases, before the optimizer it decays, and declare
    ``weight_decay(default)`` among the hyperparameters::

        >>> import memless
        >>> from memless.optimizers import Adam
        >>> class MyAdamW(memless.DecoupledWeightDecay, Adam):
        ...     hyperparameters = Adam.hyperparameters + (memless.weight_decay(0.01),)
        >>> [ch.name for ch in MyAdamW().channels()]
        ['first-moment', 'second-moment', 'weight-decay']
    """

    weight_decay: float = 0.0

    def channels(self) -> List[Channel]:
        channels = list(super().channels())  # type: ignore[safe-super]  # the optimizer after it in the MRO
        if self.weight_decay:
            channels.append(Channel(WEIGHT_DECAY, 0.0, parameter_signal))
        return channels

    def combine(self, m: Dict[str, Any]) -> Any:
        direction = super().combine(m)  # type: ignore[safe-super]  # the optimizer after it in the MRO
        return direction + self.weight_decay * m[WEIGHT_DECAY] if self.weight_decay else direction


#: add-ons that extend the optimizer after them in the bases, by cooperative ``channels``/``combine``
ADD_ONS: Tuple[type, ...] = (DecoupledWeightDecay,)


def require_optimizer(optimizer: Any) -> "MemoryOptimizer":
    """``optimizer`` if it is a :class:`MemoryOptimizer` instance, else a one-line error naming
    what is allowed.  (The conformance kit that checks a whole optimizer class is
    :func:`memless.testing.check_optimizer`.)"""
    if isinstance(optimizer, type) and issubclass(optimizer, MemoryOptimizer):
        raise MemlessError(f"optimizer must be a memless.MemoryOptimizer instance, got the class "
                           f"{optimizer.__name__}: pass {optimizer.__name__}() (or its hyperparameters)")
    if not isinstance(optimizer, MemoryOptimizer):
        raise MemlessError(
            f"optimizer must be a memless.MemoryOptimizer (e.g. memless.get_optimizer('adamw')), "
            f"got {type(optimizer).__name__}")
    return optimizer
