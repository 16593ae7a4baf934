"""The loss as the engine sees it: its value, gradient and Hessian-vector products.

A loss is given everywhere in the public API the same way: a callable
``theta -> scalar`` written with ``autograd.numpy``, or the name of a reference
loss (``memless.losses.REFERENCE_LOSSES``: "bilinear", "curvy", ...), which
also supplies a start point.  :func:`resolve_loss` turns either into
``(callable, theta, name)``; :class:`Objective` checks it at a point.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any, Callable, NamedTuple, Optional, Tuple, Union, cast

import autograd.numpy as anp
import numpy as np
from autograd import grad as _autograd_grad
from autograd import make_vjp
from autograd import value_and_grad as _value_and_grad

from ..checks import check_theta, shown
from ..contract.optimizer import require_optimizer
from ..errors import LossError, MemlessError
from ..numerics.autodiff import Point, frozen_gradient, independent_outputs_allowed
from ..parameters import StructuredLoss, layout_of, structured

#: a loss: a callable theta -> scalar, or a reference loss's name
LossLike = Union[Callable, str, "Objective"]

#: below this many parameters, autograd's per-operation overhead makes a recorded
#: gradient dearer than recomputing it inside a forward-over-reverse HVP
RECORD_MIN_SIZE = 1000


def resolve_loss(loss: LossLike, theta=None, *, need_theta: bool = True) -> Tuple[Callable, Optional[np.ndarray], str]:
    """``(callable, theta, name)`` for a loss given as a callable or a reference-loss name.

    A name supplies its start point when ``theta`` is None; a callable needs ``theta``
    (unless ``need_theta=False``).  ``theta`` may be a dict of named arrays, with ``loss``
    taking that dict: the callable returned is then a :class:`~memless.parameters.StructuredLoss`
    on the flat vector, carrying the layout.

    >>> f, theta, name = resolve_loss("curvy")
    >>> name, theta.shape
    ('curvy', (3,))
    """
    if isinstance(loss, str):
        from ..losses import get_loss
        reference = get_loss(loss)
        start = reference.start if theta is None else theta
        layout = layout_of(reference.loss)
        if isinstance(start, Mapping) and layout is not None:
            start = layout.flatten(start)
        return reference.loss, check_theta(start), reference.name
    if isinstance(loss, Objective):
        loss = loss.loss
    if not callable(loss):
        raise LossError(f"loss must be a callable theta -> scalar or a reference-loss name "
                        f"(see 'python -m memless list-losses'), got {type(loss).__name__}")
    if isinstance(theta, Mapping):          # a loss over named arrays, at this dict of them
        if isinstance(loss, StructuredLoss):
            return loss, check_theta(loss.layout.flatten(theta)), loss.__name__
        named = structured(loss, theta)
        return named, check_theta(named.start), named.__name__
    if theta is None and isinstance(getattr(loss, "start", None), np.ndarray):
        theta = cast(Any, loss).start  # a structured or external loss that carries its start point
    if theta is None:
        if need_theta:
            raise LossError("theta is required with a loss given as a callable (a reference-loss name "
                            "supplies its own start point)")
        return loss, None, getattr(loss, "__name__", "loss")
    return loss, check_theta(theta), getattr(loss, "__name__", "loss")


class Objective:
    """A loss with its autograd gradient, checked at a point.

    ``check(theta)`` computes the loss and its gradient in one pass and keeps the
    gradient for that array.  ``check(theta, linearize=True)`` also keeps the
    recorded computation of the gradient, from which each Hessian-vector product
    H(theta) v is one backward pass (reverse-over-reverse) -- no second gradient
    (for models with at least ``RECORD_MIN_SIZE`` parameters; smaller ones use
    forward-over-reverse, cheaper there).

    ``frozen(theta)`` returns a gradient function for the constant history
    (theta, ..., theta) of Eq. (4): at theta it returns the stored gradient, and
    autograd differentiates it (forward or reverse mode) by the stored Hessian-vector
    product, so the engine's JVPs never recompute the gradient.
    """

    def __init__(self, loss: Callable):
        if not callable(loss):
            raise LossError(f"loss must be a callable theta -> scalar, got {type(loss).__name__}")
        self.loss = loss
        # a loss that supplies its own derivatives (memless.frameworks.ExternalLoss): taken
        # from it directly, not by tracing it
        self._linearize = getattr(loss, "linearize", None) if callable(getattr(loss, "traced_gradient", None)) else None
        self.gradient = cast(Any, loss).traced_gradient if self._linearize else _autograd_grad(loss)
        self._value_and_gradient = cast(Any, loss).value_and_gradient if self._linearize else _value_and_grad(loss)
        self._checked = Point(None, None, None)

    # -- evaluating at a point ----------------------------------------------

    def _packed(self, theta):
        value, g = self._value_and_gradient(theta)
        return anp.concatenate([anp.ravel(g), anp.reshape(value, (1,))])

    def _evaluate(self, theta, linearize):
        """(value, gradient, hvp or None) at theta."""
        if self._linearize is not None:
            return self._linearize(theta) if linearize else (*self._value_and_gradient(theta), None)
        if not linearize or np.size(theta) < RECORD_MIN_SIZE:
            value, g = self._value_and_gradient(theta)
            return value, g, None
        with independent_outputs_allowed():
            backward, packed = make_vjp(self._packed)(theta)
        packed = np.asarray(packed)
        pad = np.zeros(1)

        def hvp(v):
            # H is symmetric, so the vector-Jacobian product of the gradient is H v
            with independent_outputs_allowed():
                return backward(anp.concatenate([v, pad]))

        return packed[-1], packed[:-1], hvp

    def check(self, theta, linearize: bool = False) -> "Objective":
        """Raise LossError unless loss(theta) is a finite scalar with a finite gradient."""
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                value, g, hvp = self._evaluate(theta, linearize)
        except MemlessError:
            raise
        except Exception:
            value, g = self._diagnose(theta)
            hvp = None
        if np.ndim(value) != 0:
            raise LossError(f"loss must return a scalar, got an array of shape {np.shape(value)}")
        if np.iscomplexobj(value):
            raise LossError(f"loss must return a real scalar, got {value!r}")
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise LossError(f"loss must return a real scalar, got {type(value).__name__}") from None
        if not math.isfinite(value):
            raise LossError(f"loss returned {value} at theta={shown(theta)}; it must be finite")
        g = np.asarray(g, dtype=float)
        if g.shape != np.shape(theta) or not np.all(np.isfinite(g)):
            raise LossError(f"the loss gradient at theta={shown(theta)} is not finite: {shown(g)}")
        self._checked = Point(theta, g, hvp)
        return self

    def _diagnose(self, theta):
        """The loss failed under autograd: say whether the loss itself or its derivative is at fault."""
        try:
            value = self.loss(theta)
        except MemlessError:
            raise
        except Exception as exc:
            if isinstance(self.loss, StructuredLoss):
                raise LossError(f"loss(params) raised {type(exc).__name__}: {exc} (params: "
                                f"{self.loss.layout!r}, a dict of arrays)") from exc
            raise LossError(
                f"loss(theta) raised {type(exc).__name__}: {exc} (theta has shape {np.shape(theta)})") from exc
        if np.ndim(value) != 0:
            raise LossError(f"loss must return a scalar, got an array of shape {np.shape(value)}")
        try:
            with np.errstate(all="ignore"):
                g = self.gradient(theta)
        except MemoryError:
            raise LossError(f"out of memory computing the gradient of the loss at {np.size(theta)} parameters: the "
                            "loss's intermediate arrays do not fit; use fewer parameters or a smaller batch") from None
        except LossError:
            raise
        except Exception as exc:
            raise LossError(
                f"autograd could not differentiate the loss: {type(exc).__name__}: {exc}; "
                "write it with autograd.numpy (import autograd.numpy as np)") from exc
        return value, g

    # -- the gradient at a constant history -----------------------------------

    def frozen(self, theta, linearize: bool = False):
        """A gradient function that knows the gradient (and, if linearized, the HVP) at theta.

        ``.value`` is the gradient at theta.  Called at other points it computes
        the gradient there, and autograd differentiates it as usual.
        """
        point = self._checked
        wants_record = linearize and (np.size(theta) >= RECORD_MIN_SIZE or self._linearize is not None)
        if theta is not point.theta or (wants_record and point.hvp is None):
            if wants_record:
                value, g, hvp = self._evaluate(theta, True)
                point = Point(theta, np.asarray(g, dtype=float), hvp)
            else:
                point = Point(theta, np.asarray(self.gradient(theta), dtype=float), None)
            self._checked = point
        return frozen_gradient(self.gradient, point)


def objective(loss: Union[Callable, Objective], theta, linearize: bool = False) -> Objective:
    """A checked :class:`Objective` (loss is an Objective already: reused as is).

    ``linearize=True`` records the gradient's computation for Hessian-vector products.
    """
    obj = loss if isinstance(loss, Objective) else Objective(loss)
    return obj.check(theta, linearize=linearize)


def bound(optimizer, loss: Callable):
    """The optimizer as it acts on this loss's parameters: bound to the loss's layout
    (:meth:`memless.MemoryOptimizer.bind`); every analysis calls this once."""
    return optimizer.bind(layout_of(loss))


class Problem(NamedTuple):
    """A problem as every public function starts it (:func:`problem`)."""

    optimizer: Any                    #: the optimizer, bound to the loss's layout
    loss: Callable                    #: the loss as a callable of the flat parameters
    theta: Optional[np.ndarray]       #: the start (a reference loss's own when none was given)
    name: str                         #: the loss's name, for reports


def problem(optimizer, loss: LossLike, theta=None, *, need_theta: bool = True) -> Problem:
    """The set-up written once: the optimizer checked (a one-line error otherwise), the loss resolved
    (:func:`resolve_loss`: a reference name or a callable, theta a vector or a dict of arrays) and
    the optimizer bound to the loss's layout (:func:`bound`).

    >>> import memless
    >>> setup = problem(memless.get_optimizer("adam"), "curvy")
    >>> setup.name, setup.theta.shape
    ('curvy', (3,))
    """
    require_optimizer(optimizer)
    loss, theta, name = resolve_loss(loss, theta, need_theta=need_theta)
    return Problem(bound(optimizer, loss), loss, theta, name)
