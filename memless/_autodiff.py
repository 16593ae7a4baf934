"""autograd machinery, private: one forward-mode helper, one warning filter, and
the recorded-gradient primitive through which the engine's JVPs reuse a gradient
and its Hessian-vector products instead of recomputing them.
"""
from __future__ import annotations

import contextlib
import warnings

import numpy as np
from autograd import make_jvp
from autograd.extend import defjvp, defvjp, primitive

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


def jvp(fun, x, direction):
    """(fun(x), d fun(x) . direction), by one forward-mode pass."""
    with independent_outputs_allowed():
        return make_jvp(fun)(x)(direction)


# ----------------------------------------------------------------------------
# The recorded gradient: the gradient at a point, differentiated by stored HVPs
# ----------------------------------------------------------------------------


class Point:
    """What is known at one point: theta, the gradient there and (if recorded) v -> H v."""

    __slots__ = ("theta", "gradient", "hvp", "gradient_function")

    def __init__(self, theta, gradient, hvp, gradient_function=None):
        self.theta, self.gradient, self.hvp = theta, gradient, hvp
        self.gradient_function = gradient_function

    def at(self, x):
        return x is self.theta or np.array_equal(x, self.theta)

    def hessian_times(self, x, v):
        if self.hvp is not None and self.at(x):
            return self.hvp(v)
        with independent_outputs_allowed():
            return make_jvp(self.gradient_function)(x)(v)[1]



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

    gradient.value = point.gradient
    return gradient
