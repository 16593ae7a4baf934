"""Losses computed by a framework: the same loss in autograd and in PyTorch gives the same
corrections for every built-in, to 2e-10 of |M| in float64 (measured worst: 1.0e-10, Lion,
whose eps/(g^2 + eps)^(3/2) at eps = 1e-8 amplifies the two frameworks' rounding)."""
import numpy as np
import pytest

import memless
from reference import FRAMEWORK_OPTIMIZERS, assert_linearize_agrees, assert_same_corrections_as
from memless.frameworks import ExternalLoss
from memless.losses import REFERENCE_LOSSES

NETWORK = REFERENCE_LOSSES["network"]


def test_external_loss_equals_the_autograd_loss_it_wraps():
    from autograd import grad

    from memless._autodiff import jvp
    curvy = REFERENCE_LOSSES["curvy"]
    g = grad(curvy.loss)
    external = ExternalLoss(lambda t: float(curvy.loss(t)), g, lambda t, v: jvp(g, t, v)[1], start=curvy.start)
    for name in ("heavy-ball", "adamw", "nadam", "rmsprop", "lion"):
        opt = memless.get_optimizer(name)
        for n in (None, 5):
            np.testing.assert_allclose(memless.correction(opt, external, None, lr=1e-3, n=n),
                                       memless.correction(opt, "curvy", None, lr=1e-3, n=n), rtol=1e-13, atol=0)


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

    from memless._autodiff import jvp
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
    code = ("import memless, memless.analysis, memless.frameworks, memless.report, sys; "
            "print('torch' in sys.modules, 'jax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False False"
