"""The second-order correction M2: the term after Eq. (12), for an O(h^3) memoryless iteration.

This goes one order beyond Cattaneo & Shigida (2025), whose Eq. (12) gives the first-order
correction M1.  The derivation follows their Section 3 one order further.  Along the memoryless
iteration theta^(s+1) = theta^(s) - h G^(s)(theta^(s)) with G = F + M1 + M2, the history seen from
theta = theta^(n) is theta^(n-k) = theta + delta_k with

    delta_k = h sum_{s=n-k..n-1} G^(s)(theta^(s))
            = h v_k + h sum_{s=n-k..n-1} [ M1^(s)(theta) + h J^(s) v_{n-s} ] + O(h^3),

where v_k = sum_{s=n-k..n-1} F^(s)(theta) (as in Eq. 12) and J^(s) = dF^(s)(theta, ..., theta)/dtheta.
Expanding F^(n) at the constant history to second order in delta,

    F^(n)(history) = F^(n) + sum_k d_k F^(n) delta_k + 1/2 sum_{k,l} d2_{kl} F^(n) [delta_k, delta_l] + O(h^3),

the first-order part is M1 (Eq. 12) and the second-order part is

    M2 = sum_k d_k F^(n) . h sum_s [M1^(s) + h J^(s) v_{n-s}]  +  1/2 sum_{k,l} d2_{kl} F^(n) [h v_k, h v_l].

With M2 the residual F^(n)(history) - G^(n)(theta) is O(h^3) per step, so the global error of
the memoryless iteration is O(h^3) on a fixed horizon (where memory decays fast enough that
sum_k k^3 gamma_k converges).  In the limit n -> infinity, where F^(s) = F, M1^(s) = M1 and
v_k = k F, the sums collapse to three operators of the history weights,

    A[u] = sum_k k d_k F . u,   B[u] = sum_k k(k+1)/2 d_k F . u,   C[u] = 1/2 sum_{k,l} k l d2_{kl} F [u, u],
    M1 = h A[F],   M2 = h A[M1] + h^2 B[J F] + h^2 C[F].

For a momentum optimizer (Remark 3.2) with channels m_l = b_l sum_k beta_l^k g_l(theta^(n-k)) and
F = Phi(m), d_k F . u = sum_l dPhi/dm_l . b_l beta_l^k grad g_l u, so A, B and the first part of C
take the weights sum_k k beta^k = beta/(1-beta)^2 and sum_k k(k+1)/2 beta^k = beta/(1-beta)^3,
and C's second-derivative-of-g part sum_k k^2 beta^k = beta(1+beta)/(1-beta)^3.  For heavy-ball this
gives the closed form

    M2 = h^2 beta(1+beta)/(2(1-beta)^5) grad (g^T H g),

a gradient field (tested against the engine).  Using the limit M2 at every step costs O(h^3)
globally (it differs from M2^(n) only in the first steps), but M1 must be the exact M1^(n).

Every derivative is taken by forward-mode autograd, nested once: third derivatives of the loss
are needed (a loss given only by its gradient and Hessian-vector products cannot give them).
"""
from __future__ import annotations

import math
from typing import List, Optional

import autograd.numpy as anp
import numpy as np

from ..contract.optimizer import MemoryOptimizer, MomentumOptimizer, history_weights
from ..errors import LossError, MemlessError
from ..numerics.autodiff import jvp
from .objective import Objective

#: the history-form engine computes M2 only for optimizers whose direction reads at most this many
#: iterates (it costs about window^2 JVPs)
MAX_WINDOW = 64


