"""Matrix functions the matrix optimizers use, with the derivatives autograd lacks.

autograd differentiates ``svd`` and ``eigh`` in reverse mode only; the engine's
Eq. (12) is a forward-mode JVP.  The polar factor gets its own rule here, in both
modes.  Any other function without a forward rule (a plugin's ``eigh``) still works:
:func:`memless.numerics.autodiff.jvp` falls back to two reverse-mode passes.

* :func:`polar` -- ``polar(X) = U V^T`` for ``X = U S V^T``: the gradient of the nuclear
  norm ``K(X) = ||X||_* = sum_i s_i`` (Muon's idealized orthogonalization);
* :func:`polar_derivative` -- its derivative, the Hessian of K applied to E (positive
  semidefinite and self-adjoint, since K is convex)::

      d polar(X)[E] = U A V^T + (I - U U^T) E V S^(-1) V^T,   A_ij = (B_ij - B_ji)/(s_i + s_j),  B = U^T E V

  for X of full rank m x n, m >= n (the transpose otherwise);
* :func:`nuclear_norm` -- K, with gradient :func:`polar`;
* :func:`newton_schulz` -- the quintic iteration Muon runs instead of the polar factor
  (torch.optim.Muon's ``_zeropower_via_newtonschulz``, in float64).

>>> import numpy as np
>>> X = np.array([[3.0, 1.0], [1.0, 2.0], [0.0, 1.0]])
>>> Q = polar(X)
>>> bool(np.allclose(Q.T @ Q, np.eye(2)))
True
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import autograd.numpy as anp
import numpy as np
from autograd.extend import defjvp, defvjp, primitive
from autograd.tracer import getval, isbox

from ..errors import MemlessError
from .autodiff import numpy_for

#: torch.optim.Muon's quintic coefficients (a, b, c), steps and eps
NS_COEFFICIENTS = (3.4445, -4.775, 2.0315)
NS_STEPS = 5
NS_EPS = 1e-7

# ----------------------------------------------------------------------------
# The polar factor and its derivative
# ----------------------------------------------------------------------------


def _thin_svd(X):
    U, s, Vt = anp.linalg.svd(X, full_matrices=False)
    return U, s, Vt


@primitive
def polar(X):
    """U V^T for the thin SVD X = U S V^T of a 2-D array (the orthogonal polar factor)."""
    U, _, Vt = np.linalg.svd(np.asarray(X, dtype=float), full_matrices=False)
    return U @ Vt


#: sigma_min/sigma_max of a matrix below which its polar factor's derivative is refused.  The
#: derivative grows like 1/sigma_min and holds only within a distance ~sigma_min of X; measured in
#: float64 against central differences (steps below sigma_min) on a 6 x 4 matrix, it agrees to
#: 5e-9 down to sigma_min/sigma_max = 1e-4, to 6e-6 at 1e-8, 3.5e-3 at 1e-12 and 0.5 at 1e-14
#: (tests/test_matrix.py).  1e-8 (about the square root of float64's epsilon) is where it stops
#: being a number worth reporting: the gradient of a model whose output layer has no bias under
#: cross-entropy has sigma_min ~ 1e-16 sigma_max (its rows sum to zero).
POLAR_CONDITION = 1e-8


class SingularPolarError(MemlessError):
    """The polar factor's derivative is requested at a matrix that is (numerically) rank-deficient."""


def check_polar_condition(s, shape, name: str = "") -> None:
    """Raise :class:`SingularPolarError` when sigma_min/sigma_max of singular values ``s`` is below
    :data:`POLAR_CONDITION`."""
    s = np.asarray(getval(s), dtype=float)
    top = float(np.max(s)) if s.size else 0.0
    ratio = float(np.min(s)) / top if top > 0 else 0.0
    if not ratio >= POLAR_CONDITION:
        where = f"matrix {name!r} ({shape[0]} x {shape[1]})" if name else f"a {shape[0]} x {shape[1]} matrix"
        raise SingularPolarError(
            f"the polar factor's derivative does not exist at {where}: sigma_min/sigma_max = {ratio:.1e} < "
            f"{POLAR_CONDITION:.0e} (it grows as 1/sigma_min; a rank-deficient gradient, e.g. an output layer "
            "without bias under cross-entropy); use orthogonalize='newton-schulz' (Muon) or give that layer a bias")


