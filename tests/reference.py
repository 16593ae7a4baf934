"""Independent reference computations for the tests: no memless, no autograd.

A loss with non-trivial third derivatives, with its gradient and Hessian written
out by hand, and, per optimizer, Eq. (12) written with explicit d x d Jacobians
dF^(n)/dtheta^(n-k) and the finite-n directions F^(s)(theta).  (The last section is the
exception: it holds a framework's loss -- PyTorch, JAX -- to memless's own autograd losses.)
"""
import numpy as np

from memless.optimizers import BUILTIN


# -- the loss -----------------------------------------------------------------

def loss_np(t):
    r = 1.5 - 2.0 * t[0] * t[1]
    return 0.5 * r ** 2 + 0.1 * np.sum(np.sin(t)) + 0.05 * np.sum(t ** 4) + 0.3 * t[1] * t[2] ** 2


def loss(t):
    import autograd.numpy as anp
    r = 1.5 - 2.0 * t[0] * t[1]
    return 0.5 * r ** 2 + 0.1 * anp.sum(anp.sin(t)) + 0.05 * anp.sum(t ** 4) + 0.3 * t[1] * t[2] ** 2


def grad(t):
    r = 1.5 - 2.0 * t[0] * t[1]
    return np.array([
        -2.0 * t[1] * r + 0.1 * np.cos(t[0]) + 0.2 * t[0] ** 3,
        -2.0 * t[0] * r + 0.1 * np.cos(t[1]) + 0.2 * t[1] ** 3 + 0.3 * t[2] ** 2,
        0.1 * np.cos(t[2]) + 0.2 * t[2] ** 3 + 0.6 * t[1] * t[2],
    ])


def hess(t):
    r = 1.5 - 2.0 * t[0] * t[1]
    H = np.zeros((3, 3))
    H[0, 0] = 4.0 * t[1] ** 2 - 0.1 * np.sin(t[0]) + 0.6 * t[0] ** 2
    H[0, 1] = H[1, 0] = -2.0 * r + 4.0 * t[0] * t[1]
    H[1, 1] = 4.0 * t[0] ** 2 - 0.1 * np.sin(t[1]) + 0.6 * t[1] ** 2
    H[1, 2] = H[2, 1] = 0.6 * t[2]
    H[2, 2] = -0.1 * np.sin(t[2]) + 0.6 * t[2] ** 2 + 0.6 * t[1]
    return H


POINTS = [np.array([0.3, 0.5, -0.4]), np.array([1.1, -0.7, 0.9]), np.array([-0.6, 0.2, 0.45])]


# -- Eq. (12) with explicit Jacobians ------------------------------------------

def eq12(jacobian, direction, n, h):
    """h sum_{k=1..n} J_k v_k, v_k = sum_{s=n-k..n-1} F^(s), by plain loops."""
    total = 0.0
    for k in range(1, n + 1):
        v = sum(direction(s) for s in range(n - k, n))
        total = total + jacobian(k) @ v
    return h * total


def _bias(beta, t):
    return (1.0 - beta) / (1.0 - beta ** t)


def explicit(name, hp, t, n):
    """(J(k), F^(s)) for the built-in optimizer `name` at theta = t, step n."""
    g, H = grad(t), hess(t)
    if name == "heavy-ball":
        b = hp["beta"]
        return (lambda k: b ** k * H), (lambda s: (1 - b ** (s + 1)) / (1 - b) * g)
    if name == "nesterov":
        b = hp["beta"]
        return (lambda k: b * b ** k * H), (lambda s: b * (1 - b ** (s + 1)) / (1 - b) * g + g)
    if name in ("adam", "adamw", "nadam"):
        b1, b2, eps, lam = hp["beta1"], hp["beta2"], hp["eps"], hp.get("weight_decay", 0.0)
        D = g ** 2 + eps
        lead = b1 if name == "nadam" else 1.0
        c1, c2 = _bias(b1, n + 1), _bias(b2, n + 1)

        def J(k):
            return (lead * c1 * b1 ** k * np.diag(1 / np.sqrt(D)) @ H
                    + c2 * b2 ** k * np.diag(-g / (2 * D ** 1.5)) @ (2 * np.diag(g) @ H))
        return J, (lambda s: g / np.sqrt(D) + lam * t)
    if name == "rmsprop":
        rho, eps = hp["rho"], hp["eps"]
        a = 1 - rho ** (n + 1)

        def J(k):
            return (1 - rho) * rho ** k * np.diag(-g / (2 * (a * g ** 2 + eps) ** 1.5)) @ (2 * np.diag(g) @ H)
        return J, (lambda s: g / np.sqrt((1 - rho ** (s + 1)) * g ** 2 + eps))
    if name == "lion":
        r1, r2, lam, eps = hp["rho1"], hp["rho2"], hp["weight_decay"], hp["eps"]

        def c(s):   # m1 + m2 at the constant history, s + 1 summed terms
            return -((r1 / r2) * (1 - r2 ** (s + 1)) + (1 - r1 / r2)) * g

        def J(k):
            hess_k = eps / (c(n) ** 2 + eps) ** 1.5
            return -np.diag(hess_k) @ (-(r1 / r2) * (1 - r2) * r2 ** k * H)
        return J, (lambda s: -c(s) / np.sqrt(c(s) ** 2 + eps) + lam * t)
    raise KeyError(name)


