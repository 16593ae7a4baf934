"""The correction engine: M^(n)(theta) of Eq. (12), its n -> infinity limit and its channels.

    M^(n)(theta) = h sum_{k=1..n} [dF^(n)/dtheta^(n-k)](theta, ..., theta) . v_k,
    v_k = sum_{s=n-k..n-1} F^(s)(theta)

is one directional derivative of F^(n) at the constant history, in the history
direction (0, v_1, ..., v_n).  Two ways to take it:

* ``history`` -- for ANY :class:`~memless.MemoryOptimizer`: forward-mode
  autograd JVPs of ``direction`` along that history direction, block by block
  of k, stopping where memory has decayed below ``tol`` (never a d x d matrix);
* ``momentum`` -- for a :class:`~memless.MomentumOptimizer`: the same sum done
  in closed form over the channels (Remark 3.2, Section 3.2); one JVP of the
  channel signals shared by all channels plus a JVP of Phi per channel, at a cost
  independent of n.  This is also where the per-channel split M = sum_l M_l
  comes from.
"""
import math
import warnings
from dataclasses import dataclass, field
from typing import Optional

import autograd.numpy as anp
import numpy as np
from autograd import make_jvp

from .core import MomentumOptimizer
from .errors import MemlessError, MemoryTruncationWarning
from .problem import check_lr, check_n, check_optimizer, check_theta, objective

METHODS = ("auto", "momentum", "history")

# ----------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------


@dataclass
class CorrectionInfo:
    """How a correction was computed (``full_output=True``)."""

    n: Optional[int]               #: the step n, None for the limit
    method: str                    #: "momentum" or "history"
    terms: int = 0                 #: history terms k summed (history method)
    truncated: bool = False        #: True if k stopped before n because memory had decayed
    tail: float = 0.0              #: norm of the last block summed, relative to |M|
    evaluations: int = 0           #: finite-n directions F^(s) evaluated
    converged: bool = True         #: for the history-method limit: M^(n) settled within tol
    notes: list = field(default_factory=list)


def correction(optimizer, loss, theta, lr, n=None, *, method="auto", tol=1e-13,
               max_history=100_000, full_output=False):
    """The memory correction M^(n)(theta) of Eq. (12), or its limit M(theta) when ``n is None``.

    The memoryless iteration ``theta <- theta - lr [F^(n)(theta) + M^(n)(theta)]`` (Eq. 4)
    tracks the optimizer to O(lr^2) (Theorem 3.3).

    Parameters
    ----------
    optimizer : MemoryOptimizer
    loss : callable theta -> scalar, written with ``autograd.numpy``
    theta : 1-D array
    lr : float > 0, the learning rate h
    n : int >= 0 or None (default) for the n -> infinity limit
    method : "auto" (the momentum closed form when available), "momentum" or "history"
    tol : relative size below which decayed memory is dropped
    max_history : most history terms the history method sums; reaching it while
        memory is still above ``tol`` issues a :class:`MemoryTruncationWarning`
    full_output : also return a :class:`CorrectionInfo`

    Example
    -------
    >>> import memless, numpy as np
    >>> opt = memless.get_optimizer("heavy-ball", beta=0.5)
    >>> M = memless.correction(opt, lambda t: (t ** 4).sum() / 4, np.array([1.0, 2.0]), lr=0.01)
    >>> np.allclose(M, 0.01 * 0.5 / 0.5 ** 3 * np.array([3.0, 12.0 * 8.0]))   # h b/(1-b)^3 H g
    True
    """
    terms, info = _corrections(optimizer, loss, theta, lr, n, method, tol, max_history, split=False)
    total = terms["total"]
    return (total, info) if full_output else total


def correction_terms(optimizer, loss, theta, lr, n=None, *, tol=1e-13):
    """The per-channel decomposition M = sum_l M_l (Section 3.2) of a momentum optimizer.

    Returns ``{channel name: vector}``; channels without memory (decay 0) map to zeros.

    >>> import memless, numpy as np
    >>> opt = memless.get_optimizer("adam", beta1=0.9, beta2=0.999)
    >>> parts = memless.correction_terms(opt, lambda t: (t ** 4).sum(), np.ones(3), lr=1e-3)
    >>> np.allclose(sum(parts.values()), memless.correction(opt, lambda t: (t ** 4).sum(), np.ones(3), lr=1e-3))
    True
    """
    if not isinstance(optimizer, MomentumOptimizer):
        raise MemlessError(
            f"correction_terms needs a MomentumOptimizer (channels); {type(optimizer).__name__} "
            "defines only direction(): use memless.correction for its total M")
    terms, _ = _corrections(optimizer, loss, theta, lr, n, "momentum", tol, None, split=True)
    return terms


