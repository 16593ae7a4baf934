"""What an optimizer's memory means for the loss, one table per optimizer family.

The optimizer contract (:mod:`memless.contract`) says how an optimizer moves; this module
says what its correction M does to the loss (Cattaneo & Shigida 2025, Sections 3.2, 4
and 5.1):

* the sharpness proxy N whose change tells regularizing from anti-regularizing, and N in words;
* the modified loss in words;
* the declared :class:`Structure`: the sign of <grad N, M> where the family's closed form
  decides it, with the regime where that holds;
* the :class:`ImplicitLoss` with F + M = P grad Ltilde, where M is such a field.

A family is a :class:`Meaning` (a table of functions of the optimizer), found along the
optimizer's class hierarchy: heavy-ball's, Adam's (every adaptive method), Lion-K's, Muon's.
Any other optimizer -- a plugin, a black box, your own class -- reads :data:`GENERIC`: N from
its declared ``sharpness`` ("l2" or "l1"), its declared ``modified_loss`` text, no structure
(the report's verdict is then the measurement) and no implicit loss.  A plugin with a closed
form of its own declares it with :func:`declare` (``memless.extend.declare_meaning``).

>>> import memless
>>> from memless.studies import meanings
>>> meanings.sharpness_formula(memless.get_optimizer("adam"))
'||grad L||_{1,eps}'
>>> meanings.structure(memless.get_optimizer("heavy-ball", beta=0.5), [[1.0]]).effect.value
'regularizing'
"""
from __future__ import annotations

import enum
import inspect
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, List, Optional, Tuple

import autograd.numpy as anp
import numpy as np
from autograd import grad

from ..checks import shown
from ..contract.optimizer import MOVED_READINGS_06, READINGS, MemoryOptimizer, require_optimizer
from ..errors import MemlessError, OptimizerError
from ..numerics.linalg import POLAR_CONDITION, nuclear_norm
from ..optimizers.adam import Adaptive
from ..optimizers.lion import LionK
from ..optimizers.matrices import smallest_singular_values
from ..optimizers.muon import Orthogonalized
from ..optimizers.sgd import GD, HeavyBall, Nesterov

# ----------------------------------------------------------------------------
# The vocabulary: effects, structures, implicit losses
# ----------------------------------------------------------------------------


class Effect(str, enum.Enum):
    """What memory does to the sharpness proxy N: the sign of <grad N, M>."""

    REGULARIZING = "regularizing"
    ANTI_REGULARIZING = "anti-regularizing"
    NONE = "none"
    DEPENDS = "depends on the loss"
    #: the optimizer's memory does not decay (Assumption 3.1 fails): no verdict
    OUTSIDE = "outside the theory"
    #: the correction could not be computed to its tolerance (a limit that did not settle): no verdict
    UNRELIABLE = "no verdict"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Structure:
    """What an optimizer's declared modified loss says its memory does, and where that holds.

    Each correction term has the form ``M_l = c_l P grad N`` with P positive, so the sign of
    <grad N, M_l> is the sign of c_l -- exactly, in the regime the optimizer states.

    * ``effect``: the net effect there (``Effect.DEPENDS`` when components disagree);
    * ``regime``: the condition, as printed ("exact", "every |g_i| > 0.095 sqrt(eps)", ...);
    * ``reason``: why, with the weights;
    * ``modified_loss``: the modified loss in this regime;
    * ``signs``: the sign (+1, -1, 0) of each channel's term.
    """

    effect: Effect
    regime: str
    reason: str
    modified_loss: str = ""
    signs: Dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ImplicitLoss:
    """F + M = P(theta) grad Ltilde(theta): the loss the memoryless iteration descends (Section 5.1).

    * ``loss``: Ltilde(theta), written with autograd.numpy;
    * ``preconditioner``: P(theta, grad) -> a scalar or a vector (diagonal P);
    * ``formula``: Ltilde in words, for reports;
    * ``regime``: where the identity holds exactly ("exact", or e.g. "eps -> 0": the
      difference is then O(h eps) and :func:`memless.implicit_loss` measures it);
    * ``decay``: lambda for a decoupled weight decay kept apart from the gradient
      field: then F + M = P grad Ltilde + lambda theta (Section 4 of the 2025 paper).
    """

    loss: Callable = field(repr=False)
    preconditioner: Callable = field(repr=False)
    formula: str
    regime: str = "exact"
    decay: float = 0.0


