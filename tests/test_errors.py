"""Bad input raises one clear MemlessError naming what is wrong and what is allowed."""
import numpy as np
import pytest

import memless

import reference as ref

T = np.array([0.3, 0.5, -0.4])


def one_line(excinfo):
    message = str(excinfo.value)
    assert "\n" not in message and message
    return message


def test_unknown_optimizer_lists_valid_names():
    with pytest.raises(memless.UnknownOptimizerError) as exc:
        memless.get_optimizer("adamax")
    message = one_line(exc)
    assert "'adamax'" in message
    for name in ("adam", "adamw", "heavy-ball", "lion", "nadam", "nesterov", "rmsprop", "gd"):
        assert name in message


@pytest.mark.parametrize("name,key,value", [
    ("heavy-ball", "beta", 1.0), ("heavy-ball", "beta", -0.1), ("adamw", "beta2", 1.5),
    ("adam", "beta1", float("nan")), ("nesterov", "beta", "0.9"), ("lion", "rho2", 1.0),
])
def test_decay_outside_unit_interval(name, key, value):
    with pytest.raises(memless.HyperparameterError) as exc:
        memless.get_optimizer(name, **{key: value})
    message = one_line(exc)
    assert key in message and "[0, 1)" in message


@pytest.mark.parametrize("eps", [0.0, -1e-8, float("inf")])
@pytest.mark.parametrize("name", ["adam", "rmsprop", "lion"])
def test_eps_must_be_positive(name, eps):
    with pytest.raises(memless.HyperparameterError, match=r"eps=.* allowed: a number > 0"):
        memless.get_optimizer(name, eps=eps)


def test_other_hyperparameter_errors():
    with pytest.raises(memless.HyperparameterError, match="unknown hyperparameter 'beta'; allowed: beta1, beta2"):
        memless.get_optimizer("adam", beta=0.9)
    with pytest.raises(memless.HyperparameterError, match="k='l3'.*'l1-smooth', 'sign', 'l2'"):
        memless.get_optimizer("lion", k="l3")
    with pytest.raises(memless.HyperparameterError, match="weight_decay=-0.1.*>= 0"):
        memless.get_optimizer("adamw", weight_decay=-0.1)
    with pytest.raises(memless.HyperparameterError, match="eps_inside=1.*True or False"):
        memless.get_optimizer("adam", eps_inside=1)
    with pytest.raises(memless.HyperparameterError, match="rho2=0"):
        memless.get_optimizer("lion", rho1=0.9, rho2=0.0)


@pytest.mark.parametrize("lr", [0.0, -1e-3, float("nan"), float("inf"), "0.1", True])
def test_lr_must_be_positive(lr):
    opt = memless.get_optimizer("adam")
    for call in (lambda: memless.correction(opt, ref.loss, T, lr=lr),
                 lambda: memless.trajectory(opt, ref.loss, T, lr=lr, steps=3)):
        with pytest.raises(memless.MemlessError, match="lr must be a finite number > 0") as exc:
            call()
        one_line(exc)


@pytest.mark.parametrize("bad,pattern", [
    (lambda t: np.nan * t[0], "loss returned nan"),
    (lambda t: np.inf + t[0], "loss returned inf"),
    (lambda t: t * 2.0, "loss must return a scalar, got an array of shape"),
    (lambda t: t[7], "loss\\(theta\\) raised IndexError"),
    (lambda t: float(t[0]) ** 2, "autograd could not differentiate the loss"),
    (lambda t: np.sqrt(t[0] - t[0]), "gradient .* is not finite"),
    (42, "loss must be a callable theta -> scalar or a reference-loss name"),
    ("not a loss", "unknown reference loss 'not a loss'; available: bilinear"),
])
def test_bad_loss(bad, pattern):
    opt = memless.get_optimizer("heavy-ball")
    with pytest.raises(memless.LossError, match=pattern) as exc:
        memless.correction(opt, bad, T, lr=0.01)
    one_line(exc)


@pytest.mark.parametrize("theta,pattern", [
    (np.ones((2, 3)), r"1-D array of parameters, got shape \(2, 3\)"),
    (np.float64(1.0), r"got shape \(\)"),
    (np.array([]), r"got shape \(0,\)"),
    (np.array([1.0, np.nan, 0.0]), "theta must be finite"),
    ("abc", "1-D array of real numbers"),
])
def test_bad_theta(theta, pattern):
    with pytest.raises(memless.LossError, match=pattern):
        memless.correction(memless.get_optimizer("adam"), ref.loss, theta, lr=0.01)


def test_theta_shape_the_loss_does_not_accept():
    with pytest.raises(memless.LossError, match=r"raised IndexError.*shape \(2,\)"):
        memless.correction(memless.get_optimizer("adam"), ref.loss, np.ones(2), lr=0.01)


def test_bad_n_and_steps_and_method():
    opt = memless.get_optimizer("adam")
    with pytest.raises(memless.MemlessError, match="n must be an integer >= 0"):
        memless.correction(opt, ref.loss, T, lr=0.01, n=-1)
    with pytest.raises(memless.MemlessError, match="n must be an integer >= 0"):
        memless.correction(opt, ref.loss, T, lr=0.01, n=2.5)
    with pytest.raises(memless.MemlessError, match="method must be one of auto, momentum, history"):
        memless.correction(opt, ref.loss, T, lr=0.01, method="fast")
    with pytest.raises(memless.MemlessError, match="steps|n must be an integer"):
        memless.trajectory(opt, ref.loss, T, lr=0.01, steps=-3)
    with pytest.raises(memless.MemlessError, match="optimizer must be a memless.MemoryOptimizer"):
        memless.correction("adam", ref.loss, T, lr=0.01)
    with pytest.raises(memless.MemlessError, match="at least two learning rates"):
        memless.order_study(opt, ref.loss, T, horizon=0.5, lrs=[0.01])
    with pytest.raises(memless.MemlessError, match="horizon must be"):
        memless.order_study(opt, ref.loss, T, horizon=0, lrs=[0.01, 0.005])


def test_correction_not_finite_is_named():
    """A loss whose curvature is infinite where its gradient vanishes: |t0|^1.5 at t0 = 0 (finite
    value and gradient, H = inf there).  (Adam with eps outside the root at a zero gradient
    component used to be this test's example; its correction is finite, the closed form's 0:
    tests/test_engine.py.)"""
    import autograd.numpy as anp
    opt = memless.get_optimizer("adam", eps_inside=False)
    loss = lambda t: anp.abs(t[0]) ** 1.5 + t[1] ** 4
    with pytest.raises(memless.MemlessError, match=r"the correction.* is not finite at theta=\[0\., 1\.\]"):
        memless.correction(opt, loss, np.array([0.0, 1.0]), lr=0.01)
