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

The engine (this module and :mod:`memless.engine.second_order`, with :mod:`memless.contract.optimizer`)
is the one place that knows the two forms apart; every other module asks the optimizer's public methods.
"""
from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import autograd.numpy as anp
import numpy as np

from .._views import Viewable
from ..checks import check_budget, check_choice, check_flag, check_lr, check_n, check_positive, history_work, shown
from ..contract.optimizer import MemoryOptimizer, MomentumOptimizer, history_weights, memory_sum
from ..errors import DerivativeWarning, MemlessError, MemoryTruncationWarning, OptimizerError
from ..numerics.autodiff import jvp
from .objective import LossLike, Objective, objective, problem

METHODS = ("auto", "momentum", "history")
#: most history terms the history method sums by default
MAX_HISTORY = 100_000

# ----------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------


@dataclass
class CorrectionInfo(Viewable):
    """How a correction was computed (``full_output=True``)."""

    n: Optional[int]               #: the step n, None for the limit
    method: str                    #: "momentum" or "history"
    terms: int = 0                 #: history terms k summed (history method)
    truncated: bool = False        #: True if k stopped before n because memory had decayed
    tail: float = 0.0              #: norm of the last block summed, relative to |M|
    evaluations: int = 0           #: finite-n directions F^(s) evaluated
    converged: bool = True         #: for the history-method limit: M^(n) settled within tol


def correction(optimizer: MemoryOptimizer, loss: LossLike, theta, lr: float, n: Optional[int] = None, *,
               method: str = "auto", tol: float = 1e-13, max_history: int = MAX_HISTORY,
               full_output: bool = False, order: int = 1):
    """The memory correction M^(n)(theta) of Eq. (12), or its limit M(theta) when ``n is None``.

    The memoryless iteration ``theta <- theta - lr [F^(n)(theta) + M^(n)(theta)]`` (Eq. 4)
    tracks the optimizer to O(lr^2) (Theorem 3.3).  With ``order=2`` the result is
    M1^(n) + M2, the second-order term M2 (beyond the paper: :mod:`memless.engine.second_order`)
    taken in its limit; the iteration then tracks the optimizer to O(lr^3).

    Parameters
    ----------
    optimizer : MemoryOptimizer
        The optimizer (``memless.get_optimizer(name)``, a plugin's, or your own class).
    loss : callable or str
        A function theta -> scalar written with ``autograd.numpy``, or a reference-loss name.
    theta : array or None
        The point (None with a reference-loss name: its start point).
    lr : float
        The learning rate h > 0.
    n : int or None
        The step n >= 0, or None (default) for the n -> infinity limit.
    method : str
        "auto" (the momentum closed form when available), "momentum" or "history".
    tol : float
        Relative size below which decayed memory is dropped.
    max_history : int
        Most history terms the history method sums; reaching it while memory is still above
        ``tol`` issues a :class:`MemoryTruncationWarning`.
    full_output : bool
        Also return a :class:`CorrectionInfo`.
    order : int
        1 (Eq. 12, the default) or 2 (adds M2; needs the loss's third derivatives).

    Examples
    --------
    >>> import memless, numpy as np
    >>> opt = memless.get_optimizer("heavy-ball", beta=0.5)
    >>> M = memless.correction(opt, lambda t: (t ** 4).sum() / 4, np.array([1.0, 2.0]), lr=0.01)
    >>> np.allclose(M, 0.01 * 0.5 / 0.5 ** 3 * np.array([3.0, 12.0 * 8.0]))   # h b/(1-b)^3 H g
    True
    """
    full_output = check_flag(full_output, "full_output")
    order = check_order(order)
    terms, info = _corrections(optimizer, loss, theta, lr, n, method, tol, max_history, split=False, order=order)
    total = terms["total"] + terms.get(SECOND_ORDER, 0.0)
    return (total, info) if full_output else total


def correction_terms(optimizer: MemoryOptimizer, loss: LossLike, theta, lr: float, n: Optional[int] = None, *,
                     tol: float = 1e-13, order: int = 1) -> Dict[str, np.ndarray]:
    """The split M = sum of terms, named as ``optimizer.terms()`` names them.

    A :class:`~memless.MomentumOptimizer` has one term per channel (Section 3.2; channels
    without memory map to zeros); any other optimizer has the one term ``"memory"``.
    ``order=2`` adds the term ``"second-order"``, M2 (:mod:`memless.engine.second_order`).

    >>> import memless, numpy as np
    >>> opt = memless.get_optimizer("adam", beta1=0.9, beta2=0.999)
    >>> parts = memless.correction_terms(opt, lambda t: (t ** 4).sum(), np.ones(3), lr=1e-3)
    >>> np.allclose(sum(parts.values()), memless.correction(opt, lambda t: (t ** 4).sum(), np.ones(3), lr=1e-3))
    True
    """
    terms, _ = _corrections(optimizer, loss, theta, lr, n, "auto", tol, MAX_HISTORY, split=True,
                            order=check_order(order))
    return terms


#: the name of M2 among the terms (order=2)
SECOND_ORDER = "second-order"


def check_order(order) -> int:
    """1 or 2, else a one-line error."""
    if isinstance(order, bool) or order not in (1, 2):
        raise MemlessError(f"order must be 1 (Eq. 12) or 2 (with the second-order term M2), got {order!r}")
    return int(order)


def terms_at(optimizer: MemoryOptimizer, obj: Objective, theta: np.ndarray, lr: float,
             n: Optional[int] = None, *, gradient=None, split: bool = True, tol: float = 1e-13,
             infos: Optional[list] = None):
    """The correction terms at an already checked point (no input checks): the analyses' entry.

    ``split=False`` returns ``{"total": M}``; ``gradient`` is ``obj.frozen(theta, linearize=True)``
    if already made.  Non-finite results are returned as they are.
    """
    if isinstance(optimizer, MomentumOptimizer):
        return momentum_terms(optimizer, obj, theta, lr, n, tol, gradient=gradient, split=split)
    total, info = history_correction(optimizer, obj, theta, lr, n, tol)
    if infos is not None:
        infos.append(info)
    return {"total" if not split else optimizer.terms()[0].name: total}


def _corrections(optimizer, loss, theta, lr, n, method, tol, max_history, split, order=1):
    optimizer, loss, theta, _ = problem(optimizer, loss, theta)
    lr = check_lr(lr)
    if order == 2:
        from .second_order import check_second_order
        check_second_order(optimizer)
    n = check_n(n)
    method = check_choice(method, METHODS, "method")
    tol = check_positive(tol, "tol")
    max_history = check_n(max_history, allow_none=False, name="max_history")
    if method == "auto":
        method = "momentum" if isinstance(optimizer, MomentumOptimizer) else "history"
    if method == "momentum" and not isinstance(optimizer, MomentumOptimizer):
        raise MemlessError(f"method='momentum' needs a MomentumOptimizer; {optimizer.label} defines only direction()")
    if method == "history" and n is not None:
        check_budget(f"M^(n) at n={n} by the history method (it reads n + 1 entries per term)",
                     steps=(n + 1) * min(n, 32) if optimizer.window is None else n + 1)
    with np.errstate(all="ignore"):      # non-finite results are reported below, by name
        obj = objective(loss, theta, linearize=True)
        try:
            if method == "momentum":
                terms = momentum_terms(optimizer, obj, theta, lr, n, tol, split=split)
                info = CorrectionInfo(n, "momentum")
            else:
                total, info = history_correction(optimizer, obj, theta, lr, n, tol, max_history)
                terms = {optimizer.terms()[0].name if split else "total": total}
        except MemlessError:
            raise
        except Exception as exc:          # the optimizer's own code: say whose, and what to check
            raise OptimizerError(
                f"{optimizer.label}: differentiating its direction raised {type(exc).__name__}: {exc} (for an "
                "optimizer written as a memless class: write direction()/combine() with autograd.numpy, returning "
                "theta's shape; for a black box: its step raised)") from exc
    if order == 2:
        from .second_order import second_order_correction
        try:
            with np.errstate(all="ignore"):
                terms[SECOND_ORDER] = second_order_correction(optimizer, obj, theta, lr, n)
        except MemlessError:
            raise
        except (OverflowError, FloatingPointError):
            raise MemlessError(f"{optimizer.label}: the second-order term overflows at lr={lr:.3g}: it is lr^2 times "
                               "finite derivatives, and that product is beyond floating point; use a smaller lr") from None
        except Exception as exc:
            raise OptimizerError(f"{optimizer.label}: the second-order term raised {type(exc).__name__}: {exc} "
                                 "(it differentiates direction()/combine() twice: write them with autograd.numpy)"
                                 ) from exc
    for name, vector in terms.items():
        if not np.all(np.isfinite(vector)) and lr > 1.0 and (name == SECOND_ORDER or _finite_at_unit_lr(
                optimizer, obj, theta, n, method, tol, max_history)):
            raise MemlessError(f"{optimizer.label}: the correction overflows at lr={lr:.3g}: it is lr times a finite "
                               "derivative, and that product is beyond floating point; use a smaller lr")
        if not np.all(np.isfinite(vector)):
            raise MemlessError(
                f"{optimizer.label}: the correction{'' if name == 'total' else ' term ' + repr(name)} is not "
                f"finite at theta={shown(theta)}; the optimizer's direction is not differentiable there")
    if not split:
        return {key: terms[key] for key in ("total", SECOND_ORDER) if key in terms}, info
    return terms, info


def history_entries(optimizer: MemoryOptimizer, steps: int) -> int:
    """History entries that exact corrections M^(n), n < steps, read (0 for a MomentumOptimizer, whose
    closed form costs the same at every n): what a corrected memoryless path costs beyond its
    corrections, for the shared budget."""
    if isinstance(optimizer, MomentumOptimizer):
        return 0
    return history_work(steps, optimizer.window)


def _finite_at_unit_lr(optimizer, obj, theta, n, method, tol, max_history) -> bool:
    """Whether the correction is finite at lr = 1 (M is linear in lr: then only the product overflowed)."""
    try:
        with np.errstate(all="ignore"):
            if method == "momentum":
                total = momentum_terms(optimizer, obj, theta, 1.0, n, tol, split=False)["total"]
            else:
                total, _ = history_correction(optimizer, obj, theta, 1.0, n, tol, max_history)
        return bool(np.all(np.isfinite(total)))
    except Exception:
        return False


def _as_float_array(value, like):
    return np.broadcast_to(np.asarray(value, dtype=float), np.shape(like)).copy()


def _scaled(lr, value, like):
    """lr * value as a float array of like's shape (one new array: large vectors are dear to allocate)."""
    value = np.asarray(value, dtype=float)
    return lr * (value if value.shape == np.shape(like) else np.broadcast_to(value, np.shape(like)))


def _signal_array(value, theta):
    """A channel signal as a float array: a scalar broadcasts to theta's shape; any other shape is
    kept (Shampoo's signals G G^T are not theta-shaped)."""
    value = np.asarray(value, dtype=float)
    return _as_float_array(value, theta) if value.ndim == 0 else value.ravel() if value.ndim > 1 else value


# ----------------------------------------------------------------------------
# Momentum form: closed-form sums over the history (Remark 3.2, Section 3.2)
# ----------------------------------------------------------------------------


def _finite_n_steps(channels, n, tol):
    """The steps s < n whose direction F^(s)(theta) differs from the limit F enough to matter.

    F^(s)(theta) = Phi(a_l(s) g_l(theta)); it equals F(theta) once every a_l(s) has converged,
    and at every s when no a_l varies (:attr:`Channel.constant_weight`: AdamW's channels).
    """
    memory = [ch for ch in channels if ch.decay > 0]
    varying = [ch for ch in channels if not ch.constant_weight]
    keep_s, start = [], 0
    while varying and start < n:
        s = np.arange(start, min(n, start + _CHUNK_STEPS), dtype=float)
        deviation = np.zeros_like(s)
        for ch in varying:
            limit = float(ch.weight(math.inf))
            scale = abs(limit) if limit != 0 else 1.0
            deviation = np.maximum(deviation, np.abs(ch.weight(s) - limit) / scale)
        importance = np.zeros_like(s)
        for ch in memory:
            importance = np.maximum(importance, history_weights(ch.decay, n, s) / memory_sum(ch.decay, n))
        keep_s.append(s[deviation * importance > tol])
        if np.all(deviation < tol):
            break
        start += _CHUNK_STEPS
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
    s_values = _finite_n_steps(channels, n, tol)
    residual = [np.zeros_like(F) for _ in memory]
    if not len(s_values):
        return [None] * len(memory)
    omegas = [history_weights(channels[i].decay, n, s_values) for i in memory]
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
        interpolated = optimizer.elementwise and _interpolated_tail(optimizer, channels, signals, s_values, F,
                                                                    omegas, residual)
        chunk = max(1, _CHUNK_ELEMENTS // F.size)
        for start in range(0, 0 if interpolated else len(s_values), chunk):
            part = slice(start, start + chunk)
            deviations = _rows(optimizer, channels, signals, s_values[part]) - F[None, :]
            for r, omega in zip(residual, omegas):
                r += omega[part] @ deviations
    return [r if np.any(r) else None for r in residual]


#: the numbers of Chebyshev nodes tried, in turn, for the polynomial that stands for F^(s) (empty: none)
INTERPOLATION_NODES = (17, 33, 65)      # nested: each grid holds the previous one
#: the interpolant must reproduce F^(s) - F between its nodes to this (relative to its largest value)
INTERPOLATION_CHECK = 1e-14
#: numbers per block of rows evaluated at once by the interpolation (about 2 MB)
_INTERPOLATION_BLOCK = 1 << 18


def _interpolated_tail(optimizer, channels, signals, s_values, F, omegas, residual) -> bool:
    """Add to ``residual`` the sums over the rows F^(s) through a polynomial in the channel weights;
    False (and ``residual`` untouched) where that is not accurate: then every row is formed.

    An elementwise F^(s)(theta) = Phi(w_1(s) g_1, ..., w_L(s) g_L) depends on s only through the
    weights w(s).  Where they deviate from their limit along one direction u, w(s) = w(inf) + e(s) u,
    F^(s) - F = f(e(s)) with f analytic on the range of e; f is interpolated at Chebyshev nodes, so
    the thousands of rows (Lion: rho2^s > tol up to s ~ 2750) cost a few dozen evaluations of Phi.
    The interpolant is checked against f at points between its nodes, near both ends and in the
    middle; it is used only where it misses by at most INTERPOLATION_CHECK of f's largest value."""
    limit = np.array([float(ch.weight(math.inf)) for ch in channels])
    deviation = np.array([np.asarray(ch.weight(s_values), dtype=float) - w for ch, w in zip(channels, limit)])
    u = deviation[:, int(np.argmax(np.max(np.abs(deviation), axis=0)))]
    if not np.any(u):
        return False
    e = u @ deviation / (u @ u)
    if np.max(np.abs(deviation - np.outer(u, e))) > 1e-15 * np.max(np.abs(u)):
        return False                          # not along one direction: every row is formed
    lo, hi = min(float(np.min(e)), 0.0), max(float(np.max(e)), 0.0)
    if not INTERPOLATION_NODES:
        return False

    block = max(1, _INTERPOLATION_BLOCK // max(F.size, 1))

    def f(points, out=None):
        """F^(s) - F at weights w(inf) + points u, a few rows at a time (their temporaries stay in cache),
        written into ``out`` when given."""
        out = np.empty((len(points), F.size)) if out is None else out
        for start in range(0, len(points), block):
            part = points[start:start + block]
            m = {ch.name: (w + part * du)[:, None] * sig[None, :]
                 for ch, w, du, sig in zip(channels, limit, u, signals)}
            out[start:start + block] = np.asarray(optimizer.combine(m), dtype=float).reshape(len(part), -1) - F
        return out

    finest = INTERPOLATION_NODES[-1]
    grid = (lo + hi) / 2 + (hi - lo) / 2 * np.cos(np.pi * np.arange(finest) / (finest - 1))
    # f at the nodes, stored in the order they are computed: the grids are nested, so after trying a
    # grid of `count` nodes the first `count` rows are exactly its nodes (a view, never a copy)
    values = np.empty((finest, F.size))
    stored_at = np.zeros(finest, dtype=int)   # the finest-grid index of each stored row
    known = np.zeros(finest, dtype=bool)
    largest = np.zeros(finest)                # max |f| at each stored row
    stored = 0
    probed_rows: Dict[int, np.ndarray] = {}   # f at probes that are nodes of the next grid
    for count in INTERPOLATION_NODES:
        if 2 * count > len(s_values):
            return False
        step = (finest - 1) // (count - 1)
        index = np.arange(count) * step
        new = index[~known[index]]
        if len(new):
            probed = np.array([i in probed_rows for i in new.tolist()], dtype=bool)
            new = np.concatenate([new[~probed], new[probed]])     # computed rows first, then the probes'
            rows, fresh = values[stored:stored + len(new)], int(np.count_nonzero(~probed))
            if fresh:
                f(grid[new[:fresh]], out=rows[:fresh])
            for k in range(fresh, len(new)):
                rows[k] = probed_rows[int(new[k])]
            row_largest = np.max(np.abs(rows), axis=1)
            if not np.all(np.isfinite(row_largest)):
                return False
            largest[stored:stored + len(new)] = row_largest
            stored_at[stored:stored + len(new)], known[new] = new, True
            stored += len(new)
        on_grid, at = values[:count], stored_at[:count]
        nodes = grid[at]
        j = at // step                        # each stored node's place in this grid
        weights = (-1.0) ** j
        weights[(j == 0) | (j == count - 1)] /= 2

        def basis(points, nodes=nodes, weights=weights):
            """The Lagrange basis of this grid at ``points`` (rows), by the barycentric formula, in the
            order the nodes are stored."""
            diff = points[:, None] - nodes[None, :]
            hit = diff == 0
            with np.errstate(divide="ignore", invalid="ignore"):
                terms = weights[None, :] / diff
                local = terms / terms.sum(axis=1, keepdims=True)
            rows = hit.any(axis=1)
            local[rows] = hit[rows].astype(float)
            return local

        # probes between neighbouring nodes, near both ends and in the middle: the next grid's nodes
        # (kept for it if this one fails), or on the finest grid the angles' midpoints
        between = index[[0, 1, count // 2, count - 3, count - 2]]
        if count < finest:
            probes = grid[between + step // 2]
        else:
            probes = (lo + hi) / 2 + (hi - lo) / 2 * np.cos(np.pi * (between + 0.5) / (finest - 1))
        at_probes = f(probes)
        if count < finest:
            probed_rows.update(zip((between + step // 2).tolist(), at_probes))
        allowed = INTERPOLATION_CHECK * max(float(np.max(largest[:count])), 1e-300)
        at_nodes = basis(probes)
        stride = max(1, F.size // 4096)       # a miss on a sample of the entries fails the grid at once
        if stride > 1 and float(np.max(np.abs(at_nodes @ on_grid[:, ::stride] - at_probes[:, ::stride]))) > allowed:
            continue
        if float(np.max(np.abs(at_nodes @ on_grid - at_probes))) <= allowed:
            lagrange = basis(e)
            for r, omega in zip(residual, omegas):
                r += (omega @ lagrange) @ on_grid
            return True
    return False


#: most elements of F^(s) rows held at once by the finite-n sums
_CHUNK_ELEMENTS = 1 << 22
#: steps s examined at once when choosing which finite-n directions matter
_CHUNK_STEPS = 4096


@dataclass
class _MomentumPoint:
    """The memories at the constant history and the history direction each channel is differentiated along."""

    channels: list
    signals: List[np.ndarray]
    memory: List[int]               #: indices of the channels with memory
    point: Dict[str, np.ndarray]    #: m_l^(n+1) at the constant history
    b_now: List[float]              #: b_l^(n+1) of each memory channel
    weights: List[float]            #: c_l(n) = sum_k k beta_l^k
    residual: list                  #: finite-n residual of each memory channel (None where 0)
    F: np.ndarray                   #: the limit direction
    n: Optional[int] = None         #: the step n; None for the limit

    @property
    def limit(self) -> bool:
        return self.n is None


def _times(a: float, vector):
    """a * vector, without a new array when a = 1 (the limit weight of a bias-corrected EMA)."""
    return vector if a == 1.0 else a * vector


def _momentum_point(optimizer, theta, g, n, tol):
    channels = list(optimizer.channels())
    signals = [_signal_array(ch.signal(theta, g), theta) for ch in channels]
    memory = [i for i, ch in enumerate(channels) if ch.decay > 0]
    limit_point = {ch.name: _times(float(ch.weight(math.inf)), sig) for ch, sig in zip(channels, signals)}
    F = np.asarray(optimizer.combine(limit_point), dtype=float)
    if n is None:
        point = limit_point
        b_now = [float(channels[i].b(math.inf)) for i in memory]
        residual = [None] * len(memory)
    else:
        point = {ch.name: float(ch.weight(n)) * sig for ch, sig in zip(channels, signals)}
        b_now = [float(channels[i].b(n + 1)) for i in memory]
        residual = ([None] * len(memory) if optimizer.stationary
                    else _residuals(optimizer, channels, signals, memory, n, F, tol))
    weights = [memory_sum(channels[i].decay, n) for i in memory]
    return _MomentumPoint(channels, signals, memory, point, b_now, weights, residual, F, n)


def _signal_tangents(p: _MomentumPoint, frozen, theta, separate: bool = False):
    """b_l grad g_l . w_l for each memory channel, by forward mode: one loss Hessian-vector
    product per distinct w_l.  Channels whose finite-n residual vanishes (bias-corrected
    EMAs, the limit) share the direction F: one JVP of their concatenated signals, or with
    ``separate`` (elementwise optimizers, whose signals are cheap) one JVP each, sharing the HVP;
    a channel with a residual gets its own."""
    channels, memory = p.channels, p.memory

    def signals_at(x, which):
        gx = frozen(x)
        return anp.concatenate([anp.ravel(channels[i].signal(x, gx)) for i in which])

    along: List[Any] = [None] * len(memory)
    scale = list(p.b_now)
    shared = [j for j, r in enumerate(p.residual) if r is None]
    if shared and separate:
        # one JVP per channel, all along the same F: the point's HVP H F is computed once and
        # reused (Point.hessian_times), and no 2d-long concatenation is formed
        for j in shared:
            _, tangent = jvp(lambda x, i=memory[j]: anp.ravel(channels[i].signal(x, frozen(x))), theta, p.F)
            along[j], scale[j] = np.asarray(tangent, dtype=float), scale[j] * p.weights[j]
    elif shared:
        _, tangent = jvp(lambda x: signals_at(x, [memory[j] for j in shared]), theta, p.F)
        sizes = [np.size(p.signals[memory[j]]) for j in shared]
        for j, part in zip(shared, np.split(np.asarray(tangent, dtype=float), np.cumsum(sizes)[:-1])):
            along[j], scale[j] = part, scale[j] * p.weights[j]
    for j, r in enumerate(p.residual):
        if r is not None:
            _, tangent = jvp(lambda x, i=memory[j]: signals_at(x, [i]), theta, p.weights[j] * p.F + r)
            along[j] = np.asarray(tangent, dtype=float)
    # one product per channel: large vectors are dear to allocate
    return {channels[i].name: c * t.reshape(np.shape(p.point[channels[i].name]))
            for i, c, t in zip(memory, scale, along)}


def _phi_tangents(optimizer, p: _MomentumPoint, tangents, theta, lr, split):
    """h dPhi/dm_l . tangent_l: per channel for the split, at once for the total."""
    point = p.point
    if not split:
        def phi_of(memories):
            return optimizer.combine({**point, **memories})

        start = {name: point[name] for name in tangents}
        return {"total": _scaled(lr, jvp(phi_of, start, tangents)[1], theta)}
    terms = {ch.name: np.zeros_like(theta) for ch in p.channels}
    for name, tangent in tangents.items():
        def phi(x, name=name):
            return optimizer.combine({**point, name: x})

        terms[name] = _scaled(lr, jvp(phi, point[name], tangent)[1], theta)
    return terms


def momentum_terms(optimizer: MomentumOptimizer, obj: Objective, theta, lr: float, n: Optional[int],
                   tol: float = 1e-13, *, gradient=None, split: bool = True) -> Dict[str, np.ndarray]:
    """{channel: M_l^(n)(theta)} for a MomentumOptimizer; ``n=None`` gives the limit M_l.

    M_l = h dPhi/dm_l(m^(n+1)) . [ b_l^(n+1) grad g_l(theta) . w_l ],
    w_l = sum_{k=1..n} beta_l^k v_k = c_l(n) F(theta) + sum_{s<n} omega_l(n, s) (F^(s)(theta) - F(theta)).

    ``gradient``: ``obj.frozen(theta, linearize=True)``, if already made (it holds the
    gradient and the Hessian-vector products at theta).  ``split=False`` returns
    only ``{"total": M}``, with one JVP of Phi instead of one per channel.
    """
    frozen = obj.frozen(theta, linearize=True) if gradient is None else gradient
    p = _momentum_point(optimizer, theta, frozen.value, n, tol)
    if not p.memory or n == 0:
        zero = np.zeros_like(theta)
        return {ch.name: zero.copy() for ch in p.channels} if split else {"total": zero}
    if _closed_forms_apply(optimizer, p):
        return _closed_form_terms(p, frozen, theta, lr, split)
    tangents = _signal_tangents(p, frozen, theta, separate=optimizer.elementwise)
    return _phi_tangents(optimizer, p, tangents, theta, lr, split)


# ----------------------------------------------------------------------------
# Channels with a closed form: M_l = closed_form(h, theta, g, H F), no forward-mode pass
# ----------------------------------------------------------------------------

# A channel's closed form, once it has matched the forward-mode route on a probe loss, replaces the
# forward-mode pass through the signals and Phi: one Hessian-vector product and a few vector operations.
# On a small model that pass is autograd's tracing (a regime map of AdamW: 2.8 s -> 2.0 s); at 10^6
# parameters it is about three gradients of NumPy arithmetic.

#: whether closed forms may be used at all (:func:`forward_mode_only` switches them off)
_CLOSED_FORMS = [True]
#: optimizer state -> whether its closed forms matched the forward-mode route on the probe
_PROBED: Dict[Any, bool] = {}


@contextlib.contextmanager
def forward_mode_only():
    """Within the block every momentum correction takes the forward-mode route, closed forms unused
    (the tests hold the closed-form route to it)."""
    _CLOSED_FORMS.append(False)
    try:
        yield
    finally:
        _CLOSED_FORMS.pop()


def _closed_forms_apply(optimizer: MomentumOptimizer, p: _MomentumPoint) -> bool:
    """Every memory channel carries a closed form of its limit term, the point is the limit's
    (constant channel weights: bias-corrected EMAs), no finite-n residual, and the closed forms
    have matched the forward-mode route on the probe."""
    if not _CLOSED_FORMS[-1]:
        return False
    for j, i in enumerate(p.memory):
        ch = p.channels[i]
        if ch.closed_form is None or p.residual[j] is not None:
            return False
        if not (ch.constant_weight or p.limit or float(ch.weight(p.n)) == float(ch.weight(math.inf))):
            return False
    return _closed_forms_match(optimizer)


def _gradient_and_HF(p: _MomentumPoint, frozen, theta):
    """(g, H F) at theta: the stored gradient and Hessian-vector product, no new gradient."""
    _, HF = jvp(frozen, theta, p.F)
    return np.asarray(frozen.value, dtype=float), np.asarray(HF, dtype=float)


def _closed_form_term(p: _MomentumPoint, j: int, theta, g, HF, lr) -> np.ndarray:
    """M_l of the j-th memory channel from its closed form; the finite-n factor b_l^(n+1) c_l(n) / (b_l c_l)
    rescales a constant-weight channel's limit term (its point is the limit's)."""
    ch = p.channels[p.memory[j]]
    factor = p.b_now[j] * p.weights[j] / (float(ch.b(math.inf)) * memory_sum(ch.decay))
    term = np.asarray(ch.closed_form(lr * factor, theta, g, HF), dtype=float)   # M_l is linear in h
    return term if term.shape == np.shape(theta) else _as_float_array(term, theta)


def _closed_form_terms(p: _MomentumPoint, frozen, theta, lr, split):
    """{channel: M_l} from the channels' closed forms (or {"total": M})."""
    g, HF = _gradient_and_HF(p, frozen, theta)
    terms = {ch.name: np.zeros_like(theta) for ch in p.channels} if split else {}
    total = None
    for j, i in enumerate(p.memory):
        ch = p.channels[i]
        term = _closed_form_term(p, j, theta, g, HF, lr)
        if split:
            terms[ch.name] = term
        elif total is None:
            total = term
        else:
            total = total + term         # never in place: a closed form may return H F itself
    return terms if split else {"total": total}


def _probe_loss(t):
    return anp.sum(anp.log(anp.cosh(t - 0.3))) + 0.25 * anp.sum(t ** 2) ** 2 + anp.sum(anp.sin(t[:-1] * t[1:]))


def _closed_forms_match(optimizer: MomentumOptimizer) -> bool:
    """Whether the optimizer's closed forms give its forward-mode terms on a probe loss with real
    curvature to :data:`CLOSED_FORM_USED` of |M|, at the limit and at two learning rates (a closed
    form must be linear in h); kept per optimizer state (the finite-n factor is the engine's).  A closed
    form that does not match is not used; one that differs by more than :data:`CLOSED_FORM_WRONG` (more
    than rounding in either can explain) also warns, naming its channel (once per state), and fails
    :func:`memless.testing.check_optimizer`."""
    try:
        key = optimizer._state()
        hash(key)
    except TypeError:
        key = None
    if key is not None and key in _PROBED:
        return _PROBED[key]
    error, problem_ = closed_form_mismatch(optimizer)
    if error > CLOSED_FORM_WRONG:
        warnings.warn(f"{optimizer.label}: {problem_}; the engine computes M by forward mode instead",
                      DerivativeWarning, stacklevel=4)
    matched = error <= CLOSED_FORM_USED
    if key is not None:
        _PROBED[key] = matched
    return matched


#: a closed form is used where it equals the forward-mode term to this fraction of |M| on the probe
CLOSED_FORM_USED = 1e-10
#: above this it is wrong, not rounding (the forward-mode pass of Lion's smooth sign at eps = 1e-8 cancels
#: to ~1e-7 of its tiny term; a wrong factor or a missing term is off by O(1))
CLOSED_FORM_WRONG = 1e-6


def closed_form_mismatch(optimizer: MomentumOptimizer, obj: Optional[Objective] = None,
                         theta=None) -> Tuple[float, str]:
    """(the largest difference, as a fraction of |M|, between the memory channels' closed forms and the
    engine's forward-mode terms at the limit at h = 0.1 and h = 0.013, what it is in words).  On a probe
    loss with real curvature unless ``obj`` (checked at ``theta``) is given.  (0, "") where they agree
    exactly; inf where a closed form raises; NaN where the probe itself cannot run (no fault of the
    closed forms)."""
    try:
        probe = obj is None
        if obj is None:
            obj = Objective(_probe_loss)
            size = optimizer.layout.size if optimizer.layout is not None else 5     # the matrices it acts on
            theta = np.sin(1.7 * np.arange(1, size + 1)) * 1.3
            obj.check(theta)
        frozen = obj.frozen(theta, linearize=True)
        p = _momentum_point(optimizer, theta, frozen.value, None, 1e-13)
        rates = (0.1, 0.013)
        tangents = _signal_tangents(p, frozen, theta, optimizer.elementwise)
        forward = {h: _phi_tangents(optimizer, p, tangents, theta, h, True) for h in rates}
        g, HF = _gradient_and_HF(p, frozen, theta)
    except Exception as exc:           # the forward-mode pass itself failed on the probe: not a closed-form fault
        return math.nan, f"{UNCHECKED} ({type(exc).__name__}: {exc})"
    where = "on a probe loss" if probe else "on this loss"
    worst, words = 0.0, ""
    for h in rates:
        by_jvp = forward[h]
        scale = max(max(float(np.max(np.abs(v))) for v in by_jvp.values()), 1e-300)
        for j, i in enumerate(p.memory):
            ch = p.channels[i]
            try:
                term = _closed_form_term(p, j, theta, g, HF, h)
            except Exception as exc:
                return math.inf, f"channel {ch.name!r}: its closed_form raised {type(exc).__name__}: {exc}"
            error = float(np.max(np.abs(np.asarray(term) - by_jvp[ch.name]))) / scale
            if not error <= worst:
                times = float(np.linalg.norm(term)) / max(float(np.linalg.norm(by_jvp[ch.name])), 1e-300)
                worst, words = (error if np.isfinite(error) else math.inf), (
                    f"channel {ch.name!r}: closed_form(h, theta, g, HF) differs from the engine's forward-mode term "
                    f"by {error:.1e} of |M| at h = {h:g} {where} (its size is {times:.3g} times the term's)")
    return worst, words


def closed_form_check(optimizer: MemoryOptimizer, obj: Objective, theta) -> Optional[Tuple[float, str]]:
    """For the conformance kit: None where the memory channels' closed forms are not all given (nothing
    the engine would use), else :func:`closed_form_mismatch` at ``theta``."""
    if not isinstance(optimizer, MomentumOptimizer):
        return None
    memory = [ch for ch in optimizer.channels() if ch.decay > 0]
    if not memory or any(ch.closed_form is None for ch in memory):
        return None
    return closed_form_mismatch(optimizer, obj, theta)


#: how closed_form_mismatch's words begin where the probe itself could not run (no fault of the closed forms)
UNCHECKED = "the closed forms could not be checked on a probe loss"


# ----------------------------------------------------------------------------
# History form: Eq. (12) for any MemoryOptimizer
# ----------------------------------------------------------------------------


def history_correction(optimizer: MemoryOptimizer, obj: Objective, theta, lr: float, n: Optional[int],
                       tol: float = 1e-13, max_history: int = MAX_HISTORY) -> Tuple[np.ndarray, CorrectionInfo]:
    """(M^(n)(theta), CorrectionInfo) by JVPs of ``optimizer.direction`` along the history.

    ``n=None``: the limit, as M^(n) for n = 64, 128, ... until it settles within ``tol``
    (relative, with a floor of 1e-10) or n reaches ``max_history``.
    """
    if n is not None:
        return _history_correction_at(optimizer, obj, theta, lr, n, tol, max_history)
    decays, reason = _memory_decays(optimizer, obj, theta)
    if not decays:
        raise MemlessError(f"{optimizer.label}: the limit correction does not exist: memory does not decay ({reason}); "
                           "outside the theory, only M^(n) at a finite n is defined")
    own = optimizer.limit_correction(theta, obj.frozen(theta, linearize=True), lr, tol, max_history)
    if own is not None:
        M, n_used, settled, tail = own
        if not settled:
            warnings.warn(f"{optimizer.label}: M^(n) has not settled within its tolerance by n={n_used} (its change "
                          f"over the last doubling, or its derivatives' estimated error, is {tail:.1e} of |M|); the "
                          "limit correction is approximate (converged=False)", MemoryTruncationWarning, stacklevel=3)
        return np.asarray(M, dtype=float), CorrectionInfo(None, "history", terms=n_used, tail=tail,
                                                          converged=settled)
    settle = max(tol, 1e-10)
    previous, n_try = None, 64
    while True:
        M, info = _history_correction_at(optimizer, obj, theta, lr, n_try, tol, max_history)
        if previous is not None and np.max(np.abs(M - previous)) <= settle * max(np.max(np.abs(M)), 1e-300):
            break
        if n_try >= max_history:
            info.converged = False
            warnings.warn(
                f"{optimizer.label}: M^(n) has not settled by n={n_try} (max_history); "
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
            history = optimizer.constant_history(theta, n)
            for k in range(lo, hi + 1):
                history[k] = theta + t * directions[k]
            return optimizer.direction(history, grad)

        part = _scaled(lr, jvp(along_history, 0.0, 1.0)[1], theta)
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
            f"{optimizer.label}: history cut at max_history={max_history} terms while the memory "
            f"still contributes {info.tail:.1e} of |M|; raise max_history", MemoryTruncationWarning, stacklevel=4)
    return total, info


# ----------------------------------------------------------------------------
# The memory profile: how much each past iterate contributes (Assumption 3.1)
# ----------------------------------------------------------------------------

#: the history lengths the measured decay test compares
PROFILE_STEPS = (128, 256)
#: the ages k a profile samples by default (geometrically spaced in 1..n)
PROFILE_POINTS = 24
#: the longest history a profile samples (each sampled k costs one JVP through all n + 1 entries)
PROFILE_MAX = 4096
#: relative growth of sum_k k^2 gamma_k between them above which memory is said not to decay
PROFILE_GROWTH = 0.1


@dataclass
class MemoryProfile(Viewable):
    """|dF^(n)/dtheta^(n-k) . v_k| against k at a constant history (the summands of Eq. 12 without h).

    ``ks``/``values``: the profile at ``n``; ``weights``: values / |v_k|, the size gamma_k of the
    derivative with respect to the k-step-old iterate; ``decays``: whether Assumption 3.1
    (sum_k k^2 gamma_k bounded in n) holds -- declared for a momentum optimizer (every channel
    decays geometrically) or one with a ``window``, measured otherwise by comparing
    sum_k k^2 gamma_k at n = 128 and 256; ``reason``: why, with the numbers.
    """

    n: int
    ks: np.ndarray
    values: np.ndarray
    weights: np.ndarray
    decays: bool
    reason: str


def memory_profile(optimizer: MemoryOptimizer, loss: LossLike, theta=None, *, n: Optional[int] = None,
                   points: int = PROFILE_POINTS) -> MemoryProfile:
    """The memory profile of ``optimizer`` at ``theta`` (see :class:`MemoryProfile`): one forward-mode
    JVP of ``direction`` per sampled k, each along the history direction with only slot k moved.

    Exponential decay is a straight line on a log scale; memory that does not decay (Schedule-Free
    averaging) is flat or grows, and then the paper's correction has no guarantee.

    >>> import memless
    >>> from memless.engine.corrections import memory_profile
    >>> profile = memory_profile(memless.get_optimizer("heavy-ball", beta=0.5), "curvy", n=64)
    >>> profile.decays, bool(profile.values[-1] < 1e-12 * profile.values.max())
    (True, True)
    """
    optimizer, loss, theta, _ = problem(optimizer, loss, theta)
    points = check_n(points, allow_none=False, name="points")
    if not 2 <= points <= 1000:
        raise MemlessError(f"points must be in 2..1000, got {shown(points)}")
    with np.errstate(all="ignore"):
        obj = objective(loss, theta)
        size = check_n(n, allow_none=False, name="n") if n is not None else PROFILE_STEPS[-1]
        if not 1 <= size <= PROFILE_MAX:
            raise MemlessError(f"n must be in 1..{PROFILE_MAX} for a memory profile, got {shown(n)}")
        ks, values, weights = _profile(optimizer, obj, theta, size, points)
        known = {size: weights} if points == PROFILE_POINTS else {}
        decays, reason = _memory_decays(optimizer, obj, theta, known)
        return MemoryProfile(size, ks, values, weights, decays, reason)


def _ages(n, points):
    """The sampled ages k of a profile at n, as floats."""
    return np.unique(np.round(np.geomspace(1, n, points)).astype(int)).astype(float)


def _profile(optimizer, obj, theta, n, points):
    grad = obj.frozen(theta)
    ks = _ages(n, points).astype(int)
    v, directions = np.zeros_like(theta), {}
    for k in range(1, n + 1):
        v = v + np.asarray(optimizer.memoryless_direction(theta, grad, n - k), dtype=float)
        if k in set(ks.tolist()):
            directions[k] = v.copy()
    values, weights = [], []
    for k in ks:
        def along(t, k=int(k)):
            history = optimizer.constant_history(theta, n)
            history[k] = theta + t * directions[k]
            return optimizer.direction(history, grad)

        size = float(np.linalg.norm(_as_float_array(jvp(along, 0.0, 1.0)[1], theta)))
        values.append(size)
        weights.append(size / max(float(np.linalg.norm(directions[k])), 1e-300))
    return ks.astype(float), np.array(values), np.array(weights)


#: whether an optimizer without a declared decay was measured to decay, per optimizer state
_DECAY_MEASURED: Dict[tuple, Tuple[bool, str]] = {}


def _memory_decays(optimizer, obj, theta, known: Optional[Dict[int, np.ndarray]] = None) -> Tuple[bool, str]:
    """(decays, reason): declared, or measured once per optimizer (Assumption 3.1).

    ``known``: weights gamma_k already sampled at some n (with the default points), reused."""
    declared = optimizer.declared_decay()
    if declared is not None:
        return True, declared
    own = optimizer.measured_decay(theta, obj.frozen(theta, linearize=True))
    if own is not None:
        return own
    key: Optional[tuple] = optimizer._state()
    try:
        measured = _DECAY_MEASURED.get(key) if key is not None else None
    except TypeError:                  # unhashable state: measure every time
        key, measured = None, None
    if measured is None:
        sums = []
        for size in PROFILE_STEPS:
            ks = _ages(size, PROFILE_POINTS)
            weights = (known or {}).get(size)
            if weights is None:
                _, _, weights = _profile(optimizer, obj, theta, size, PROFILE_POINTS)
            y = ks ** 2 * weights
            sums.append(float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(ks))))
        growth = (sums[1] - sums[0]) / sums[1] if sums[1] > 0 else 0.0
        measured = (growth <= PROFILE_GROWTH,
                 f"measured: sum_k k^2 gamma_k (estimated from {PROFILE_POINTS} sampled ages k, trapezoid-summed) is "
                 f"{sums[0]:.3g} at n={PROFILE_STEPS[0]} and {sums[1]:.3g} at "
                 f"n={PROFILE_STEPS[1]} ({growth:+.0%} of the latter; Assumption 3.1 needs it bounded in n, "
                 f"here within {PROFILE_GROWTH:.0%})")
        if key is not None and len(_DECAY_MEASURED) < 256:
            _DECAY_MEASURED[key] = measured
    return measured
