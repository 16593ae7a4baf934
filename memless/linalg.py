"""Matrix functions the matrix optimizers use, with the derivatives autograd lacks.

autograd differentiates ``svd`` and ``eigh`` in reverse mode only; the engine's
Eq. (12) is a forward-mode JVP.  The polar factor gets its own rule here, in both
modes.  Any other function without a forward rule (a plugin's ``eigh``) still works:
:func:`memless._autodiff.jvp` falls back to two reverse-mode passes.

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

from typing import Sequence

import autograd.numpy as anp
import numpy as np
from autograd.extend import defjvp, defvjp, primitive

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


def polar_derivative(X, E):
    """d polar(X)[E], the nuclear norm's Hessian at X applied to E (X of full rank)."""
    if X.shape[0] < X.shape[1]:
        return anp.transpose(polar_derivative(anp.transpose(X), anp.transpose(E)))
    U, s, Vt = _thin_svd(X)
    V = anp.transpose(Vt)
    EV = anp.dot(E, V)
    B = anp.dot(anp.transpose(U), EV)
    A = (B - anp.transpose(B)) / (s[:, None] + s[None, :])
    rotation = anp.dot(anp.dot(U, A), Vt)
    outside = anp.dot((EV - anp.dot(U, B)) / s[None, :], Vt)
    return rotation + outside


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


def newton_schulz(X, coefficients: Sequence[float] = NS_COEFFICIENTS, steps: int = NS_STEPS,
                  eps: float = NS_EPS):
    """torch.optim.Muon's orthogonalization, in float64: transpose a tall X, divide by
    max(||X||_F, eps), then ``steps`` times ``X <- a X + (b A + c A^2) X`` with ``A = X X^T``.

    It approximates :func:`polar` (singular values land in about [0.7, 1.2], not at 1).
    Written with autograd.numpy, so it has forward and reverse derivatives.
    """
    a, b, c = coefficients
    tall = X.shape[0] > X.shape[1]
    Y = anp.transpose(X) if tall else X
    Y = Y / anp.maximum(anp.sqrt(anp.sum(Y * Y)), eps)
    for _ in range(int(steps)):
        A = anp.dot(Y, anp.transpose(Y))
        Y = a * Y + anp.dot(b * A + c * anp.dot(A, A), Y)
    return anp.transpose(Y) if tall else Y
