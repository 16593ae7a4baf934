"""Mini-batch training (Section 5.2): g^(n) = grad L_{pi(n)}, reshuffled every epoch.

* :func:`batch_order` -- which batch each step uses (a fresh seeded permutation per epoch);
* :func:`minibatch_trajectory` -- the optimizer itself on that order (streaming);
* :func:`minibatch_correction` -- M^(n) of Eq. (12) for a given order, where the
  history's gradients come from different batches;
* :func:`permutation_average` -- the FIRST epoch: E over its permutations of M^(n) at
  its last step (n = m - 1), heavy-ball, in closed form (constants :func:`C3`, :func:`C4`);
* :func:`multi_epoch_average` -- LATER epochs: E of M^(n) as n -> infinity with the
  batches reshuffled every epoch, at position p of the epoch (constant :func:`kappa`).

Both split into the full-batch term and the gradient-variance term.  With g_k =
grad L_k, H_k its Hessian and Cov = E[(H_k - Hbar)(g_k - gbar)] = 1/2 grad E||grad L_k
- grad L||^2 (the gradient variance across batches):

* first epoch (m = n + 1 batches used once each in steps 0..n)::

      E[M^(n)] / h = (C3 + C4) Hbar gbar + (C3 - C4/(m-1)) Cov

* reshuffled every epoch, n -> infinity, step n at position p (0 = first of its epoch)::

      E[M^(n)] / h = beta/(1-beta)^3 Hbar gbar + kappa_p Cov

  where kappa_p > 0 (a finite sum over the epochs, :func:`kappa`): mini-batch noise then
  adds a penalty on the gradient variance.  The first-epoch weight C3 - C4/(m-1) is a
  different number (negative for beta = 0.9 and small m): do not use it past the first epoch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

from ..checks import check_lr, check_n, check_theta, in_range, shown
from ..contract.optimizer import MemoryOptimizer, memory_sum, require_optimizer, slot_gradient
from ..engine.objective import objective
from ..errors import MemlessError
from ..numerics.autodiff import jvp
from ..optimizers.sgd import HeavyBall
from .trajectories import check_size, optimizer_path

__all__ = ["batch_order", "minibatch_trajectory", "minibatch_correction", "C3", "C4", "PermutationAverage",
           "permutation_average", "permutation_monte_carlo", "kappa", "EpochAverage", "multi_epoch_average"]

# ----------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------


def _check_losses(losses, theta) -> list:
    if not isinstance(losses, (list, tuple)) or len(losses) < 1:
        raise MemlessError("losses must be a non-empty list of per-batch losses (callables theta -> scalar), "
                           f"got {type(losses).__name__}")
    return [objective(loss, theta) for loss in losses]


def _check_decay(beta) -> float:
    try:
        return in_range(0.0, 1.0)(beta)
    except (TypeError, ValueError):
        raise MemlessError(f"beta must be a number in [0, 1), got {shown(beta)}") from None


def _check_seed(seed):
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise MemlessError(f"seed must be an integer >= 0 or None, got {shown(seed)}")
    return seed


def batch_order(num_batches: int, steps: int, seed: Optional[int] = 0) -> np.ndarray:
    """The batch index of each step 0..steps-1: one random permutation per epoch, seeded.

    >>> batch_order(3, 7, seed=1).tolist()[:3] in ([0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0])
    True
    """
    if isinstance(num_batches, bool) or not isinstance(num_batches, (int, np.integer)) or num_batches < 1:
        raise MemlessError(f"num_batches must be an integer >= 1, got {shown(num_batches)}")
    steps = check_size(check_n(steps, allow_none=False, name="steps"), 1)
    check_size(int(num_batches), 1, name="num_batches")
    rng = np.random.default_rng(_check_seed(seed))
    epochs = -(-steps // num_batches) if steps else 0
    order = [rng.permutation(num_batches) for _ in range(epochs)]
    return np.concatenate(order)[:steps] if order else np.zeros(0, dtype=int)


# ----------------------------------------------------------------------------
# The optimizer on mini-batches, and its correction for one order
# ----------------------------------------------------------------------------


def minibatch_trajectory(optimizer: MemoryOptimizer, losses: Sequence[Callable], theta, lr: float, steps: int, *,
                         seed: int = 0, order=None) -> np.ndarray:
    """The optimizer's iterates with g^(n) = grad L_{order[n]}, shape (steps + 1, d).

    ``order`` defaults to :func:`batch_order` ``(len(losses), steps, seed)``.
    """
    require_optimizer(optimizer)
    theta = check_theta(theta)
    lr = check_lr(lr)
    steps = check_size(check_n(steps, allow_none=False, name="steps"), theta.size)
    objs = _check_losses(losses, theta)
    order = batch_order(len(objs), steps, seed) if order is None else _check_order(order, len(objs), steps)
    with np.errstate(over="ignore", invalid="ignore"):
        return optimizer_path(optimizer, objs[0].gradient, theta, lr, steps,
                              gradient_at_step=lambda n: objs[order[n]].gradient)


def _check_order(order, num_batches, length):
    order = np.asarray(order)
    if order.ndim != 1 or len(order) < length or not np.issubdtype(order.dtype, np.integer) \
            or (len(order) and (order.min() < 0 or order.max() >= num_batches)):
        raise MemlessError(f"order must list at least {length} batch indices in 0..{num_batches - 1}")
    return order


def minibatch_correction(optimizer: MemoryOptimizer, losses: Sequence[Callable], order, theta,
                         lr: float) -> np.ndarray:
    """M^(n)(theta) of Eq. (12) when step j of the history used batch ``order[j]`` (n = len(order) - 1).

    F^(s)(theta) is step s of the optimizer at the constant history, each step j <= s using
    its batch; M^(n) = h sum_k dF^(n)/dtheta^(n-k) . v_k, v_k = sum_{s=n-k..n-1} F^(s)(theta),
    by one forward-mode pass through ``direction`` (n Hessian-vector products).  With one
    batch it is the full-batch :func:`memless.correction` at step n.
    """
    require_optimizer(optimizer)
    theta = check_theta(theta)
    lr = check_lr(lr)
    objs = _check_losses(losses, theta)
    order = np.asarray(order)
    if order.ndim != 1 or len(order) < 1:
        raise MemlessError("order must list the batch index of steps 0..n (at least one)")
    order = _check_order(order, len(objs), len(order))
    with np.errstate(all="ignore"):
        M = _minibatch_correction(optimizer, [obj.frozen(theta) for obj in objs], order, theta, lr)
    if not np.all(np.isfinite(M)):
        raise MemlessError(f"{optimizer.label}: the mini-batch correction is not finite at theta={shown(theta)}")
    return M


def _minibatch_correction(optimizer, frozen, order, theta, lr):
    n = len(order) - 1
    # F^(s)(theta), s < n: the optimizer's own steps at the constant history, each on its batch
    # (each step gets its own copy of theta, so a history-form step can tell the batches apart)
    state, directions = optimizer.initial_state(theta), []
    for s in range(n):
        F, state = optimizer.advance(state, theta.copy(), frozen[order[s]], s)
        directions.append(np.asarray(F, dtype=float))
    vs, v = [np.zeros_like(theta)], np.zeros_like(theta)
    for k in range(1, n + 1):
        v = v + directions[n - k]
        vs.append(v)
    gradients = [frozen[order[n - k]] for k in range(n + 1)]

    def F_n(t):
        history = [theta + t * vs[k] for k in range(n + 1)]
        return optimizer.direction(history, slot_gradient(history, gradients))

    return lr * np.asarray(jvp(F_n, 0.0, 1.0)[1], dtype=float)


# ----------------------------------------------------------------------------
# Section 5.2: the permutation average, in closed form (heavy-ball)
# ----------------------------------------------------------------------------


def C3(beta: float, n: Optional[int] = None) -> float:
    """sum_{k=1..n} beta^k (1 - beta^k)/(1 - beta): the weight of same-batch pairs H_k g_k.

    ``n=None``: the limit beta / ((1-beta)^2 (1+beta)).  beta must be in [0, 1).
    """
    beta = _check_decay(beta)
    if n is None:
        return beta / ((1.0 - beta) ** 2 * (1.0 + beta))
    n = check_n(n, allow_none=False)
    return (beta * (1.0 - beta ** n) / (1.0 - beta) - beta ** 2 * (1.0 - beta ** (2 * n)) / (1.0 - beta ** 2)) \
        / (1.0 - beta)


def C4(beta: float, n: Optional[int] = None) -> float:
    """The weight of distinct-batch pairs H_k g_l: C3 + C4 = sum_k k-weighted memory of the full batch.

    C3 + C4 = [c(n) - beta^(n+1)/(1-beta) (n - beta (1-beta^n)/(1-beta))] / (1-beta), c(n) = sum k beta^k;
    ``n=None``: the limit 2 beta^2 / ((1-beta)^3 (1+beta)).
    """
    beta = _check_decay(beta)
    if n is None:
        return 2.0 * beta ** 2 / ((1.0 - beta) ** 3 * (1.0 + beta))
    n = check_n(n, allow_none=False)
    if beta == 0.0:
        return 0.0
    c = memory_sum(beta, n)
    total = (c - beta ** (n + 1) / (1.0 - beta) * (n - beta * (1.0 - beta ** n) / (1.0 - beta))) / (1.0 - beta)
    return total - C3(beta, n)


def _batch_moments(objs, theta):
    """(A, Hbar gbar): A = mean_k H_k g_k and Hbar gbar, by 2m Hessian-vector products;
    Cov = A - Hbar gbar is the gradient-variance term of both closed forms."""
    gradients = [obj.gradient(theta) for obj in objs]
    g_bar = np.mean(gradients, axis=0)
    A = np.mean([np.asarray(jvp(obj.gradient, theta, g)[1], dtype=float) for obj, g in zip(objs, gradients)], axis=0)
    H_bar_g_bar = np.mean([np.asarray(jvp(obj.gradient, theta, g_bar)[1], dtype=float) for obj in objs], axis=0)
    return A, H_bar_g_bar


@dataclass
class PermutationAverage:
    """E over permutations of M^(n), split as in Section 5.2."""

    total: np.ndarray           #: E[M^(n)]
    full_batch: np.ndarray      #: h (C3 + C4) Hbar gbar: the full-batch heavy-ball correction
    variance: np.ndarray        #: h (C3 - C4/(m-1)) E[(H_k - Hbar)(g_k - gbar)]: the mini-batch noise term
    C3: float
    C4: float
    batches: int


def permutation_average(optimizer: MemoryOptimizer, losses: Sequence[Callable], theta,
                        lr: float) -> PermutationAverage:
    """Closed-form E[M^(n)] over the random order of the FIRST epoch, at its last step (n + 1 =
    len(losses) steps from the start), heavy-ball.  Later epochs: :func:`multi_epoch_average`.

    >>> import memless, numpy as np
    >>> from memless.minibatch import permutation_average
    >>> same = [lambda t: (t ** 4).sum() / 4] * 3
    >>> avg = permutation_average(memless.get_optimizer("heavy-ball", beta=0.5), same, np.ones(2), lr=0.01)
    >>> bool(np.all(avg.variance == 0))
    True
    """
    theta, lr, objs = _heavy_ball_batches(
        "permutation_average", optimizer, losses, theta, lr,
        "the Section 5.2 closed form is for heavy-ball (F = sum beta^k g^(n-k))", "use permutation_monte_carlo")
    m = len(objs)
    beta, n = optimizer.beta, m - 1
    A, H_bar_g_bar = _batch_moments(objs, theta)
    c3, c4 = C3(beta, n), C4(beta, n)
    B = (m * H_bar_g_bar - A) / (m - 1)
    covariance = A - H_bar_g_bar
    return PermutationAverage(total=lr * (c3 * A + c4 * B), full_batch=lr * (c3 + c4) * H_bar_g_bar,
                              variance=lr * (c3 - c4 / (m - 1)) * covariance, C3=c3, C4=c4, batches=m)


def permutation_monte_carlo(optimizer: MemoryOptimizer, losses: Sequence[Callable], theta, lr: float,
                            samples: int = 1000, seed: Optional[int] = 0):
    """(mean, standard error) of :func:`minibatch_correction` over ``samples`` random epoch orders.

    For any optimizer; the closed form of :func:`permutation_average` is heavy-ball's.
    """
    require_optimizer(optimizer)
    samples = check_size(check_n(samples, allow_none=False, name="samples"), 1, name="samples")
    if samples < 2:
        raise MemlessError(f"samples must be >= 2 to estimate a standard error, got {samples}")
    rng = np.random.default_rng(_check_seed(seed))
    draws = np.array([minibatch_correction(optimizer, losses, rng.permutation(len(losses)), theta, lr)
                      for _ in range(samples)])
    return draws.mean(axis=0), draws.std(axis=0, ddof=1) / math.sqrt(samples)


# ----------------------------------------------------------------------------
# Later epochs: reshuffled every epoch, n -> infinity (heavy-ball)
# ----------------------------------------------------------------------------


def _heavy_ball_batches(who: str, optimizer, losses, theta, lr, closed_form: str, instead: str):
    """(theta, lr, objectives) checked for a heavy-ball closed form over at least two batches."""
    require_optimizer(optimizer)
    if not isinstance(optimizer, HeavyBall):
        raise MemlessError(f"{closed_form}; got {optimizer.label}: {instead}")
    theta = check_theta(theta)
    lr = check_lr(lr)
    objs = _check_losses(losses, theta)
    if len(objs) < 2:
        raise MemlessError(f"{who} needs at least two batches")
    return theta, lr, objs


def _check_position(position, m):
    if isinstance(position, bool) or not isinstance(position, (int, np.integer)) or not 0 <= position < m:
        raise MemlessError(f"position must be an integer in 0..{m - 1} (the step's place in its epoch), "
                           f"got {shown(position)}")
    return int(position)


def kappa(beta: float, m: int, position: int) -> float:
    """kappa_p: the weight of the gradient-variance term Cov in E[M^(n)]/h for heavy-ball, batches
    reshuffled every epoch, n -> infinity, step n at ``position`` p of its epoch.

    With lags a, b >= 1 of the Hessian's and the gradient's steps, the weight of H_(n-a) g_(n-b)
    in M^(n)/h is w(a, b) = beta^(a + b - min(a, b)) (1 - beta^min(a, b)) / (1 - beta); same step:
    E = A, same epoch: E = B, different epochs: Hbar gbar.  So
    kappa_p = sum_a w(a, a) - 1/(m-1) sum_{a != b in one epoch} w(a, b), summed until beta^a < 1e-18.

    >>> round(kappa(0.9, 2, 0), 3), round(kappa(0.9, 2, 1), 3)
    (4.501, 4.972)
    """
    beta = _check_decay(beta)
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 2:
        raise MemlessError(f"m must be an integer >= 2 (the number of batches), got {shown(m)}")
    position = _check_position(position, m)
    if beta == 0.0:
        return 0.0
    lags = int(math.ceil(math.log(1e-18) / math.log(beta))) + 1
    a = np.arange(1, lags + 1, dtype=float)[:, None]
    b = a.T
    shortest = np.minimum(a, b)
    w = beta ** (a + b - shortest) * (1.0 - beta ** shortest) / (1.0 - beta)
    same_epoch = np.floor((position - a) / m) == np.floor((position - b) / m)
    same_step = a == b
    return float(np.trace(w) - w[same_epoch & ~same_step].sum() / (m - 1))


@dataclass
class EpochAverage:
    """E of M^(n) over reshuffled epochs as n -> infinity, split as in Section 5.2."""

    total: np.ndarray           #: E[M^(n)]
    full_batch: np.ndarray      #: h beta/(1-beta)^3 Hbar gbar: the full-batch heavy-ball correction
    variance: np.ndarray        #: h kappa_p Cov: the mini-batch noise term
    kappa: float
    batches: int
    position: int


def multi_epoch_average(optimizer: MemoryOptimizer, losses: Sequence[Callable], theta, lr: float,
                        position: int) -> EpochAverage:
    """Closed-form E[M^(n)] for heavy-ball with the batches reshuffled every epoch, n -> infinity,
    step n at ``position`` (0 = the first step of its epoch).  For the first epoch use
    :func:`permutation_average`.

    >>> import memless, numpy as np
    >>> same = [lambda t: (t ** 4).sum() / 4] * 3
    >>> avg = multi_epoch_average(memless.get_optimizer("heavy-ball", beta=0.5), same, np.ones(2), lr=0.01,
    ...                           position=1)
    >>> np.allclose(avg.total, memless.correction(memless.get_optimizer("heavy-ball", beta=0.5),
    ...                                           same[0], np.ones(2), lr=0.01))
    True
    """
    theta, lr, objs = _heavy_ball_batches(
        "multi_epoch_average", optimizer, losses, theta, lr, "the multi-epoch closed form is for heavy-ball",
        "average minibatch_correction over random orders instead")
    m = len(objs)
    position = _check_position(position, m)
    beta = optimizer.beta
    own, H_bar_g_bar = _batch_moments(objs, theta)
    k = kappa(beta, m, position)
    full = lr * beta / (1.0 - beta) ** 3 * H_bar_g_bar
    variance = lr * k * (own - H_bar_g_bar)
    return EpochAverage(total=full + variance, full_batch=full, variance=variance, kappa=k, batches=m,
                        position=position)