def polar_derivative(X, E, name: str = ""):
    """d polar(X)[E], the nuclear norm's Hessian at X applied to E (X of full rank: raises
    :class:`SingularPolarError` below :data:`POLAR_CONDITION`)."""
    if isbox(X):                  # X is itself being differentiated (a second derivative, order=2)
        return _polar_derivative_traced(X, E)
    if X.shape[0] < X.shape[1]:
        return anp.transpose(polar_derivative(anp.transpose(X), anp.transpose(E), name))
    U, s, Vt = _thin_svd(X)
    check_polar_condition(s, X.shape, name)
    V = anp.transpose(Vt)
    EV = anp.dot(E, V)
    B = anp.dot(anp.transpose(U), EV)
    A = (B - anp.transpose(B)) / (s[:, None] + s[None, :])
    rotation = anp.dot(anp.dot(U, A), Vt)
    outside = anp.dot((EV - anp.dot(U, B)) / s[None, :], Vt)
    return rotation + outside


@primitive
def _inverse(A):
    """A^(-1), with a forward rule autograd lacks: d(A^(-1)) = -A^(-1) dA A^(-1) (differentiable again)."""
    return np.linalg.inv(A)


defjvp(_inverse, lambda dA, ans, A: -anp.dot(anp.dot(ans, dA), ans))
defvjp(_inverse, lambda ans, A: lambda G: -anp.dot(anp.dot(anp.transpose(ans), G), anp.transpose(ans)))


#: most iterations of the traced polar iteration (it converges quadratically: ~10 for a condition of 1e3)
POLAR_ITERATIONS = 100


def _polar_traced(X):
    """The polar factor by Newton's iteration X <- (X + X (X^T X)^(-1)) / 2 (tall X of full rank; Higham),
    written with autograd.numpy so that autograd can differentiate it in forward mode, to convergence
    at rounding (checked on the values, not the derivatives)."""
    if X.shape[0] < X.shape[1]:
        return anp.transpose(_polar_traced(anp.transpose(X)))
    Y = X / anp.sqrt(anp.sum(X * X))
    for _ in range(POLAR_ITERATIONS):
        Z = 0.5 * (Y + anp.dot(Y, _inverse(anp.dot(anp.transpose(Y), Y))))
        change = float(np.max(np.abs(getval(Z) - getval(Y))))
        Y = Z
        if change <= 1e-15:
            break
    return Y


def _polar_derivative_traced(X, E):
    """d polar(X)[E] where X is traced: the forward derivative of the traced Newton iteration, so that
    the polar factor can be differentiated twice (order=2); refused where the derivative is (it grows
    like 1/sigma_min)."""
    s = np.linalg.svd(np.asarray(getval(X), dtype=float), compute_uv=False)
    check_polar_condition(s, np.shape(getval(X)))
    from autograd import make_jvp
    return make_jvp(_polar_traced)(X)(E)[1]


defjvp(polar, lambda E, ans, X: polar_derivative(X, E))
# the derivative is self-adjoint (a Hessian), so the vector-Jacobian product is the same map
defvjp(polar, lambda ans, X: lambda E: polar_derivative(X, E))


@primitive
def nuclear_norm(X):
    """||X||_* = the sum of the singular values of a 2-D array."""
    return float(np.sum(np.linalg.svd(np.asarray(X, dtype=float), compute_uv=False)))


defjvp(nuclear_norm, lambda E, ans, X: anp.sum(polar(X) * E))
defvjp(nuclear_norm, lambda ans, X: lambda g: g * polar(X))


# ----------------------------------------------------------------------------
# Newton-Schulz: what Muon runs
# ----------------------------------------------------------------------------


#: the last few calls' results by key, oldest first: a primal and its forward derivative follow each
#: other on the same X, and a layout's matrices alternate (U, V, U, V, ...)
_LAST_ITERATES: "OrderedDict[tuple, tuple]" = OrderedDict()
_KEPT_ITERATES = 8


def _quintic_iterates(X, coefficients, steps, eps):
    """The normalized start and every iterate of the quintic on a wide (rows <= cols) X, in numpy
    (the last few calls' are reused when X and the settings are the same: the JVP follows its primal)."""
    key = (X.shape, X.tobytes(), coefficients, steps, eps)
    kept = _LAST_ITERATES.get(key)
    if kept is not None:
        return kept
    result = _quintic_iterates_of(X, coefficients, steps, eps)
    _LAST_ITERATES[key] = result
    while len(_LAST_ITERATES) > _KEPT_ITERATES:
        _LAST_ITERATES.popitem(last=False)
    return result