def second_order_correction(optimizer: MemoryOptimizer, obj: Objective, theta, lr: float,
                            n: Optional[int] = None) -> np.ndarray:
    """M2(theta) in the limit n -> infinity (see the module's docstring), for a checked problem;
    with ``n``, the exact M2^(n) for a momentum optimizer whose channel weights never vary
    (:attr:`~memless.Channel.constant_weight`: Adam, AdamW, NAdam with bias correction), the limit
    for the others.  Raises a one-line :class:`~memless.MemlessError` for an optimizer it cannot
    treat and a :class:`~memless.LossError` for a loss without third derivatives.
    """
    check_second_order(optimizer)
    gradient = obj.gradient            # differentiable to any order (not the engine's frozen gradient)
    try:
        if isinstance(optimizer, MomentumOptimizer):
            # first derivatives at theta through the recorded gradient (each HVP one backward pass)
            return _momentum_second_order(optimizer, gradient, obj.frozen(theta, linearize=True), theta, lr, n)
        if optimizer.window is not None and optimizer.window <= MAX_WINDOW + 1:
            return _window_second_order(optimizer, gradient, theta, lr)
    except LossError as exc:
        if "third derivative" in str(exc):
            raise LossError(f"order=2 needs the loss's third derivatives; {getattr(obj.loss, '__name__', 'this loss')} "
                            "gives only its gradient and Hessian-vector products: give ExternalLoss a third= (the "
                            "PyTorch and JAX objectives do), write the loss with autograd.numpy, or use order=1"
                            ) from None
        raise
    raise AssertionError("unreachable: check_second_order passed")     # pragma: no cover


def check_second_order(optimizer: MemoryOptimizer) -> None:
    """A one-line error unless M2 can be computed for this optimizer."""
    if isinstance(optimizer, MomentumOptimizer) or (optimizer.window is not None and optimizer.window <= MAX_WINDOW + 1):
        return
    raise MemlessError(f"{optimizer.label}: order=2 is computed for momentum-form optimizers (MomentumOptimizer) and "
                       f"for history-form optimizers with a window of at most {MAX_WINDOW + 1} steps; this one has "
                       "neither")


# ----------------------------------------------------------------------------
# Momentum form: the three history operators in closed form
# ----------------------------------------------------------------------------


def _momentum_second_order(optimizer, gradient, frozen, theta, lr, n=None):
    """M2 = h A[M1] + h^2 B[J F] + h^2 C[F] over the channels: three loss Hessian-vector products
    (the signals' tangents along F, M1 and J F), one second directional derivative of the signals
    along F (third derivatives of the loss), and derivatives of Phi at the limit memories.

    At a finite ``n`` with every channel weight constant (so F^(s), J and Phi's point are the same at
    every s), the sums run to n with the scales b_l^(n+1), and A[M1] becomes
    sum_l dPhi_l . b_l^(n+1) grad g_l [h sum_l' E_ll' U_l'] with U_l' = dPhi_l' . grad g_l' F and
    E_ll' = sum_{s<n} omega_l(n, s) b_l'^(s+1) sum_{j<=s} j beta_l'^j (M1^(s) written out)."""
    channels = list(optimizer.channels())
    if n is not None and optimizer.linear and not all(ch.constant_weight for ch in channels):
        return _linear_finite_second_order(optimizer, channels, gradient, frozen, theta, lr, n)
    names = [ch.name for ch in channels]
    limit = [float(ch.weight(math.inf)) for ch in channels]
    finite = n is not None and all(ch.constant_weight for ch in channels)
    scale = [float(ch.b(n + 1 if finite else math.inf)) for ch in channels]

    def weights(power_sum):
        return [b * power_sum(ch.decay) if ch.decay > 0 else 0.0 for ch, b in zip(channels, scale)]

    if finite:
        k = np.arange(1, n + 1, dtype=float)
        first = weights(lambda beta: float(np.sum(k * beta ** k)))                    # sum_{k<=n} k beta^k
        triangular = weights(lambda beta: float(np.sum(k * (k + 1) / 2 * beta ** k)))
        square = weights(lambda beta: float(np.sum(k * k * beta ** k)))
    else:
        first = weights(lambda beta: beta / (1.0 - beta) ** 2)                 # sum_k k beta^k
        triangular = weights(lambda beta: beta / (1.0 - beta) ** 3)            # sum_k k(k+1)/2 beta^k
        square = weights(lambda beta: beta * (1.0 + beta) / (1.0 - beta) ** 3)  # sum_k k^2 beta^k

    signals = _Signals(channels, gradient, frozen, theta)
    point = {name: a * s0 for name, a, s0 in zip(names, limit, signals.base)}
    tangents = signals.tangents

    def d_phi(coefficients, parts):
        """dPhi/dm at the limit memories, applied to {m_l: coefficient_l * part_l}."""
        tangent = {name: c * part for name, c, part in zip(names, coefficients, parts)}
        return _flat(jvp(optimizer.combine, point, tangent)[1], theta)

    F = np.asarray(optimizer.combine(point), dtype=float).reshape(np.shape(theta))
    along_F = tangents(F)
    JF = d_phi(limit, along_F)
    if finite:
        A_M1 = _finite_history_term(channels, scale, n, F, along_F, tangents, d_phi, lr)
    else:
        M1 = lr * d_phi(first, along_F)
        A_M1 = d_phi(first, tangents(M1))
    B_JF = d_phi(triangular, tangents(JF))
    # C[F]: Phi's second derivative along the k-weighted tangents, plus its first derivative along the
    # signals' own second derivatives, which carry sum_k k^2 beta^k
    curvature = signals.second(F, F)
    moved = {name: c * part for name, c, part in zip(names, first, along_F)}
    phi_second = _flat(jvp(lambda t: jvp(lambda r: optimizer.combine(
        {name: point[name] + r * moved[name] for name in names}), t, 1.0)[1], 0.0, 1.0)[1], theta)
    C_F = 0.5 * (phi_second + d_phi(square, curvature))
    return lr * A_M1 + lr ** 2 * B_JF + lr ** 2 * C_F


