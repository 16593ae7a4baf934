"""Mini-batch training (Section 5.2): g^(n) = grad L_{pi(n)}, reshuffled every epoch.

* :func:`batch_order` -- which batch each step uses (a fresh seeded permutation per epoch);
* :func:`minibatch_trajectory` -- the optimizer itself on that order (streaming);
* :func:`minibatch_correction` -- M^(n) of Eq. (12) for a given order, where the
  history's gradients come from different batches;
* :func:`permutation_average` -- E over the epoch's permutations of M^(n) for
  heavy-ball, in closed form, split into the full-batch term and the
  gradient-variance term (constants :func:`C3`, :func:`C4`).

With m = n + 1 batches used once each in steps 0..n and g_k = grad L_k::

    E[M^(n)] / h = C3 A + C4 B,   A = mean_k H_k g_k,   B = mean_{k != l} H_k g_l
                 = (C3 + C4) Hbar gbar + (C3 - C4/(m-1)) E[(H_k - Hbar)(g_k - gbar)]

and E[(H_k - Hbar)(g_k - gbar)] = 1/2 grad E||grad L_k - grad L||^2: mini-batch
noise adds a penalty on the gradient variance across batches.
"""
import math
from dataclasses import dataclass

import numpy as np

from .core import MomentumOptimizer
from .engine import jvp
from .errors import MemlessError
from .optimizers.sgd import HeavyBall
from .problem import check_lr, check_n, check_optimizer, check_theta, objective
from .trajectory import _store

# ----------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------


def _check_losses(losses, theta):
    if callable(losses) or not hasattr(losses, "__len__") or len(losses) < 1:
        raise MemlessError("losses must be a list of per-batch losses (callables theta -> scalar), "
                           f"got {type(losses).__name__}")
    return [objective(loss, theta) for loss in losses]


def _check_momentum(optimizer, what):
    check_optimizer(optimizer)
    if not isinstance(optimizer, MomentumOptimizer):
        raise MemlessError(f"{what} needs a MomentumOptimizer (channels); "
                           f"{type(optimizer).__name__} defines only direction()")
    return optimizer


