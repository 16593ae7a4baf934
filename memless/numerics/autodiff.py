"""autograd machinery, private: one JVP helper (forward mode, or reverse mode where
autograd has no forward rule), one warning filter, and the recorded-gradient
primitive through which the engine's JVPs reuse a gradient and its Hessian-vector
products instead of recomputing them.
"""
from __future__ import annotations

import contextlib
import warnings

import autograd.numpy as anp
import numpy as np
from autograd import make_jvp, make_vjp
from autograd.extend import defjvp, defvjp, primitive
from autograd.tracer import getval, isbox

def numpy_for(*arrays):
    """autograd.numpy where an array is traced, else NumPy: autograd's wrappers cost a few microseconds a
    call, the most of a hand-written derivative (or a layout's reshapes) on a small model."""
    return anp if any(isbox(a) for a in arrays) else np


# ----------------------------------------------------------------------------
# Elementwise primitives with cheap derivatives
# ----------------------------------------------------------------------------


@primitive
def sqrt(x):
    """sqrt(x), differentiated as g / (2 sqrt(x)): autograd's own rule raises x to the power
    -0.5, which costs ten square roots on a large vector (1.2 ms for 85k parameters).

    At x = 0 the derivative is taken as 0 (autograd's rule gives 0 * inf = NaN or inf): Adam's
    second moment v = g^2 has a zero tangent 2 g H F wherever a gradient component is exactly 0
    (an input pixel that is always blank), and the term's closed form is 0 there; where g_i is
    not 0 but g_i^2 underflows (|g_i| < 1e-162), the exact term is of the size of |g_i|, which is
    0 to float64's precision beside any other component."""
    return np.sqrt(x)


def _half_over(ans):
    root = getval(ans)
    if np.all(root):                                          # no zero roots: the plain rule
        return lambda g: g / (2.0 * ans)
    zero = root == 0
    safe = np.where(zero, 1.0, root)
    return lambda g: anp.where(zero, 0.0, g / (2.0 * safe))


defjvp(sqrt, lambda g, ans, x: _half_over(ans)(g))
defvjp(sqrt, lambda ans, x: _half_over(ans))


@primitive
def tanh(x):
    """tanh(x), differentiated as g (1 - tanh(x)^2): autograd's own rule divides by cosh(x)^2,
    which overflows for |x| > 710, and its second derivative is then inf / inf = NaN (Lion's smooth
    sign tanh(kappa x) at kappa = 1e4 meets that at |x| > 0.07)."""
    return np.tanh(x)


defjvp(tanh, lambda g, ans, x: g * (1.0 - ans * ans))
defvjp(tanh, lambda ans, x: lambda g: g * (1.0 - ans * ans))

# ----------------------------------------------------------------------------
# One warning filter
# ----------------------------------------------------------------------------


@contextlib.contextmanager
def independent_outputs_allowed():
    """Silence autograd's "Output seems independent of input": a direction that does not
    depend on a channel (exact-sign Lion), or a loss with constant gradient, has a zero
    derivative, which is a result, not a mistake."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Output seems independent of input", UserWarning)
        yield


#: how :func:`jvp` differentiates: "auto" (forward mode, reverse mode where a primitive has no
#: forward rule), "forward" or "reverse"; tests switch it with :func:`jvp_mode`
_MODE = ["auto"]


@contextlib.contextmanager
def jvp_mode(mode: str):
    """Within the block, :func:`jvp` uses ``mode`` ("auto", "forward" or "reverse")."""
    if mode not in ("auto", "forward", "reverse"):
        raise ValueError(f"jvp mode must be 'auto', 'forward' or 'reverse', got {mode!r}")
    _MODE.append(mode)
    try:
        yield
    finally:
        _MODE.pop()


def jvp(fun, x, direction):
    """(fun(x), d fun(x) . direction): one forward-mode pass, or -- where autograd has no
    forward rule (``svd``, ``eigh``, ...: NotImplementedError) -- two reverse-mode passes."""
    mode = _MODE[-1]
    with independent_outputs_allowed():
        if mode != "reverse":
            try:
                return make_jvp(fun)(x)(direction)
            except NotImplementedError:
                if mode == "forward":
                    raise
        return reverse_jvp(fun, x, direction)


def reverse_jvp(fun, x, direction):
    """(fun(x), J direction) by reverse mode only: J v is the vector-Jacobian product of the
    linear map u -> J^T u (itself a VJP of ``fun``) with v.  Costs two reverse passes.

    The map is linear, so any u gives the same result; u = ones, not zeros, because some
    reverse rules skip a branch whose cotangent is zero (autograd's ``eigh`` drops its
    eigenvector part), which would leave it out of the trace."""
    with independent_outputs_allowed():
        backward, value = make_vjp(fun)(x)
        transpose_backward, _ = make_vjp(backward)(np.ones(np.shape(value)))
        return value, transpose_backward(direction)


# ----------------------------------------------------------------------------
# The recorded gradient: the gradient at a point, differentiated by stored HVPs
# ----------------------------------------------------------------------------


class Point:
    """What is known at one point: theta, the gradient there and (if recorded) v -> H v."""

    __slots__ = ("theta", "gradient", "hvp", "gradient_function", "last")

    def __init__(self, theta, gradient, hvp, gradient_function=None):
        self.theta, self.gradient, self.hvp = theta, gradient, hvp
        self.gradient_function = gradient_function
        self.last = None              #: (v, H v) of the last product at theta: JVPs along one v share it

    def at(self, x):
        return x is self.theta or np.array_equal(x, self.theta)

    def hessian_times(self, x, v):
        here = self.at(x)
        if here and self.last is not None and self.last[0] is v:
            return self.last[1]
        if here and self.hvp is not None:
            result = self.hvp(v)
        else:
            with independent_outputs_allowed():
                result = make_jvp(self.gradient_function)(x)(v)[1]
        if here:
            self.last = (v, result)
        return result



# One primitive for all points (autograd registers derivative rules globally, so a
# primitive per point would keep every recorded gradient alive).
@primitive
def _gradient_near(x, point):
    return point.gradient if point.at(x) else point.gradient_function(x)


defjvp(_gradient_near, lambda x_dot, ans, x, point: point.hessian_times(x, x_dot), None)
defvjp(_gradient_near, lambda ans, x, point: lambda u: point.hessian_times(x, u), None)


def frozen_gradient(gradient_function, point: Point):
    """A gradient function equal to ``gradient_function`` whose value at ``point.theta`` is the
    stored gradient and whose derivative there is the stored HVP; ``.value`` is that gradient."""
    point = Point(point.theta, point.gradient, point.hvp, gradient_function)

    def gradient(x):
        return _gradient_near(x, point)

    gradient.value = point.gradient  # type: ignore[attr-defined]  # a function that carries its value
    return gradient