def _quintic_iterates_of(X, coefficients, steps, eps):
    """The same, uncached; written so that it also runs on a traced X (second derivatives)."""
    a, b, c = coefficients
    xp = numpy_for(X)
    norm = xp.sqrt(xp.sum(X * X))
    Y = X / (norm if getval(norm) > eps else eps)
    iterates = [Y]
    for _ in range(int(steps)):
        A = Y @ Y.T
        Y = a * Y + (b * A + c * A @ A) @ Y
        iterates.append(Y)
    return norm, iterates


@primitive
def _quintic(X, coefficients, steps, eps):
    return _quintic_iterates(np.asarray(X, dtype=float), coefficients, steps, eps)[1][-1].copy()   # kept iterates stay unshared


def _quintic_jvp(E, ans, X, coefficients, steps, eps):
    """Forward through the iterates: dY' = a dY + dB Y + B dY, dB = b dA + c (dA A + A dA), dA = dY Y^T + Y dY^T.
    Where X is itself traced (a second derivative), the iterates are traced too, so autograd can
    differentiate this rule with respect to X."""
    a, b, c = coefficients
    if isbox(X):
        X0 = X
        norm, iterates = _quintic_iterates_of(X0, coefficients, steps, eps)
    else:
        X0 = np.asarray(X, dtype=float)
        norm, iterates = _quintic_iterates(X0, coefficients, steps, eps)
    small = getval(norm) <= eps
    scale = eps if small else norm
    dY = E / scale if small else E / scale - X0 * (anp.sum(X0 * E) / norm ** 3)
    for Y in iterates[:-1]:
        A = Y @ Y.T
        B = b * A + c * A @ A
        dA = dY @ Y.T + Y @ dY.T
        dB = b * dA + c * (dA @ A + A @ dA)
        dY = a * dY + dB @ Y + B @ dY
    return dY


def _quintic_vjp(ans, X, coefficients, steps, eps):
    """Backward through the iterates (A and B are symmetric)."""
    a, b, c = coefficients
    X0 = np.asarray(X, dtype=float)
    norm, iterates = _quintic_iterates(X0, coefficients, steps, eps)
    scale = max(norm, eps)

    def backward(G):
        for Y in reversed(iterates[:-1]):
            A = Y @ Y.T
            B = b * A + c * A @ A
            Bbar = anp.dot(G, Y.T)
            Abar = b * Bbar + c * (anp.dot(Bbar, A) + anp.dot(A, Bbar))
            G = a * G + anp.dot(B, G) + anp.dot(Abar + anp.transpose(Abar), Y)
        if norm <= eps:
            return G / scale
        return G / scale - X0 * (anp.sum(X0 * G) / norm ** 3)

    return backward


defjvp(_quintic, _quintic_jvp)
defvjp(_quintic, _quintic_vjp)


def newton_schulz(X, coefficients: Sequence[float] = NS_COEFFICIENTS, steps: int = NS_STEPS,
                  eps: float = NS_EPS):
    """torch.optim.Muon's orthogonalization, in float64: transpose a tall X, divide by
    max(||X||_F, eps), then ``steps`` times ``X <- a X + (b A + c A^2) X`` with ``A = X X^T``.

    It approximates :func:`polar` (singular values land in about [0.7, 1.2], not at 1).
    Its forward and reverse derivatives are written out (autograd would trace each of the
    ~30 matrix products: ten times slower in the engine's JVPs).
    """
    coefficients = tuple(float(v) for v in coefficients)
    if not isbox(X):              # plain arrays: the primitive's value, without autograd's wrappers
        wide = X.T if X.shape[0] > X.shape[1] else X
        Y = _quintic_iterates(np.asarray(wide, dtype=float), coefficients, int(steps), float(eps))[1][-1].copy()
        return Y.T if X.shape[0] > X.shape[1] else Y
    if X.shape[0] > X.shape[1]:
        return anp.transpose(_quintic(anp.transpose(X), coefficients, int(steps), float(eps)))
    return _quintic(X, coefficients, int(steps), float(eps))
