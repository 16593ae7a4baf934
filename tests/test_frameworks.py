"""Losses computed by a framework: the same loss in autograd and in PyTorch gives the same
corrections for every built-in, to 2e-10 of |M| in float64 (measured worst: 1.0e-10, Lion,
whose eps/(g^2 + eps)^(3/2) at eps = 1e-8 amplifies the two frameworks' rounding)."""
import numpy as np
import pytest

import memless
from reference import (FRAMEWORK_OPTIMIZERS, SECOND_ORDER_OPTIMIZERS, assert_linearize_agrees,
                       assert_same_corrections_as, assert_same_second_order_as)
from memless.frameworks import ExternalLoss
from memless.losses import REFERENCE_LOSSES

NETWORK = REFERENCE_LOSSES["network"]


def test_external_loss_equals_the_autograd_loss_it_wraps():
    from autograd import grad

    from memless.numerics.autodiff import jvp
    curvy = REFERENCE_LOSSES["curvy"]
    plain = curvy.loss.function                   # autograd's derivatives, not the hand-written ones
    g = grad(plain)
    external = ExternalLoss(lambda t: float(plain(t)), g, lambda t, v: jvp(g, t, v)[1], start=curvy.start)
    for name in ("heavy-ball", "adamw", "nadam", "rmsprop", "lion"):
        opt = memless.get_optimizer(name)
        for n in (None, 5):
            np.testing.assert_allclose(memless.correction(opt, external, None, lr=1e-3, n=n),
                                       memless.correction(opt, plain, curvy.start, lr=1e-3, n=n), rtol=1e-13, atol=0)


def test_external_loss_refuses_a_third_derivative_in_one_line():
    A = np.diag([1.0, 2.0])
    f = ExternalLoss(lambda t: 0.5 * t @ A @ t, lambda t: A @ t, lambda t, v: A @ v, start=np.ones(2))
    import autograd.numpy as anp
    from autograd import grad
    w = np.array([1.0, -1.0])
    second = grad(lambda s: anp.sum(grad(f)(s) * w))          # H w: available
    np.testing.assert_allclose(second(np.ones(2)), A @ w)
    with pytest.raises(memless.LossError, match="third derivative"):
        grad(lambda t: anp.sum(second(t) * w))(np.ones(2))


def test_a_loss_that_linearizes_is_evaluated_once_per_correction():
    """The engine takes value, gradient and the HVPs at theta from linearize (one call), not by
    tracing the loss, and gets the same M as from value/gradient/hvp alone."""
    from autograd import grad

    from memless.numerics.autodiff import jvp
    curvy = REFERENCE_LOSSES["curvy"]
    g = grad(curvy.loss)
    calls = {"linearize": 0, "hvp": 0}

    def hvp(t, v):
        calls["hvp"] += 1
        return jvp(g, t, v)[1]

    def linearize(t):
        calls["linearize"] += 1
        return float(curvy.loss(t)), g(t), lambda v: jvp(g, t, v)[1]

    plain = ExternalLoss(lambda t: float(curvy.loss(t)), g, lambda t, v: jvp(g, t, v)[1], start=curvy.start)
    fused = ExternalLoss(lambda t: float(curvy.loss(t)), g, hvp, linearize=linearize, start=curvy.start)
    for name in ("adamw", "lion", "heavy-ball"):
        opt = memless.get_optimizer(name)
        calls.update(linearize=0, hvp=0)
        M = memless.correction(opt, fused, None, lr=1e-3)
        assert calls == {"linearize": 1, "hvp": 0}, name
        np.testing.assert_allclose(M, memless.correction(opt, plain, None, lr=1e-3), rtol=1e-14, atol=0)
    with pytest.raises(memless.LossError, match="linearize must be a callable"):
        ExternalLoss(curvy.loss, g, hvp, linearize=3)