# ----------------------------------------------------------------------------
# A family's table, and where an optimizer finds its own
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Meaning:
    """One optimizer family's reading of its correction: each entry a function of the optimizer.

    * ``proxy(opt, gradient, loss)`` -> N, a function of theta (autograd-differentiable);
    * ``formula(opt)`` -> N in words;
    * ``modified_loss(opt)`` -> the modified loss in words ("" where there is none);
    * ``structure(opt, gradients)`` -> a :class:`Structure`, or None (then the measurement
      decides); ``gradients``: the loss gradients met along a path, one row per point;
    * ``implicit_loss(opt, loss, lr)`` -> an :class:`ImplicitLoss`, or None;
    * ``implicit_loss_at(opt, loss, lr, gradient)`` -> the implicit loss in the regime that holds
      where the loss gradient is ``gradient`` (adaptive methods have one per regime).
    """

    proxy: Callable[..., Callable]
    formula: Callable[[Any], str]
    modified_loss: Callable[[Any], str]
    structure: Callable[[Any, Any], Optional[Structure]]
    implicit_loss: Callable[[Any, Callable, float], Optional[ImplicitLoss]]
    implicit_loss_at: Optional[Callable[[Any, Callable, float, Any], Optional[ImplicitLoss]]] = None


#: the families, by the class their optimizers derive from (looked up along the MRO)
MEANINGS: Dict[type, Meaning] = {}


def declare(cls: type, meaning: Meaning) -> None:
    """Declare what the memory of ``cls`` (and its subclasses) means for the loss."""
    if not (isinstance(cls, type) and issubclass(cls, MemoryOptimizer)):
        raise TypeError(f"declare_meaning: {cls!r} is not a MemoryOptimizer class")
    if not isinstance(meaning, Meaning):
        raise TypeError(f"declare_meaning: {shown(meaning)} is not a memless Meaning (start from "
                        "dataclasses.replace(memless.extend.GENERIC, structure=..., ...))")
    for name, arguments in ARGUMENTS.items():
        entry = getattr(meaning, name)
        if entry is None and name == "implicit_loss_at":
            continue
        if not callable(entry):
            raise TypeError(f"declare_meaning: Meaning.{name} must be a function of ({', '.join(arguments)}), "
                            f"got {shown(entry)}")
        try:
            inspect.signature(entry).bind(*arguments)
        except TypeError:
            raise TypeError(f"declare_meaning: Meaning.{name} must take ({', '.join(arguments)}), "
                            f"got a function of {inspect.signature(entry)}") from None
        except ValueError:             # a builtin without a signature: called as it is
            pass
    MEANINGS[cls] = meaning


#: the arguments each entry of a Meaning is called with
ARGUMENTS = {"proxy": ("opt", "gradient", "loss"), "formula": ("opt",), "modified_loss": ("opt",),
             "structure": ("opt", "gradients"), "implicit_loss": ("opt", "loss", "lr"),
             "implicit_loss_at": ("opt", "loss", "lr", "gradient")}


#: the methods 0.6 optimizers defined for reports, read from a class that still defines them
LEGACY = tuple(name for name in MOVED_READINGS_06 if name not in ("reference_losses", "evidence_loss"))


def meaning_of(optimizer: Any) -> Meaning:
    """The :class:`Meaning` of ``optimizer``'s family: the first declared along its class's MRO,
    :data:`GENERIC` if none is."""
    legacy: List[str] = []
    for cls in type(optimizer).__mro__:
        if cls in MEANINGS:
            return _legacy(type(optimizer), legacy, MEANINGS[cls]) if legacy else MEANINGS[cls]
        legacy += [name for name in LEGACY if name in vars(cls) and name not in legacy]
    return _legacy(type(optimizer), legacy, GENERIC) if legacy else GENERIC


def _legacy(cls: type, own, base: Meaning) -> Meaning:
    """A 0.6 class that defines the report methods itself: they override its family's meaning (the
    DeprecationWarning is given where the class is made, by MemoryOptimizer.__init_subclass__)."""

    def method(name):
        return lambda opt, *args: getattr(opt, name)(*args)

    changes: Dict[str, Any] = {}
    if "sharpness_proxy" in own:
        changes["proxy"] = method("sharpness_proxy")
    if "sharpness_formula" in own:
        changes["formula"] = lambda opt: opt.sharpness_formula
    for name in ("structure", "implicit_loss", "implicit_loss_at"):
        if name in own:
            changes[name] = method(name)
    return replace(base, **changes)