def _linear_finite_second_order(optimizer, channels, gradient, frozen, theta, lr, n):
    """The exact M2^(n) for a linear Phi whose channel weights a_l(s) fill up with s (heavy-ball, Nesterov,
    Lion-K with K = |x|^2/2).  With G_l = Phi_l(g_l(theta)) and Y_l1l2 = Phi_l1(grad g_l1 . G_l2), every
    vector in the finite-n formula is a combination of the G's and Y's with scalar weights built from the
    prefix sums P_l(t) = sum_{r<t} a_l(r):
        v_k = sum_l A_l(k) G_l,  A_l(k) = P_l(n) - P_l(n-k),
        M1^(s) = h sum_l1l2 w_l1l2(s) Y_l1l2,  w_l1l2(s) = b_l1^(s+1) sum_{j<=s} beta_l1^j (P_l2(s) - P_l2(s-j)),
        J^(s) v_{n-s} = sum_l1l2 a_l1(s) A_l2(n-s) Y_l1l2,
        M2^(n) = sum_l b_l^(n+1) Phi_l(grad g_l . z_l) + h^2/2 sum_l b_l^(n+1) Phi_l(sum_l2l3 S_l,l2l3 grad^2 g_l[G_l2, G_l3]),
        z_l = h^2 sum_l1l2 [sum_s omega_l(n, s) (w_l1l2(s) + a_l1(s) A_l2(n-s))] Y_l1l2,  S = sum_k beta_l^k A_l2(k) A_l3(k)."""
    from scipy.signal import lfilter
    if n == 0:
        return np.zeros_like(theta)
    names = [ch.name for ch in channels]
    count = len(channels)
    signals = _Signals(channels, gradient, frozen, theta)
    base = signals.base

    def phi(i, part):
        """Phi_l(part) for channel i alone (Phi is linear)."""
        memories = {name: (part if j == i else np.zeros_like(base[j])) for j, name in enumerate(names)}
        return _flat(optimizer.combine(memories), theta)

    G = [phi(i, base[i]) for i in range(count)]
    used = [i for i in range(count) if np.any(G[i])]
    along = {l2: signals.tangents(G[l2]) for l2 in used}                                     # grad g . G_l2
    Y = {(l1, l2): phi(l1, along[l2][l1]) for l1 in range(count) for l2 in used}
    s = np.arange(n, dtype=float)
    a = [np.asarray(ch.weight(s), dtype=float) for ch in channels]                          # a_l(s), s < n
    P = [np.concatenate([[0.0], np.cumsum(ai)]) for ai in a]                               # P_l(t), t <= n
    memory = [i for i, ch in enumerate(channels) if ch.decay > 0]
    total = np.zeros_like(theta)
    k = np.arange(1, n + 1, dtype=float)
    for c in memory:
        beta = channels[c].decay
        b_n = float(channels[c].b(n + 1.0))
        omega = history_weights(beta, n, s)                                        # sum_{k=n-s..n} beta^k
        z = np.zeros_like(theta)
        for l1 in range(count):                  # J^(s) reads every channel; M1^(s) only those with memory
            beta1, b1 = channels[l1].decay, np.asarray(channels[l1].b(s + 1.0), dtype=float)
            geometric = beta1 * (1.0 - np.power(beta1, s)) / (1.0 - beta1)        # sum_{j=1..s} beta1^j
            for l2 in used:
                convolution = lfilter([0.0, beta1], [1.0, -beta1], P[l2][:n])    # sum_{j=1..s} beta1^j P(s-j)
                w = b1 * (P[l2][:n] * geometric - convolution)
                weight = float(omega @ (w + a[l1] * (P[l2][n] - P[l2][:n])))
                z = z + weight * Y[(l1, l2)]
        z = lr ** 2 * z
        total = total + b_n * phi(c, signals.tangents(z)[c])
        A = {l2: P[l2][n] - P[l2][n - k.astype(int)] for l2 in used}                   # A_l2(k), k = 1..n
        curvature = np.zeros_like(base[c])
        for i2, l2 in enumerate(used):
            for l3 in used[i2:]:
                S = float(np.sum(np.power(beta, k) * A[l2] * A[l3])) * (1.0 if l2 == l3 else 2.0)
                if S:
                    curvature = curvature + S * signals.second(G[l2], G[l3])[c]
        total = total + 0.5 * lr ** 2 * b_n * phi(c, curvature)
    return total