def test_external_loss_with_a_third_derivative_gives_autograds_second_order_term_and_checks_it():
    from autograd import grad
    from memless.numerics.autodiff import jvp
    curvy = REFERENCE_LOSSES["curvy"]
    plain = curvy.loss.function
    g = grad(plain)

    def hvp(t, v):
        return jvp(g, t, v)[1]

    def third(t, v, w):
        return jvp(lambda s: hvp(s, v), t, w)[1]

    opt = memless.get_optimizer("adamw", eps=1e-3)
    external = ExternalLoss(lambda t: float(plain(t)), g, hvp, third=third, start=curvy.start)
    np.testing.assert_allclose(memless.correction(opt, external, None, lr=1e-2, order=2),
                               memless.correction(opt, plain, curvy.start, lr=1e-2, order=2), rtol=1e-12, atol=0)
    assert external.third_error is not None and external.third_error < 1e-7
    wrong = ExternalLoss(lambda t: float(plain(t)), g, hvp, third=lambda t, v, w: 2 * third(t, v, w),
                         start=curvy.start)
    with pytest.warns(memless.DerivativeWarning, match="third\\(theta, v, w\\) disagrees"):
        memless.correction(opt, wrong, None, lr=1e-2, order=2)


def test_external_loss_checks_its_hvp_against_its_gradient():
    """An hvp that is not the derivative of gradient (here half of it) is caught at the start point with a
    warning that gives the disagreement; a right one is measured to agree to rounding (about 1e-11)."""
    f, g = (lambda t: float(np.sum(t ** 4))), (lambda t: 4 * t ** 3)
    start = np.array([1.0, 2.0, -0.5])
    good = ExternalLoss(f, g, lambda t, v: 12 * t ** 2 * v, start=start)
    assert good.hvp_error < 1e-8
    with pytest.warns(memless.DerivativeWarning, match=r"disagrees .* by 5\.0e-01"):
        bad = ExternalLoss(f, g, lambda t, v: 6 * t ** 2 * v, start=start)
    assert abs(bad.hvp_error - 0.5) < 1e-6
    lazy = ExternalLoss(f, g, lambda t, v: 6 * t ** 2 * v)            # no start: checked at the first point used
    with pytest.warns(memless.DerivativeWarning, match="not the derivative of gradient"):
        memless.correction(memless.get_optimizer("heavy-ball"), lazy, np.array([1.0, 2.0]), lr=1e-3)
    assert ExternalLoss(f, g, lambda t, v: 6 * t ** 2 * v, start=start, check=False).hvp_error is None


torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install memless[torch])")


class Network(torch.nn.Module):
    """The 'network' reference loss's model: tanh(X W1) W2, no biases."""

    def __init__(self, start):
        super().__init__()
        parts = NETWORK.loss.layout.unflatten(start)
        self.W1 = torch.nn.Parameter(torch.tensor(np.array(parts["W1"])))
        self.W2 = torch.nn.Parameter(torch.tensor(np.array(parts["W2"])))

    def forward(self, X):
        return torch.tanh(X @ self.W1) @ self.W2


def _torch_network():
    from memless.frameworks.torch import objective
    from memless.losses import _NET_INPUTS, _NET_TARGETS

    def mse(out, targets):
        return 0.5 * ((out - targets) ** 2).sum(dim=1).mean()

    return objective(Network(NETWORK.start), mse, (torch.tensor(_NET_INPUTS), torch.tensor(_NET_TARGETS)))


@pytest.mark.parametrize("name", FRAMEWORK_OPTIMIZERS)
def test_torch_model_gives_autograds_corrections_for_every_builtin(name):
    assert_same_corrections_as(_torch_network(), "network", name)


@pytest.mark.parametrize("name,hyper", SECOND_ORDER_OPTIMIZERS, ids=[n for n, _ in SECOND_ORDER_OPTIMIZERS])
def test_torch_model_gives_autograds_second_order_term(name, hyper):
    """order=2 on a PyTorch model: its third derivatives (three nested backward passes) give the same M2
    as autograd's on the same network written as a memless reference loss."""
    assert_same_second_order_as(_torch_network(), "network", name, hyper)


