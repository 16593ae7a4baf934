"""Trajectories: streaming = history form, each built-in = its textbook loop, and the O(h^2) claim."""
import numpy as np
import pytest

import memless

import reference as ref
from test_engine import CASES, IDS, WindowAverage

T0 = np.array([0.3, 0.5, -0.4])


@pytest.mark.parametrize("name,hp", CASES + [("gd", {}), ("lion", dict(k="sign", weight_decay=0.1))],
                         ids=IDS + ["gd", "lion-sign"])
def test_streaming_equals_history_form(name, hp):
    opt = memless.get_optimizer(name, **hp)
    streaming = memless.trajectory(opt, ref.loss, T0, lr=0.01, steps=40, form="streaming")
    history = memless.trajectory(opt, ref.loss, T0, lr=0.01, steps=40, form="history")
    assert streaming.shape == (41, 3)
    np.testing.assert_allclose(streaming, history, rtol=1e-12, atol=1e-14)


# -- textbook loops, with the hand-written gradient ---------------------------------

def textbook(name, hp, theta, lr, steps):
    theta = theta.copy()
    path = [theta.copy()]
    m = v = None
    for t in range(1, steps + 1):
        g = ref.grad(theta)
        if name == "gd":
            theta = theta - lr * g
        elif name in ("heavy-ball", "nesterov"):        # torch.optim.SGD(momentum=beta, nesterov=...)
            m = g.copy() if m is None else hp["beta"] * m + g
            theta = theta - lr * (g + hp["beta"] * m if name == "nesterov" else m)
        elif name in ("adam", "adamw", "nadam"):         # torch.optim.AdamW; NAdam as in the paper
            b1, b2, eps, lam = hp["beta1"], hp["beta2"], hp["eps"], hp.get("weight_decay", 0.0)
            m = (1 - b1) * g if m is None else b1 * m + (1 - b1) * g
            v = (1 - b2) * g ** 2 if v is None else b2 * v + (1 - b2) * g ** 2
            mhat, vhat = m / (1 - b1 ** t), v / (1 - b2 ** t)
            if name == "nadam":
                mhat = b1 * mhat + (1 - b1) * g
            denom = np.sqrt(vhat + eps) if hp.get("eps_inside", True) else np.sqrt(vhat) + eps
            theta = theta * (1 - lr * lam) - lr * mhat / denom
        elif name == "rmsprop":                          # torch.optim.RMSprop(alpha=rho)
            rho, eps = hp["rho"], hp["eps"]
            v = (1 - rho) * g ** 2 if v is None else rho * v + (1 - rho) * g ** 2
            denom = np.sqrt(v + eps) if hp.get("eps_inside", True) else np.sqrt(v) + eps
            theta = theta - lr * g / denom
        elif name == "lion":                             # optax.lion(b1=rho1, b2=rho2)
            r1, r2, lam = hp["rho1"], hp["rho2"], hp["weight_decay"]
            m = np.zeros_like(theta) if m is None else m
            c = r1 * m + (1 - r1) * g
            step = {"sign": np.sign(c), "l2": c, "l1-smooth": c / np.sqrt(c ** 2 + hp["eps"])}[hp["k"]]
            theta = theta - lr * (step + lam * theta)
            m = r2 * m + (1 - r2) * g
        path.append(theta.copy())
    return np.array(path)


TEXTBOOK = CASES + [
    ("gd", {}),
    ("adam", dict(beta1=0.9, beta2=0.99, eps=1e-8, eps_inside=False)),
    ("adamw", dict(beta1=0.8, beta2=0.95, eps=1e-6, weight_decay=0.1, eps_inside=False)),
    ("rmsprop", dict(rho=0.9, eps=1e-8, eps_inside=False)),
    ("lion", dict(rho1=0.9, rho2=0.99, weight_decay=0.1, k="sign")),
    ("lion", dict(rho1=0.7, rho2=0.9, weight_decay=0.0, k="l2")),
]


@pytest.mark.parametrize("name,hp", TEXTBOOK, ids=[f"{n}-{i}" for i, (n, _) in enumerate(TEXTBOOK)])
def test_step_equals_textbook_loop(name, hp):
    opt = memless.get_optimizer(name, **hp)
    got = memless.trajectory(opt, ref.loss, T0, lr=0.01, steps=60)
    np.testing.assert_allclose(got, textbook(name, opt.hyper, T0, 0.01, 60), rtol=1e-11, atol=1e-13)