def batch_order(num_batches, steps, seed=0):
    """The batch index of each step 0..steps-1: one random permutation per epoch, seeded.

    >>> batch_order(3, 7, seed=1).tolist()[:3] in ([0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0])
    True
    """
    if isinstance(num_batches, bool) or not isinstance(num_batches, (int, np.integer)) or num_batches < 1:
        raise MemlessError(f"num_batches must be an integer >= 1, got {num_batches!r}")
    steps = check_n(steps, allow_none=False)
    rng = np.random.default_rng(seed)
    epochs = -(-steps // num_batches) if steps else 0
    order = [rng.permutation(num_batches) for _ in range(epochs)]
    return np.concatenate(order)[:steps] if order else np.zeros(0, dtype=int)


# ----------------------------------------------------------------------------
# The optimizer on mini-batches, and its correction for one order
# ----------------------------------------------------------------------------


def minibatch_trajectory(optimizer, losses, theta, lr, steps, *, seed=0, order=None):
    """The optimizer's iterates with g^(n) = grad L_{order[n]}, shape (steps + 1, d).

    ``order`` defaults to :func:`batch_order` ``(len(losses), steps, seed)``.
    """
    _check_momentum(optimizer, "minibatch_trajectory")
    theta = check_theta(theta)
    lr = check_lr(lr)
    steps = check_n(steps, allow_none=False)
    objs = _check_losses(losses, theta)
    order = batch_order(len(objs), steps, seed) if order is None else _check_order(order, len(objs), steps)
    path = np.empty((steps + 1, theta.size))
    path[0] = theta
    memory = optimizer.initial_memory(theta)
    with np.errstate(over="ignore", invalid="ignore"):
        for n in range(steps):
            F, memory = optimizer.advance(memory, theta, objs[order[n]].gradient(theta), n)
            theta = theta - lr * np.asarray(F, dtype=float)
            _store(path, n + 1, theta, lr)
    return path


def _check_order(order, num_batches, length):
    order = np.asarray(order)
    if order.ndim != 1 or len(order) < length or not np.issubdtype(order.dtype, np.integer) \
            or (len(order) and (order.min() < 0 or order.max() >= num_batches)):
        raise MemlessError(f"order must list at least {length} batch indices in 0..{num_batches - 1}")
    return order


def minibatch_correction(optimizer, losses, order, theta, lr):
    """M^(n)(theta) of Eq. (12) when step j of the history used batch ``order[j]`` (n = len(order) - 1).

    F^(s)(theta) = Phi(b_l^(s+1) sum_{j<=s} beta_l^(s-j) g_l(theta, grad L_{order[j]}(theta)));
    M^(n) = h sum_k dF^(n)/dtheta^(n-k) . v_k, v_k = sum_{s=n-k..n-1} F^(s)(theta),
    by one forward-mode pass (n Hessian-vector products).  With one batch it is
    the full-batch :func:`memless.correction` at step n.
    """
    _check_momentum(optimizer, "minibatch_correction")
    theta = check_theta(theta)
    lr = check_lr(lr)
    objs = _check_losses(losses, theta)
    order = np.asarray(order)
    if order.ndim != 1 or len(order) < 1:
        raise MemlessError("order must list the batch index of steps 0..n (at least one)")
    order = _check_order(order, len(objs), len(order))
    n = len(order) - 1
    channels = list(optimizer.channels())
    frozen = [obj.frozen(theta) for obj in objs]
    with np.errstate(all="ignore"):
        # signals of each step at the constant history, and the running sums of F^(s)
        signals = [[np.asarray(ch.signal(theta, frozen[b].value), dtype=float) for ch in channels] for b in order]
        running = [np.zeros_like(theta) for _ in channels]
        directions = []
        for s in range(n + 1):
            running = [ch.decay * r + sig for ch, r, sig in zip(channels, running, signals[s])]
            m = {ch.name: float(ch.b(s + 1)) * r for ch, r in zip(channels, running)}
            directions.append(np.asarray(optimizer.combine(m), dtype=float))
        v, vs = np.zeros_like(theta), [np.zeros_like(theta)]
        for k in range(1, n + 1):
            v = v + directions[n - k]
            vs.append(v)

        def F_n(t):
            m = {}
            for i, ch in enumerate(channels):
                total = 0.0
                for k in range(n + 1):
                    if ch.decay == 0.0 and k > 0:
                        break
                    x = theta + t * vs[k]
                    total = total + ch.decay ** k * ch.signal(x, frozen[order[n - k]](x))
                m[ch.name] = float(ch.b(n + 1)) * total
            return optimizer.combine(m)

        M = lr * np.asarray(jvp(F_n, 0.0, 1.0)[1], dtype=float)
    if not np.all(np.isfinite(M)):
        raise MemlessError(f"the mini-batch correction is not finite at theta={theta}")
    return M


# ----------------------------------------------------------------------------
# Section 5.2: the permutation average, in closed form (heavy-ball)
# ----------------------------------------------------------------------------


def C3(beta, n=None):
    """sum_{k=1..n} beta^k (1 - beta^k)/(1 - beta): the weight of same-batch pairs H_k g_k.

    ``n=None``: the limit beta / ((1-beta)^2 (1+beta)).
    """
    if n is None:
        return beta / ((1.0 - beta) ** 2 * (1.0 + beta))
    n = check_n(n, allow_none=False)
    return (beta * (1.0 - beta ** n) / (1.0 - beta) - beta ** 2 * (1.0 - beta ** (2 * n)) / (1.0 - beta ** 2)) \
        / (1.0 - beta)


def C4(beta, n=None):
    """The weight of distinct-batch pairs H_k g_l: C3 + C4 = sum_k k-weighted memory of the full batch.

    C3 + C4 = [c(n) - beta^(n+1)/(1-beta) (n - beta (1-beta^n)/(1-beta))] / (1-beta), c(n) = sum k beta^k;
    ``n=None``: the limit 2 beta^2 / ((1-beta)^3 (1+beta)).
    """
    if n is None:
        return 2.0 * beta ** 2 / ((1.0 - beta) ** 3 * (1.0 + beta))
    n = check_n(n, allow_none=False)
    if beta == 0.0:
        return 0.0
    c = (beta * (1.0 - beta ** n) / (1.0 - beta) - n * beta ** (n + 1)) / (1.0 - beta)
    total = (c - beta ** (n + 1) / (1.0 - beta) * (n - beta * (1.0 - beta ** n) / (1.0 - beta))) / (1.0 - beta)
    return total - C3(beta, n)


@dataclass
class PermutationAverage:
    """E over permutations of M^(n), split as in Section 5.2."""

    total: np.ndarray           #: E[M^(n)]
    full_batch: np.ndarray      #: h (C3 + C4) Hbar gbar: the full-batch heavy-ball correction
    variance: np.ndarray        #: h (C3 - C4/(m-1)) E[(H_k - Hbar)(g_k - gbar)]: the mini-batch noise term
    C3: float
    C4: float
    batches: int


def permutation_average(optimizer, losses, theta, lr):
    """Closed-form E[M^(n)] over the random order of one epoch (n + 1 = len(losses) steps), heavy-ball.

    >>> import memless, numpy as np
    >>> from memless.minibatch import permutation_average
    >>> same = [lambda t: (t ** 4).sum() / 4] * 3
    >>> avg = permutation_average(memless.get_optimizer("heavy-ball", beta=0.5), same, np.ones(2), lr=0.01)
    >>> bool(np.all(avg.variance == 0))
    True
    """
    check_optimizer(optimizer)
    if not isinstance(optimizer, HeavyBall):
        raise MemlessError(f"the Section 5.2 closed form is for heavy-ball (F = sum beta^k g^(n-k)); "
                           f"got {optimizer._label()}: use permutation_monte_carlo")
    theta = check_theta(theta)
    lr = check_lr(lr)
    objs = _check_losses(losses, theta)
    m = len(objs)
    if m < 2:
        raise MemlessError("permutation_average needs at least two batches")
    beta, n = optimizer.beta, m - 1
    gradients = [obj.gradient(theta) for obj in objs]
    g_bar = np.mean(gradients, axis=0)
    own = [np.asarray(jvp(obj.gradient, theta, g)[1], dtype=float) for obj, g in zip(objs, gradients)]
    A = np.mean(own, axis=0)
    H_bar_g_bar = np.mean([np.asarray(jvp(obj.gradient, theta, g_bar)[1], dtype=float) for obj in objs], axis=0)
    c3, c4 = C3(beta, n), C4(beta, n)
    B = (m * H_bar_g_bar - A) / (m - 1)
    covariance = A - H_bar_g_bar
    return PermutationAverage(total=lr * (c3 * A + c4 * B), full_batch=lr * (c3 + c4) * H_bar_g_bar,
                              variance=lr * (c3 - c4 / (m - 1)) * covariance, C3=c3, C4=c4, batches=m)


def permutation_monte_carlo(optimizer, losses, theta, lr, samples=1000, seed=0):
    """(mean, standard error) of :func:`minibatch_correction` over ``samples`` random epoch orders.

    For any MomentumOptimizer; the closed form of :func:`permutation_average` is heavy-ball's.
    """
    _check_momentum(optimizer, "permutation_monte_carlo")
    samples = check_n(samples, allow_none=False)
    if samples < 2:
        raise MemlessError(f"samples must be >= 2 to estimate a standard error, got {samples}")
    rng = np.random.default_rng(seed)
    draws = np.array([minibatch_correction(optimizer, losses, rng.permutation(len(losses)), theta, lr)
                      for _ in range(samples)])
    return draws.mean(axis=0), draws.std(axis=0, ddof=1) / math.sqrt(samples)