# ----------------------------------------------------------------------------
# What callers ask
# ----------------------------------------------------------------------------


def sharpness_proxy(optimizer: Any, gradient: Callable, loss: Optional[Callable] = None) -> Callable:
    """N(theta), the quantity whose change tells regularizing from anti-regularizing."""
    return meaning_of(require_optimizer(optimizer)).proxy(optimizer, gradient, loss)


def sharpness_formula(optimizer: Any) -> str:
    """N in words."""
    return str(meaning_of(require_optimizer(optimizer)).formula(optimizer))


def modified_loss(optimizer: Any) -> str:
    """The modified loss in words ("" where the optimizer declares none)."""
    return str(meaning_of(require_optimizer(optimizer)).modified_loss(optimizer))


def structure(optimizer: Any, gradients) -> Optional[Structure]:
    """What the declared modified loss says memory does, given the loss gradients met along a
    path (one row per point), or None where nothing is declared: then the measurement decides."""
    require_optimizer(optimizer)
    rows = np.asarray(gradients, dtype=float)
    if rows.size == 0:
        raise MemlessError("structure needs the loss gradients met along a path (one row per point), "
                           "got none")
    said = meaning_of(optimizer).structure(optimizer, gradients)
    if said is not None and not isinstance(said, Structure):
        raise OptimizerError(f"{optimizer.label}: its declared structure returned {shown(said)}, not a "
                             "memless Structure or None")
    return said


def implicit_loss(optimizer: Any, loss: Callable, lr: float, gradient=None) -> Optional[ImplicitLoss]:
    """The :class:`ImplicitLoss` with F + M = P grad Ltilde, or None if M is not such a field;
    with ``gradient``, the one of the regime that holds where the loss gradient is ``gradient``.
    :func:`memless.implicit_loss` checks the claim numerically."""
    meaning = meaning_of(require_optimizer(optimizer))
    if gradient is not None and meaning.implicit_loss_at is not None:
        said = meaning.implicit_loss_at(optimizer, loss, lr, gradient)
    else:
        said = meaning.implicit_loss(optimizer, loss, lr)
    if said is not None and not isinstance(said, ImplicitLoss):
        raise OptimizerError(f"{optimizer.label}: its declared implicit loss returned {shown(said)}, not a "
                             "memless ImplicitLoss or None")
    return said


def declares_implicit_loss(optimizer: Any) -> bool:
    """Whether the optimizer's family declares an implicit loss at all."""
    return meaning_of(require_optimizer(optimizer)).implicit_loss is not _no_implicit_loss


#: reference losses an analysis measures on, the default one first
VECTOR_LOSSES: Tuple[str, ...] = ("bilinear", "rosenbrock", "curvy", "logistic")
#: for optimizers that act on matrices
MATRIX_LOSSES: Tuple[str, ...] = ("factorization", "network")


def reference_losses(optimizer: Any) -> Tuple[str, ...]:
    """The reference losses an analysis measures on, the default one first."""
    own = _own_06(require_optimizer(optimizer), "reference_losses")
    if own is not None:
        return tuple(own)
    return MATRIX_LOSSES if optimizer.needs_matrices else VECTOR_LOSSES


def evidence_loss(optimizer: Any) -> str:
    """The reference loss of the tamed evidence (``optimizer.tamed()``)."""
    own = _own_06(require_optimizer(optimizer), "evidence_loss")
    if own is not None:
        return str(own)
    return MATRIX_LOSSES[0] if optimizer.needs_matrices else "curvy"


def _own_06(optimizer: Any, name: str):
    """A 0.6 class's own ``reference_losses`` / ``evidence_loss`` property, read until 0.8."""
    for cls in type(optimizer).__mro__:
        if name in vars(cls):
            value = vars(cls)[name]
            return value.__get__(optimizer) if hasattr(value, "__get__") else value
    return None


# ----------------------------------------------------------------------------
# Generic: what an optimizer declares, no closed form
# ----------------------------------------------------------------------------


def _proxy_of_kind(kind: str, eps: float, gradient: Callable) -> Callable:
    """||grad L||_{1,eps} for "l1", ||grad L||^2 otherwise."""
    if kind == "l1":
        return lambda t: anp.sum(anp.sqrt(gradient(t) ** 2 + eps))
    return lambda t: anp.sum(gradient(t) ** 2)