# -- the n -> infinity closed forms of Cattaneo & Shigida 2025, Sec. 4-----------------------

def closed_form_limit(name, hp, t, h):
    g, H = grad(t), hess(t)
    if name == "gd":
        return np.zeros_like(t)
    if name == "heavy-ball":
        b = hp["beta"]
        return h * b / (1 - b) ** 3 * H @ g
    if name == "nesterov":
        b = hp["beta"]
        return h * b ** 2 / (1 - b) ** 3 * H @ g
    if name in ("adam", "adamw", "nadam"):
        b1, b2, eps, lam = hp["beta1"], hp["beta2"], hp["eps"], hp.get("weight_decay", 0.0)
        D = g ** 2 + eps
        w1 = b1 ** 2 / (1 - b1) if name == "nadam" else b1 / (1 - b1)
        field = H @ (g / np.sqrt(D)) + lam * H @ t          # grad ||g||_{1,eps} + lambda H theta
        if hp.get("eps_inside", True):
            return h * ((w1 - b2 / (1 - b2)) / np.sqrt(D) + b2 / (1 - b2) * eps / D ** 1.5) * field
        # PyTorch's m / (sqrt(v) + eps), derived by hand: F = g/(|g|+eps) + lambda theta
        a = np.abs(g)
        HF = H @ (g / (a + eps) + lam * t)
        return h * (w1 / (a + eps) - b2 / (1 - b2) * a / (a + eps) ** 2) * HF
    if name == "rmsprop":
        rho, eps = hp["rho"], hp["eps"]
        D = g ** 2 + eps
        return -h * rho / (1 - rho) * g ** 2 / D ** 1.5 * (H @ (g / np.sqrt(D)))
    if name == "lion":
        r1, r2, lam, eps = hp["rho1"], hp["rho2"], hp["weight_decay"], hp["eps"]
        x = -g
        if hp["k"] == "sign":
            return np.zeros_like(t)
        if hp["k"] == "l2":
            gradK, hessK = x, np.ones_like(x)
        else:
            gradK, hessK = x / np.sqrt(x ** 2 + eps), eps / (x ** 2 + eps) ** 1.5
        return -h * r1 / (1 - r2) * hessK * (H @ (gradK - lam * t))
    raise KeyError(name)


# -- a framework's loss against the autograd reference loss it rebuilds ------------------------

#: the built-ins a framework loss is compared on: all but Schedule-Free, whose memory does not
#: decay, so it has no limit correction to compare
FRAMEWORK_OPTIMIZERS = sorted(set(BUILTIN) - {"schedule-free-sgd"})

def assert_same_corrections_as(loss, reference_name, optimizer_name, atol_fraction=2e-10):
    """``loss`` (e.g. a torch or JAX objective) carries the reference loss's layout and start, and
    gives its corrections, at the limit and at n = 4, to ``atol_fraction`` of |M|."""
    import memless
    from memless.losses import REFERENCE_LOSSES

    reference_loss = REFERENCE_LOSSES[reference_name]
    assert loss.layout == reference_loss.loss.layout and np.array_equal(loss.start, reference_loss.start)
    opt = memless.get_optimizer(optimizer_name)
    for n in (None, 4):
        ours = memless.correction(opt, loss, None, lr=1e-3, n=n)
        reference = memless.correction(opt, reference_name, None, lr=1e-3, n=n)
        np.testing.assert_allclose(ours, reference, rtol=0, atol=atol_fraction * np.max(np.abs(reference)))


#: optimizers whose second-order term the framework tests compare (every family M2 treats)
SECOND_ORDER_OPTIMIZERS = [("heavy-ball", {"beta": 0.5}), ("nesterov", {}), ("adamw", {"eps": 1e-3}),
                           ("rmsprop", {"eps": 1e-3}), ("lion", {"k": "logcosh", "kappa": 10.0}),
                           ("muon", {"momentum": 0.8})]


def assert_same_second_order_as(loss, reference_name, optimizer_name, hyper, atol_fraction=1e-9):
    """``loss``'s second-order term M2 (third derivatives from its framework) equals the reference loss's
    (third derivatives by autograd), at the limit and at n = 4, to ``atol_fraction`` of |M2|."""
    import memless

    opt = memless.get_optimizer(optimizer_name, **hyper)
    for n in (None, 4):
        ours = memless.correction_terms(opt, loss, None, lr=1e-2, n=n, order=2)["second-order"]
        reference = memless.correction_terms(opt, reference_name, None, lr=1e-2, n=n, order=2)["second-order"]
        assert np.max(np.abs(reference)) > 0
        np.testing.assert_allclose(ours, reference, rtol=0, atol=atol_fraction * np.max(np.abs(reference)))


def assert_linearize_agrees(loss):
    """``loss.linearize`` (one recorded pass) gives the value, gradient and HVP of ``loss``'s own
    value, gradient and forward-over-reverse hvp, at its start and a seeded direction."""
    import pytest
    theta = loss.start
    v = np.random.default_rng(1).normal(size=theta.size)
    value, g, hvp = loss.linearize(theta)
    assert value == pytest.approx(loss.value(theta), rel=1e-15)
    np.testing.assert_allclose(g, loss.gradient(theta), rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(hvp(v), loss.hvp(theta, v), rtol=1e-11, atol=1e-14)