def test_memoryless_gd_is_gd():
    opt = memless.get_optimizer("gd")
    gd = memless.trajectory(opt, ref.loss, T0, lr=0.05, steps=30)
    np.testing.assert_array_equal(memless.trajectory(opt, ref.loss, T0, lr=0.05, steps=30, memoryless=True), gd)


def test_memoryless_steps_use_finite_n_direction_and_correction():
    """One corrected memoryless step by hand: theta - h [F^(0)(theta) + M^(0)] then - h [F^(1) + M^(1)]."""
    opt = memless.get_optimizer("heavy-ball", beta=0.6)
    h, b = 0.02, 0.6
    path = memless.trajectory(opt, ref.loss, T0, lr=h, steps=2, memoryless=True)
    t1 = T0 - h * ref.grad(T0)                                  # F^(0) = g, M^(0) = 0
    t2 = t1 - h * ((1 + b) * ref.grad(t1) + h * b * ref.hess(t1) @ ref.grad(t1))   # F^(1), M^(1) = h b H g
    np.testing.assert_allclose(path[1], t1, rtol=1e-13)
    np.testing.assert_allclose(path[2], t2, rtol=1e-13)


def test_divergence_is_reported():
    opt = memless.get_optimizer("heavy-ball", beta=0.9)
    with pytest.raises(memless.DivergenceError, match=r"diverged at step \d+ \(lr=50\)"):
        memless.trajectory(opt, ref.loss, T0, lr=50.0, steps=200)


# -- the O(h^2) claim (Theorem 3.3) ----------------------------------------------------
#
# Fitted over lr = 0.01, 0.005, 0.0025 on a horizon of 0.5, the slopes land at
# 1.85-1.95 (corrected) and 0.86-0.98 (uncorrected): the orders are asymptotic in
# h and these lrs are not yet fully asymptotic.  The bands [1.7, 2.3] and
# [0.8, 1.2] absorb that bias yet never confuse order 2 with order 1; the
# corrected error must also be at least 5x smaller at the smallest lr.

ORDER_CASES = [
    ("heavy-ball", dict(beta=0.5)),
    ("nesterov", dict(beta=0.5)),
    ("adam", dict(beta1=0.6, beta2=0.75, eps=0.1)),
    ("adam", dict(beta1=0.6, beta2=0.75, eps=0.1, eps_inside=False)),
    ("adamw", dict(beta1=0.6, beta2=0.75, eps=0.1, weight_decay=0.1)),
    ("nadam", dict(beta1=0.6, beta2=0.75, eps=0.1, weight_decay=0.1)),
    ("rmsprop", dict(rho=0.75, eps=0.1)),
    ("lion", dict(rho1=0.6, rho2=0.75, eps=0.3, weight_decay=0.1)),
    ("lion", dict(rho1=0.6, rho2=0.75, k="l2")),
]
LRS = [0.01, 0.005, 0.0025]


def assert_orders(study):
    assert 1.7 <= study.order_corrected <= 2.3, study.summary()
    assert 0.8 <= study.order_uncorrected <= 1.2, study.summary()
    assert study.errors_corrected[-1] * 5 < study.errors_uncorrected[-1], study.summary()


@pytest.mark.parametrize("name,hp", ORDER_CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(ORDER_CASES)])
def test_order_two_corrected_one_uncorrected(name, hp):
    study = memless.order_study(memless.get_optimizer(name, **hp), ref.loss, T0, horizon=0.5, lrs=LRS)
    assert_orders(study)
    assert study.steps == [50, 100, 200]
    assert max(study.memory_ratios) < 0.5


def test_order_with_limit_correction():
    """M instead of M^(n) costs only O(h^2) (Cattaneo & Shigida 2025, Sec. 2)."""
    study = memless.order_study(memless.get_optimizer("adam", beta1=0.6, beta2=0.75, eps=0.1),
                                ref.loss, T0, horizon=0.5, lrs=LRS, correction="limit")
    assert_orders(study)


@pytest.mark.slow
def test_order_generic_optimizer():
    study = memless.order_study(WindowAverage(width=4), ref.loss, T0, horizon=0.5, lrs=LRS)
    assert_orders(study)


def test_gd_memoryless_error_is_zero():
    study = memless.order_study(memless.get_optimizer("gd"), ref.loss, T0, horizon=0.2, lrs=[0.02, 0.01])
    assert study.errors_corrected == [0.0, 0.0] and study.errors_uncorrected == [0.0, 0.0]