def _formula_of_kind(kind: str) -> str:
    return "||grad L||_{1,eps}" if kind == "l1" else "||grad L||^2"


def _no_implicit_loss(opt, loss, lr):
    return None


GENERIC = Meaning(
    proxy=lambda opt, gradient, loss=None: _proxy_of_kind(opt.sharpness, float(getattr(opt, "eps", 1e-8)), gradient),
    formula=lambda opt: _formula_of_kind(opt.sharpness),
    modified_loss=lambda opt: opt.modified_loss,
    structure=lambda opt, gradients: None,
    implicit_loss=_no_implicit_loss,
)


# ----------------------------------------------------------------------------
# Gradient descent and momentum: a gradient penalty
# ----------------------------------------------------------------------------


def gradient_penalty(loss, weight: float, step: float, formula: str) -> ImplicitLoss:
    """Ltilde = L + weight/2 ||grad L||^2 with the scalar preconditioner ``step``."""
    gradient = grad(loss)

    def modified(theta):
        return loss(theta) + 0.5 * weight * anp.sum(gradient(theta) ** 2)

    return ImplicitLoss(modified, lambda theta, g: step, formula)


def gradient_penalty_structure(c: float, c_text: str, modified_loss: str, channel: str = "momentum") -> Structure:
    """M = h c H grad L: <grad ||grad L||^2, M> = 2 h c |H grad L|^2, of the sign of c on every loss."""
    if c == 0:
        return Structure(Effect.NONE, "exact", f"{c_text} = 0: no memory", "L", {channel: 0})
    effect = Effect.REGULARIZING if c > 0 else Effect.ANTI_REGULARIZING
    return Structure(effect, "exact, on every loss",
                     f"M = h c H grad L with c = {c_text} = {c:.4g}, so <grad N, M> = 2 h c |H grad L|^2 "
                     f"{'>=' if c > 0 else '<='} 0", modified_loss, {channel: 1 if c > 0 else -1})


GRADIENT_DESCENT = replace(
    GENERIC,
    modified_loss=lambda opt: "L",
    structure=lambda opt, gradients: Structure(Effect.NONE, "exact", "no memory: M = 0", "L"),
    implicit_loss=lambda opt, loss, lr: ImplicitLoss(loss, lambda theta, grad: 1.0, "L"),
)

_HEAVY_BALL_LOSS = "L + h beta/(2(1-beta)^2) ||grad L||^2, descended with step h/(1-beta)"
HEAVY_BALL = replace(
    GENERIC,
    modified_loss=lambda opt: _HEAVY_BALL_LOSS,
    structure=lambda opt, gradients: gradient_penalty_structure(opt.beta / (1.0 - opt.beta) ** 3, "beta/(1-beta)^3",
                                                                _HEAVY_BALL_LOSS),
    implicit_loss=lambda opt, loss, lr: gradient_penalty(loss, lr * opt.beta / (1.0 - opt.beta) ** 2,
                                                         1.0 / (1.0 - opt.beta), _HEAVY_BALL_LOSS),
)

_NESTEROV_LOSS = "L + h beta^2/(2(1-beta)^2) ||grad L||^2, descended with step h/(1-beta)"
NESTEROV = replace(
    GENERIC,
    modified_loss=lambda opt: _NESTEROV_LOSS,
    structure=lambda opt, gradients: gradient_penalty_structure(opt.beta ** 2 / (1.0 - opt.beta) ** 3,
                                                                "beta^2/(1-beta)^3", _NESTEROV_LOSS),
    implicit_loss=lambda opt, loss, lr: gradient_penalty(loss, lr * opt.beta ** 2 / (1.0 - opt.beta) ** 2,
                                                         1.0 / (1.0 - opt.beta), _NESTEROV_LOSS),
)


# ----------------------------------------------------------------------------
# Adaptive methods (Adam, AdamW, NAdam, RMSProp): ||grad L||_{1,eps}, per regime
# ----------------------------------------------------------------------------


def _l1_formula(opt) -> str:
    return f"{opt.first_text} - {opt.second_text}" if opt.first_text else f"-{opt.second_text}"


def _scale_text(opt) -> str:
    return "sqrt(eps)" if opt.eps_inside else "eps"