def _corrections(optimizer, loss, theta, lr, n, method, tol, max_history, split):
    check_optimizer(optimizer)
    theta = check_theta(theta)
    lr = check_lr(lr)
    n = check_n(n)
    if method not in METHODS:
        raise MemlessError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    if method == "auto":
        method = "momentum" if isinstance(optimizer, MomentumOptimizer) else "history"
    if method == "momentum" and not isinstance(optimizer, MomentumOptimizer):
        raise MemlessError(f"method='momentum' needs a MomentumOptimizer; {type(optimizer).__name__} is not one")
    with np.errstate(all="ignore"):      # non-finite results are reported below, by name
        return _compute(optimizer, loss, theta, lr, n, method, tol, max_history, split)


def _compute(optimizer, loss, theta, lr, n, method, tol, max_history, split):
    obj = objective(loss, theta, linearize=True)
    if method == "momentum":
        terms, info = momentum_terms(optimizer, obj, theta, lr, n, tol, split=split), CorrectionInfo(n, "momentum")
        if split:
            terms["total"] = sum(terms.values())
    else:
        total, info = history_correction(optimizer, obj, theta, lr, n, tol, max_history)
        terms = {"total": total}
    for name, vector in terms.items():
        if not np.all(np.isfinite(vector)):
            raise MemlessError(
                f"the correction{'' if name == 'total' else ' term ' + repr(name)} is not finite at "
                f"theta={theta}; the optimizer's direction is not differentiable there")
    if not split:
        terms = {"total": terms["total"]}
    else:
        terms.pop("total")
    return terms, info


# ----------------------------------------------------------------------------
# Forward-mode helpers
# ----------------------------------------------------------------------------


def jvp(fun, x, direction):
    """(fun(x), d fun(x) . direction), by one forward-mode pass."""
    with warnings.catch_warnings():
        # a direction that does not depend on a channel (exact-sign Lion) is fine: its JVP is 0
        warnings.filterwarnings("ignore", "Output seems independent of input", UserWarning)
        return make_jvp(fun)(x)(direction)


def _as_float_array(value, like):
    return np.broadcast_to(np.asarray(value, dtype=float), np.shape(like)).copy()


# ----------------------------------------------------------------------------
# Momentum form: closed-form sums over the history (Remark 3.2, Section 3.2)
# ----------------------------------------------------------------------------


def memory_sum(beta, n):
    """c(n) = sum_{k=1..n} k beta^k (c(inf) = beta/(1-beta)^2): the weight of F in w = sum_k beta^k v_k."""
    if n is None or math.isinf(n):
        return beta / (1.0 - beta) ** 2
    if n * (1.0 - beta) < 50.0:
        # the closed form cancels catastrophically while beta^n is not small: sum directly
        k = np.arange(1, n + 1, dtype=float)
        return float(np.sum(k * np.power(beta, k)))
    return (beta * (1.0 - beta ** n) / (1.0 - beta) - n * beta ** (n + 1)) / (1.0 - beta)


def _history_weights(beta, n, s):
    """omega(n, s) = sum_{k=n-s..n} beta^k: the weight of F^(s) in w = sum_k beta^k v_k."""
    return (np.power(beta, n - s) - beta ** (n + 1)) / (1.0 - beta)


def _finite_n_directions(optimizer, channels, signals, n, tol):
    """Which finite-s directions F^(s)(theta), s < n, differ from the limit F enough to matter.

    F^(s)(theta) = Phi(a_l(s) g_l(theta)); it equals F(theta) once every a_l(s) has
    converged.  Returns (s values, relative deviation) of those worth evaluating.
    """
    memory = [ch for ch in channels if ch.decay > 0]
    chunk = 4096
    keep_s, start = [], 0
    while start < n:
        s = np.arange(start, min(n, start + chunk), dtype=float)
        deviation = np.zeros_like(s)
        for ch in channels:
            limit = float(ch.weight(math.inf))
            scale = abs(limit) if limit != 0 else 1.0
            deviation = np.maximum(deviation, np.abs(ch.weight(s) - limit) / scale)
        importance = np.zeros_like(s)
        for ch in memory:
            importance = np.maximum(importance, _history_weights(ch.decay, n, s) / memory_sum(ch.decay, n))
        keep = deviation * importance > tol
        keep_s.append(s[keep])
        if np.all(deviation < tol):
            break
        start += chunk
    return np.concatenate(keep_s) if keep_s else np.zeros(0)