class _Signals:
    """The channels' signals g_l stacked into one vector, at theta: their values there (``base``), their
    tangents along u (one loss HVP, through the recorded gradient) and their second derivatives
    (through the gradient autograd can differentiate again: third derivatives of the loss)."""

    def __init__(self, channels, gradient, frozen, theta):
        self.channels, self.gradient, self.frozen, self.theta = channels, gradient, frozen, theta
        self.base = [np.asarray(ch.signal(theta, frozen.value), dtype=float) for ch in channels]
        self.cuts = np.cumsum([0] + [b.size for b in self.base])

    def at(self, x, gradient):
        g = gradient(x)
        return anp.concatenate([anp.ravel(ch.signal(x, g)) for ch in self.channels])

    def split(self, flat) -> List:
        flat = np.asarray(flat, dtype=float)
        return [flat[self.cuts[i]:self.cuts[i + 1]].reshape(b.shape) for i, b in enumerate(self.base)]

    def tangents(self, u) -> List:
        """grad g_l . u for every channel: one JVP of the stacked signals (a loss HVP)."""
        return self.split(jvp(lambda x: self.at(x, self.frozen), self.theta, u)[1])

    def second(self, u, w) -> List:
        """grad^2 g_l [u, w] for every channel: second directional derivatives, polarized where u is not w."""
        def along(d):
            return np.asarray(jvp(lambda t: jvp(lambda r: self.at(self.theta + r * d, self.gradient), t, 1.0)[1],
                                  0.0, 1.0)[1], dtype=float)

        return self.split(along(u) if u is w else 0.25 * (along(u + w) - along(u - w)))


def _cumulative_k_beta(beta: float, n: int) -> np.ndarray:
    """sum_{j<=s} j beta^j for s = 0, ..., n-1 (summed, not the closed form: no cancellation)."""
    j = np.arange(1, n, dtype=float)
    return np.concatenate([[0.0], np.cumsum(j * np.power(beta, j))])