def adaptive_regime(opt, gradients) -> str:
    """"large" (every |g_i| >= 10 sqrt(eps); eps outside the root: 10 eps), "small" (every
    |g_i| <= sqrt(eps)/10, eps inside the root), or "between"."""
    g = np.abs(np.asarray(gradients, dtype=float))
    scale = np.sqrt(opt.eps) if opt.eps_inside else opt.eps
    if g.size and np.min(g) >= 10 * scale:
        return "large"
    if g.size and opt.eps_inside and np.max(g) <= scale / 10:
        return "small"
    return "between"


def _decay_text(opt) -> str:
    return " + lambda (grad L . theta - L)" if opt.weight_decay else ""


def _large_loss_text(opt) -> str:
    decay = f"[||grad L||_1{_decay_text(opt)}]" if opt.weight_decay else "||grad L||_1"
    step = ", plus the decay step lambda theta" if opt.weight_decay else ""
    return f"L + h ({_l1_formula(opt)}) {decay}, preconditioner P = {opt.preconditioner_text}{step}"


def _small_loss_text(opt) -> str:
    step = ", plus the decay step lambda theta" if opt.weight_decay else ""
    return (f"L + h {opt.first_text or '0'} [||grad L||^2/(2 sqrt(eps)){_decay_text(opt)}], "
            f"preconditioner P = eps^(-1/2){step}")


def _adaptive_modified_loss(opt) -> str:
    return f"as eps -> 0 (every |g_i| >> {_scale_text(opt)}): {_large_loss_text(opt)}"


def _adaptive_proxy(opt, gradient, loss=None):
    """N = ||grad L||_{1,eps}, plus lambda (grad L . theta - L) with decay: the quantity the
    eps -> 0 modified loss penalizes."""
    eps, decay = opt.eps, opt.weight_decay
    if not decay:
        return lambda t: anp.sum(anp.sqrt(gradient(t) ** 2 + eps))
    return lambda t: (anp.sum(anp.sqrt(gradient(t) ** 2 + eps))
                      + decay * (anp.dot(gradient(t), t) - loss(t)))


def _adaptive_formula(opt) -> str:
    decay = " + lambda (grad L . theta - L)" if opt.weight_decay else ""
    return "||grad L||_{1,eps}" + decay


def _penalty_loss(loss, weight, decay, eps, preconditioner, formula, regime, l1):
    """Ltilde = L + weight [penalty + decay (grad L . theta - L)] with P = preconditioner(g),
    penalty = ||grad L||_{1,eps} (l1) or ||grad L||^2/(2 sqrt(eps))."""
    gradient = grad(loss)

    def modified(theta):
        g = gradient(theta)
        penalty = anp.sum(anp.sqrt(g ** 2 + eps)) if l1 else anp.sum(g ** 2) / (2.0 * anp.sqrt(eps))
        if decay:
            penalty = penalty + decay * (anp.dot(g, theta) - loss(theta))
        return loss(theta) + weight * penalty

    return ImplicitLoss(modified, lambda theta, g: preconditioner(g), formula, regime, decay)


def _adaptive_implicit_loss(opt, loss, lr):
    """The eps -> 0 form (Section 4): F + M = P grad Ltilde + lambda theta,
    Ltilde = L + h (c1 - c2) [||grad L||_{1,eps} + lambda (grad L . theta - L)]."""
    c1, c2 = opt.weights()
    return _penalty_loss(loss, lr * (c1 - c2), opt.weight_decay, opt.eps, opt.preconditioner_at,
                         _adaptive_modified_loss(opt), f"eps -> 0 (every |g_i| >> {_scale_text(opt)})", l1=True)


def _adaptive_implicit_loss_at(opt, loss, lr, gradient):
    """Where every |g_i| << sqrt(eps) (eps inside the root): F + M = eps^(-1/2) grad Ltilde + lambda theta,
    Ltilde = L + h c1 [||grad L||^2/(2 sqrt(eps)) + lambda (grad L . theta - L)]."""
    if adaptive_regime(opt, gradient) != "small":
        return _adaptive_implicit_loss(opt, loss, lr)
    c1, _ = opt.weights()
    eps = opt.eps
    return _penalty_loss(loss, lr * c1, opt.weight_decay, eps, lambda g: 1.0 / np.sqrt(eps),
                         "every |g_i| << sqrt(eps): " + _small_loss_text(opt), "every |g_i| << sqrt(eps)", l1=False)