def test_torch_third_derivative_is_the_hvps_derivative():
    loss = _torch_network()
    assert loss.check_third(loss.start) < 1e-8
    rng = np.random.default_rng(3)
    v, w = rng.standard_normal((2, loss.start.size))
    np.testing.assert_allclose(loss.third(loss.start, v, w), loss.third(loss.start, w, v), rtol=1e-10, atol=1e-14)


def test_torch_double_backward_hvp_equals_forward_over_reverse():
    assert_linearize_agrees(_torch_network())


def test_torch_objective_errors_are_one_line():
    from memless.frameworks.torch import objective
    with pytest.raises(memless.LossError, match="model must be a torch.nn.Module"):
        objective(object(), lambda o, t: o, (1, 2))
    with pytest.raises(memless.LossError, match="batch must be"):
        objective(torch.nn.Linear(2, 1), lambda o, t: o, (1,))


def test_the_core_never_imports_torch():
    import subprocess
    import sys
    code = ("import memless, memless.studies.analysis, memless.frameworks, memless.show.report, sys; "
            "print('torch' in sys.modules, 'jax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False False"


def _classifier(*middle):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), *middle, torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()


def _batch():
    generator = torch.Generator().manual_seed(1)
    return torch.randn(20, 5, dtype=torch.float64, generator=generator), torch.randint(0, 3, (20,), generator=generator)


def test_torch_objective_never_changes_the_users_buffers():
    """BatchNorm in train mode updates its running statistics on every forward pass: memless evaluates on
    copies, so the model's buffers (running_mean, running_var, num_batches_tracked) and parameters come back
    bit for bit, and the correction is the same on a second call."""
    from memless.frameworks.torch import objective
    net = _classifier(torch.nn.BatchNorm1d(8))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    loss = objective(net, torch.nn.functional.cross_entropy, _batch())
    first = memless.correction(memless.get_optimizer("adamw"), loss, None, lr=1e-3)
    second = memless.correction(memless.get_optimizer("adamw"), loss, None, lr=1e-3)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    np.testing.assert_array_equal(first, second)


def test_torch_objective_refuses_a_random_loss_and_leaves_the_rng_alone():
    """Dropout in train mode makes two evaluations at the same parameters differ (two identical corrections
    differed by 2.6 relative): refused in one line naming Dropout and the fix; the check restores torch's
    random state, and the same model in eval mode is accepted."""
    from memless.frameworks.torch import objective
    net = _classifier(torch.nn.Dropout(0.3))
    state = torch.random.get_rng_state()
    with pytest.raises(memless.LossError, match=r"differs between two evaluations.*Dropout in train mode.*model\.eval"):
        objective(net, torch.nn.functional.cross_entropy, _batch())
    assert torch.equal(state, torch.random.get_rng_state())
    net.eval()
    objective(net, torch.nn.functional.cross_entropy, _batch())


def test_a_torch_loss_without_a_forward_mode_double_backward_falls_back_to_reverse_over_reverse():
    """torch's mse_loss raises 'ZeroTensors are immutable' under torch.func.jvp of its gradient (an outsider
    found every nn.Sequential with F.mse_loss refused); the HVP then comes from a double backward."""
    torch = pytest.importorskip("torch")
    import memless.frameworks.torch as mt
    torch.manual_seed(0)
    x, y = torch.randn(32, 4, dtype=torch.float64), torch.randn(32, 2, dtype=torch.float64)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).double()
    loss = mt.objective(model, torch.nn.functional.mse_loss, (x, y))
    assert loss.hvp_error is not None and loss.hvp_error < 1e-6          # checked against differences at the start
    theta = loss.start + 0.01
    v = np.random.default_rng(0).normal(size=theta.shape)
    step = 1e-5
    difference = (loss.gradient(theta + step * v) - loss.gradient(theta - step * v)) / (2 * step)
    np.testing.assert_allclose(loss.hvp(theta, v), difference, rtol=1e-6, atol=1e-8)
    assert np.all(np.isfinite(memless.correction(memless.get_optimizer("adamw"), loss, None, lr=1e-3)))