def _finite_history_term(channels, scale, n, F, along_F, tangents, d_phi, lr):
    """sum_l dPhi_l . b_l^(n+1) grad g_l [sum_s omega_l(n, s) M1^(s)] / h, with M1^(s) = h sum_l' e_l'(s) U_l'
    (every channel weight constant: Phi's point, F and J are the same at every s)."""
    memory = [i for i, ch in enumerate(channels) if ch.decay > 0]
    if n == 0 or not memory:
        return np.zeros_like(F)
    s = np.arange(n, dtype=float)

    def only(i, part):
        return [part if j == i else np.zeros_like(along_F[j]) for j in range(len(channels))]

    units = {i: d_phi([1.0] * len(channels), only(i, along_F[i])) for i in memory}      # U_l'
    # e_l'(s) = b_l'^(s+1) sum_{j<=s} j beta_l'^j
    e = {i: np.asarray(channels[i].b(s + 1.0), dtype=float) * _cumulative_k_beta(channels[i].decay, n)
         for i in memory}
    total = None
    for i in memory:
        omega = history_weights(channels[i].decay, n, s)                            # sum_{k=n-s..n} beta^k
        shift = lr * sum(float(omega @ e[j]) * units[j] for j in memory)       # sum_s omega M1^(s) / h
        part = [np.zeros_like(x) for x in along_F]
        part[i] = scale[i] * tangents(shift)[i]
        term = d_phi([1.0] * len(channels), part)
        total = term if total is None else total + term
    return total


# ----------------------------------------------------------------------------
# History form, for optimizers with a short window: the finite-n sums written out
# ----------------------------------------------------------------------------


def _window_second_order(optimizer, gradient, theta, lr):
    """M2^(n) at an n past the window's start-up (where F^(n) no longer depends on n), by the
    finite-n formula: every F^(s), M1^(s) and J^(s) v_{n-s} the window reads."""
    reach = max(optimizer.window - 1, 0)
    if reach == 0:
        return np.zeros_like(theta)
    n = 2 * reach + 1                  # every s in [n - reach, n) also reads a full window

    def F_at(x, s):
        return optimizer.memoryless_direction(x, gradient, s)

    directions = {s: np.asarray(F_at(theta, s), dtype=float) for s in range(n - 2 * reach, n)}

    def first_order_at(s):
        """M1^(s)(theta) by Eq. (12), written out over the window."""
        k_max = min(reach, s)
        v, vs = np.zeros_like(theta), {}
        for k in range(1, k_max + 1):
            v = v + directions[s - k]
            vs[k] = v

        def history_at(t):
            history = optimizer.constant_history(theta, s)
            for k in range(1, k_max + 1):
                history[k] = theta + t * vs[k]
            return optimizer.direction(history, gradient)

        return lr * _flat(jvp(history_at, 0.0, 1.0)[1], theta)

    v = {0: np.zeros_like(theta)}
    for k in range(1, reach + 1):
        v[k] = v[k - 1] + directions[n - k]
    inner = {}                          # s -> M1^(s) + h J^(s) v_{n-s}
    for s in range(n - reach, n):
        Jv = _flat(jvp(lambda x, s=s: F_at(x, s), theta, v[n - s])[1], theta)
        inner[s] = first_order_at(s) + lr * Jv
    second_part = {}
    total = np.zeros_like(theta)
    for k in range(1, reach + 1):
        total = total + inner[n - k]
        second_part[k] = lr * total          # delta2_k = h sum_{s=n-k..n-1} inner[s]

    def history_with(t, shifts):
        history = optimizer.constant_history(theta, n)
        for k in range(1, reach + 1):
            history[k] = theta + t * shifts[k]
        return optimizer.direction(history, gradient)

    first_shifts = {k: lr * v[k] for k in range(1, reach + 1)}
    along_second = _flat(jvp(lambda t: history_with(t, second_part), 0.0, 1.0)[1], theta)
    curvature = _flat(jvp(lambda t: jvp(lambda u: history_with(u, first_shifts), t, 1.0)[1], 0.0, 1.0)[1], theta)
    return along_second + 0.5 * curvature


def _flat(value, theta):
    return np.asarray(value, dtype=float).reshape(np.shape(theta))