def _adaptive_structure(opt, gradients):
    c1, c2 = opt.weights()
    g = np.abs(np.asarray(gradients, dtype=float))
    regime = adaptive_regime(opt, g)
    modified = {"large": _large_loss_text(opt), "small": _small_loss_text(opt),
                "between": "between the regimes |g_i| >> sqrt(eps) and |g_i| << sqrt(eps): neither closed form "
                           "applies"}[regime]
    signs = {"first-moment": 1 if c1 > 0 else 0, "second-moment": -1 if c2 > 0 else 0}
    weights = (f"c1 = {opt.first_text} = {c1:.4g}" if opt.first_text else "c1 = 0") + \
        f", c2 = {opt.second_text} = {c2:.4g}"
    if opt.weight_decay or not opt.eps_inside:
        return _adaptive_structure_eps_to_zero(opt, g, regime, c1, c2, weights, modified, signs)
    scale = np.sqrt(opt.eps)
    if c1 == 0 and c2 == 0:
        return Structure(Effect.NONE, "exact", "no memory", "L", signs)
    reason = f"each component of <grad N, M> carries the weight (c1 - c2) g_i^2 + c1 eps times a positive " \
             f"factor, {weights}"
    if c1 >= c2:
        return Structure(Effect.REGULARIZING, "exact, on every loss", reason + ": positive for every g",
                         modified, signs)
    tau = float(np.sqrt(c1 * opt.eps / (c2 - c1)))
    where = f"tau = sqrt(c1 eps/(c2 - c1)) = {tau:.3g} = {tau / scale:.3g} sqrt(eps)" if c1 else "0"
    if np.min(g) > tau:
        return Structure(Effect.ANTI_REGULARIZING,
                         f"exact where every |g_i| > {where}; here min |g_i| = {np.min(g):.3g} along the path",
                         reason, modified, signs)
    if np.max(g) < tau:
        return Structure(Effect.REGULARIZING,
                         f"exact where every |g_i| < {where}; here max |g_i| = {np.max(g):.3g} along the path",
                         reason, modified, signs)
    return Structure(Effect.DEPENDS, f"components with |g_i| > {where} anti-regularize, the others "
                                     "regularize: the measured sum decides on this path", reason, modified, signs)


def _adaptive_structure_eps_to_zero(opt, g, regime, c1, c2, weights, modified, signs):
    """With decay or eps outside the root: exact statements only in the two limiting regimes."""
    if regime == "small" and c1 > 0:
        scale = np.sqrt(opt.eps)
        return Structure(Effect.REGULARIZING, f"every |g_i| << sqrt(eps) (here max |g_i|/sqrt(eps) = "
                                              f"{np.max(g) / scale:.3g})",
                         f"M = h c1 eps^(-1/2) H F (1 + O(g^2/eps)) with {weights}: the second moment's term is "
                         "smaller by g^2/eps, and <grad N, M> = h c1 eps^(-1/2) |H F|^2 (1 + O(g^2/eps)) >= 0",
                         modified, {"first-moment": 1, "second-moment": -1 if c2 > 0 else 0})
    if regime != "large" or c1 == c2:
        return None          # no exact statement there: the measurement decides
    scale = np.sqrt(opt.eps) if opt.eps_inside else opt.eps
    effect = Effect.REGULARIZING if c1 > c2 else Effect.ANTI_REGULARIZING
    return Structure(effect, f"as eps -> 0: every |g_i| >> {_scale_text(opt)} (here min |g_i|/"
                             f"{_scale_text(opt)} = {np.min(g) / scale:.3g})",
                     f"M = h (c1 - c2) P grad N + O(eps) with {weights}", modified, signs)


ADAPTIVE = Meaning(proxy=_adaptive_proxy, formula=_adaptive_formula, modified_loss=_adaptive_modified_loss,
                   structure=_adaptive_structure, implicit_loss=_adaptive_implicit_loss,
                   implicit_loss_at=_adaptive_implicit_loss_at)


# ----------------------------------------------------------------------------
# Lion-K: N = K(grad L), hess K positive semidefinite
# ----------------------------------------------------------------------------


def _lion_proxy(opt, gradient, loss=None):
    """The proxy K implies: ||grad L||^2 for K = ||x||^2/2, ||grad L||_{1,eps} for the sign-like K,
    K(grad L) itself for logcosh and the nuclear norm."""
    if opt.k in ("logcosh", "nuclear"):
        return lambda t: opt.K(gradient(t))
    return _proxy_of_kind("l2" if opt.k == "l2" else "l1", float(opt.eps), gradient)