def _rows(optimizer, channels, signals, s_values):
    """F^(s)(theta) for each s, as rows."""
    if optimizer.elementwise:
        m = {ch.name: ch.weight(s_values)[:, None] * sig[None, :] for ch, sig in zip(channels, signals)}
        return np.asarray(optimizer.combine(m), dtype=float).reshape(len(s_values), -1)
    rows = [optimizer.combine({ch.name: float(ch.weight(s)) * sig for ch, sig in zip(channels, signals)})
            for s in s_values]
    return np.asarray(rows, dtype=float).reshape(len(s_values), -1)


def _residuals(optimizer, channels, signals, memory, n, F, tol):
    """r_j = sum_{s<n} omega_j(n, s) (F^(s)(theta) - F(theta)) for each memory channel j (None where 0).

    Linear Phi: F^(s) = sum_l a_l(s) Phi(g_l alone), so the sum over s is a sum of
    scalars.  Otherwise the rows F^(s) are formed in chunks of bounded size.
    """
    s_values = _finite_n_directions(optimizer, channels, signals, n, tol)
    residual = [np.zeros_like(F) for _ in memory]
    if not len(s_values):
        return [None] * len(memory)
    omegas = [_history_weights(channels[i].decay, n, s_values) for i in memory]
    if optimizer.linear:
        for ch, sig in zip(channels, signals):
            deviation = ch.weight(s_values) - float(ch.weight(math.inf))
            if not np.any(deviation):
                continue
            alone = {other.name: (sig if other is ch else np.zeros_like(sig)) for other in channels}
            basis = np.asarray(optimizer.combine(alone), dtype=float).reshape(F.shape)
            for r, omega in zip(residual, omegas):
                r += float(omega @ deviation) * basis
    else:
        chunk = max(1, _CHUNK_ELEMENTS // F.size)
        for start in range(0, len(s_values), chunk):
            part = slice(start, start + chunk)
            deviations = _rows(optimizer, channels, signals, s_values[part]) - F[None, :]
            for r, omega in zip(residual, omegas):
                r += omega[part] @ deviations
    return [r if np.any(r) else None for r in residual]


#: most elements of F^(s) rows held at once by the finite-n sums
_CHUNK_ELEMENTS = 1 << 22


def momentum_terms(optimizer, obj, theta, lr, n, tol=1e-13, *, gradient=None, split=True):
    """{channel: M_l^(n)(theta)} for a MomentumOptimizer; ``n=None`` gives the limit M_l.

    M_l = h dPhi/dm_l(m^(n+1)) . [ b_l^(n+1) grad g_l(theta) . w_l ],
    w_l = sum_{k=1..n} beta_l^k v_k = c_l(n) F(theta) + sum_{s<n} omega_l(n, s) (F^(s)(theta) - F(theta)).

    ``gradient``: ``obj.frozen(theta, linearize=True)``, if already made (it holds the
    gradient and the Hessian-vector products at theta).  ``split=False`` returns
    only ``{"total": M}``, with one JVP of Phi instead of one per channel.
    """
    channels = list(optimizer.channels())
    frozen = obj.frozen(theta, linearize=True) if gradient is None else gradient
    g = frozen.value
    signals = [_as_float_array(ch.signal(theta, g), theta) for ch in channels]
    memory = [i for i, ch in enumerate(channels) if ch.decay > 0]
    if not memory or n == 0:
        zero = np.zeros_like(theta)
        return {ch.name: zero.copy() for ch in channels} if split else {"total": zero}

    limit_weights = [float(ch.weight(math.inf)) for ch in channels]
    F = np.asarray(optimizer.combine({ch.name: a * sig for ch, a, sig in zip(channels, limit_weights, signals)}),
                   dtype=float)
    # w_l, the history direction each memory channel's signal is differentiated along
    if n is None:
        point = {ch.name: a * sig for ch, a, sig in zip(channels, limit_weights, signals)}
        b_now = [float(channels[i].b(math.inf)) for i in memory]
        residual = [None] * len(memory)
    else:
        point = {ch.name: float(ch.weight(n)) * sig for ch, sig in zip(channels, signals)}
        b_now = [float(channels[i].b(n + 1)) for i in memory]
        residual = _residuals(optimizer, channels, signals, memory, n, F, tol)
    weights = [memory_sum(channels[i].decay, n) for i in memory]

    # grad g_l . w_l by forward mode, one loss Hessian-vector product per distinct w_l:
    # channels whose finite-n residual vanishes (bias-corrected EMAs, the limit) share
    # one JVP along F; a channel with a residual gets one JVP along its own w_l.
    def signals_at(x, which):
        gx = frozen(x)
        return anp.concatenate([anp.ravel(channels[i].signal(x, gx)) for i in which])

    along = [None] * len(memory)
    shared = [j for j, r in enumerate(residual) if r is None]
    if shared:
        _, tangent = jvp(lambda x: signals_at(x, [memory[j] for j in shared]), theta, F)
        for j, part in zip(shared, np.split(np.asarray(tangent, dtype=float), len(shared))):
            along[j] = weights[j] * part
    for j, r in enumerate(residual):
        if r is not None:
            _, tangent = jvp(lambda x, i=memory[j]: signals_at(x, [i]), theta, weights[j] * F + r)
            along[j] = np.asarray(tangent, dtype=float)
    tangents = {channels[i].name: b * t.reshape(np.shape(point[channels[i].name]))
                for i, b, t in zip(memory, b_now, along)}

    # dPhi/dm_l . tangent_l: per channel for the split, at once for the total
    if not split:
        names = list(tangents)

        def phi_along(t):
            return optimizer.combine({**point, **{k: point[k] + t * tangents[k] for k in names}})

        return {"total": lr * _as_float_array(jvp(phi_along, 0.0, 1.0)[1], theta)}
    terms = {ch.name: np.zeros_like(theta) for ch in channels}
    for name, tangent in tangents.items():
        def phi(x, name=name):
            return optimizer.combine({**point, name: x})

        terms[name] = lr * _as_float_array(jvp(phi, point[name], tangent)[1], theta)
    return terms


# ----------------------------------------------------------------------------
# History form: Eq. (12) for any MemoryOptimizer
# ----------------------------------------------------------------------------


def history_correction(optimizer, obj, theta, lr, n, tol=1e-13, max_history=100_000):
    """(M^(n)(theta), CorrectionInfo) by JVPs of ``optimizer.direction`` along the history.

    ``n=None``: the limit, as M^(n) for n = 64, 128, ... until it settles within ``tol``
    (relative, with a floor of 1e-10) or n reaches ``max_history``.
    """
    if n is not None:
        return _history_correction_at(optimizer, obj, theta, lr, n, tol, max_history)
    settle = max(tol, 1e-10)
    previous, n_try = None, 64
    while True:
        M, info = _history_correction_at(optimizer, obj, theta, lr, n_try, tol, max_history)
        if previous is not None and np.max(np.abs(M - previous)) <= settle * max(np.max(np.abs(M)), 1e-300):
            break
        if n_try >= max_history:
            info.converged = False
            warnings.warn(
                f"{optimizer._label()}: M^(n) has not settled by n={n_try} (max_history); "
                "the limit correction is approximate", MemoryTruncationWarning, stacklevel=3)
            break
        previous, n_try = M, min(2 * n_try, max_history)
    info.n = None
    return M, info


def _history_correction_at(optimizer, obj, theta, lr, n, tol, max_history):
    grad = obj.frozen(theta, linearize=True)
    info = CorrectionInfo(n, "history")
    total = np.zeros_like(theta)
    if n == 0:
        return total, info
    reach = n if optimizer.window is None else min(n, max(optimizer.window - 1, 0))
    limit = min(reach, max_history)
    v = np.zeros_like(theta)
    directions = {}   # k -> v_k
    k_done, block = 0, 8
    while k_done < limit:
        k_end = min(limit, k_done + block)
        for k in range(k_done + 1, k_end + 1):
            v = v + np.asarray(optimizer.memoryless_direction(theta, grad, n - k), dtype=float)
            directions[k] = v
            info.evaluations += 1

        def along_history(t, lo=k_done + 1, hi=k_end):
            history = [theta] * (n + 1)
            for k in range(lo, hi + 1):
                history[k] = theta + t * directions[k]
            return optimizer.direction(history, grad)

        part = lr * _as_float_array(jvp(along_history, 0.0, 1.0)[1], theta)
        directions.clear()
        total = total + part
        info.terms = k_end
        size = np.max(np.abs(part))
        info.tail = float(size / max(np.max(np.abs(total)), 1e-300))
        k_done, block = k_end, min(2 * block, 4096)
        if k_done >= 32 and size <= tol * np.max(np.abs(total)):
            break
    info.truncated = info.terms < reach
    if info.terms >= max_history and info.terms < reach and info.tail > tol:
        warnings.warn(
            f"{optimizer._label()}: history cut at max_history={max_history} terms while the memory "
            f"still contributes {info.tail:.1e} of |M|; raise max_history", MemoryTruncationWarning, stacklevel=4)
    return total, info