def _lion_formula(opt) -> str:
    if opt.k == "logcosh":
        return "sum log cosh(kappa grad L)/kappa"
    if opt.k == "nuclear":
        return "sum_j ||grad_j L||_* (nuclear norms)"
    return _formula_of_kind("l2" if opt.k == "l2" else "l1")


def _lion_modified_loss(opt) -> str:
    if opt.k == "sign":
        return "L exactly: autograd differentiates sign to 0, so M = 0"
    if opt.k == "l2":
        return "L + h rho1/(2(1-rho2)) ||grad L||^2 (lambda = 0; heavy-ball's form when rho1 = rho2)"
    if opt.k == "logcosh":
        return ("L, up to a term h rho1/(1-rho2) kappa sech^2(kappa g_i) (H F)_i: small where every "
                "|g_i| >> 1/kappa")
    if opt.k == "nuclear":
        return _polar_modified_loss("rho1/(1-rho2)")
    return ("L, up to a term of size h rho1/(1-rho2) eps/|g_i|^3 |(H F)_i|: small where every "
            "|g_i| >> sqrt(eps), P = D^(-1/2)")


def _polar_modified_loss(weight: str) -> str:
    """The text for a term h w d polar(G)[H F] (Lion-K nuclear, Muon's idealization): no closed form."""
    return (f"no modified loss in closed form: M = h {weight} d polar(G)[H F] per matrix, of size at most "
            f"h {weight} |H F| / sigma_min(G)")


def _lion_structure(opt, gradients):
    """The sign of <grad N, M> with N = K(grad L), the proxy K implies (lambda = 0; with decay: measured)."""
    weight = opt.rho1 / (1.0 - opt.rho2)
    if opt.rho1 == 0.0:
        return Structure(Effect.NONE, "exact", "rho1 = 0: the step reads the current gradient only",
                         "L", {"momentum": 0})
    if opt.k == "sign":
        return Structure(Effect.NONE, "exact", "grad K = sign has zero derivative, so M = 0", _lion_modified_loss(opt),
                         {"momentum": 0})
    if opt.weight_decay:
        return None
    if opt.k == "l2":
        return gradient_penalty_structure(weight, "rho1/(1-rho2)", _lion_modified_loss(opt))
    g = np.abs(np.asarray(gradients, dtype=float))
    if opt.k == "nuclear":
        sigma = float(np.min(smallest_singular_values(opt.layout, gradients))) if g.size else float("nan")
        hess, size = ("hess K(-G) = d polar(G), positive semidefinite (K is convex)",
                      f"at most h rho1/(1-rho2) |H F|/sigma_min(G): small where the smallest singular "
                      f"value of every gradient matrix is large, void where sigma_min/sigma_max < "
                      f"{POLAR_CONDITION:.0e} (there the derivative does not exist); here min sigma_min(G) = "
                      f"{sigma:.3g} along the path")
    elif opt.k == "logcosh":
        smallest = float(np.min(g)) * opt.kappa if g.size else float("nan")
        hess, size = ("hess K(-g)_i = kappa sech^2(kappa g_i) > 0",
                      ("small" if smallest >= 10 else "not small") +
                      f" here: min |g_i| kappa = {smallest:.3g} along the path (small where every |g_i| >> "
                      "1/kappa)")
    else:
        smallest = float(np.min(g)) / np.sqrt(opt.eps) if g.size else float("nan")
        hess, size = ("hess K(-g)_i = eps/(g_i^2 + eps)^(3/2) > 0",
                      ("small" if smallest >= 10 else "not small") +
                      f" here: min |g_i|/sqrt(eps) = {smallest:.3g} along the path (small where every "
                      "|g_i| >> sqrt(eps))")
    return Structure(
        Effect.REGULARIZING, "exact in sign, on every loss",
        f"M = h rho1/(1-rho2) hess K(-g) H F with {hess}, and grad N = H F for N = K(grad L), "
        f"so <grad N, M> = h {weight:.4g} <H F, hess K(-g) H F> >= 0; its size is {size}",
        _lion_modified_loss(opt), {"momentum": 1})


def _lion_implicit_loss(opt, loss, lr):
    """lambda = 0: l2 -> L + h rho1/(2(1-rho2)) ||grad L||^2; l1-smooth -> L as eps -> 0; sign -> L."""
    if opt.weight_decay or opt.k in ("logcosh", "nuclear"):
        return None
    if opt.k == "l2":
        return gradient_penalty(loss, lr * opt.rho1 / (1.0 - opt.rho2), 1.0, _lion_modified_loss(opt))
    if opt.k == "sign":
        return ImplicitLoss(loss, lambda theta, g: 1.0 / anp.abs(g), _lion_modified_loss(opt))
    return ImplicitLoss(loss, lambda theta, g: 1.0 / anp.sqrt(g ** 2 + opt.eps), _lion_modified_loss(opt),
                        "eps -> 0, |g_i| >> sqrt(eps)")


LION = Meaning(proxy=_lion_proxy, formula=_lion_formula, modified_loss=_lion_modified_loss,
               structure=_lion_structure, implicit_loss=_lion_implicit_loss)


# ----------------------------------------------------------------------------
# Muon: N = sum_j r_j ||G_j||_*, d polar(G) positive semidefinite
# ----------------------------------------------------------------------------


def _muon_proxy(opt, gradient, loss=None):
    def N(t):
        r, layout = opt.adjustments(), opt.matrix_layout()
        parts = layout.unflatten(gradient(t))
        return sum(r[name] * nuclear_norm(parts[name]) for name in layout.matrices)

    return N


def _muon_modified_loss(opt) -> str:
    if opt.orthogonalize == "newton-schulz":
        return ("no closed form: the Newton-Schulz quintic is not the gradient of a convex K, so M comes "
                "from the engine (the polar idealization: M = h w r d polar(G)[H F])")
    return _polar_modified_loss("w r")


def _muon_structure(opt, gradients):
    """Polar, lambda = 0: <grad N, M> = h w sum_j r_j <(H F)_j, d polar(G_j)[(H F)_j]> >= 0 for
    N = sum_j r_j ||G_j||_*.  Newton-Schulz or lambda > 0: measured (None)."""
    if opt.momentum == 0.0:
        return Structure(Effect.NONE, "exact", "momentum = 0: the step reads the current gradient only",
                         "L", {"momentum": 0})
    if opt.orthogonalize != "polar" or opt.weight_decay:
        return None
    g = np.asarray(gradients, dtype=float)
    sigma = float(np.min(smallest_singular_values(opt.layout, g))) if g.size else float("nan")
    return Structure(
        Effect.REGULARIZING, "exact in sign, on every loss",
        f"M = h w r d polar(G)[H F] with d polar(G) = hess ||.||_* positive semidefinite and grad N = H F for "
        f"N = sum_j r_j ||G_j||_*, so <grad N, M> = h {opt.memory_weight:.4g} sum_j r_j <(H F)_j, "
        f"d polar(G_j)[(H F)_j]> >= 0; its size is at most h w r |H F|/sigma_min(G): small where the smallest "
        f"singular value of every gradient matrix is large, void where sigma_min/sigma_max < "
        f"{POLAR_CONDITION:.0e} (there the derivative does not exist); here min sigma_min(G) = {sigma:.3g} along "
        "the path",
        _muon_modified_loss(opt), {"momentum": 1})


MUON = Meaning(proxy=_muon_proxy, formula=lambda opt: "sum_j r_j ||grad_j L||_* (nuclear norms)",
               modified_loss=_muon_modified_loss, structure=_muon_structure, implicit_loss=_no_implicit_loss)


MEANINGS.update({GD: GRADIENT_DESCENT, HeavyBall: HEAVY_BALL, Nesterov: NESTEROV, Adaptive: ADAPTIVE,
                 LionK: LION, Orthogonalized: MUON})

#: the 0.6 attributes of an optimizer, answered (with a DeprecationWarning) by MemoryOptimizer.__getattr__
READINGS.update({
    "structure": ("structure", lambda opt: lambda gradients: structure(opt, gradients)),
    "implicit_loss": ("implicit_loss", lambda opt: lambda loss, lr: implicit_loss(opt, loss, lr)),
    "implicit_loss_at": ("implicit_loss", lambda opt: lambda loss, lr, gradient: implicit_loss(opt, loss, lr,
                                                                                              gradient=gradient)),
    "sharpness_proxy": ("sharpness_proxy", lambda opt: lambda gradient, loss=None: sharpness_proxy(opt, gradient,
                                                                                                  loss)),
    "sharpness_formula": ("sharpness_formula", sharpness_formula),
    "reference_losses": ("reference_losses", reference_losses),
    "evidence_loss": ("evidence_loss", evidence_loss),
})
