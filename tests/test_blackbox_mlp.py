"""Black boxes on a real model: a cross-entropy MLP with biases (6-12-4, 136 parameters) that none of
memless's reference losses resembles.  torch.optim's AdamW, Adam, RMSprop, Adamax, SGD (momentum,
Nesterov) and optax's adam, adamw, sgd(momentum) give the built-ins' M^(n) at n = 3, 30 and the limit to
1e-8 relative (Adamax: an explicit history-form reference written here), at beta2 = 0.95 and 0.999 --
derivatives by forward mode through the step, exact up to rounding (measured 1e-15 to 1e-11)."""
import autograd.numpy as anp
import numpy as np
import pytest

import memless

torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install memless[torch])")
from memless.frameworks.blackbox import TorchOptimizer  # noqa: E402

RNG = np.random.default_rng(7)
X = RNG.normal(size=(40, 6))
Y = np.eye(4)[RNG.integers(0, 4, size=40)]
SHAPES = [(6, 12), (12,), (12, 4), (4,)]
SIZES = [int(np.prod(s)) for s in SHAPES]
THETA = np.concatenate([RNG.normal(scale=0.5, size=n) for n in SIZES])


def mlp_loss(t):
    """Mean cross-entropy of a tanh MLP with biases; t is the flat parameter vector."""
    pieces, start = [], 0
    for shape, size in zip(SHAPES, SIZES):
        pieces.append(anp.reshape(t[start:start + size], shape))
        start += size
    W1, b1, W2, b2 = pieces
    z = anp.dot(anp.tanh(anp.dot(X, W1) + b1), W2) + b2
    z = z - anp.max(z, axis=1, keepdims=True)
    return -anp.mean(anp.sum(Y * (z - anp.log(anp.sum(anp.exp(z), axis=1, keepdims=True))), axis=1))


class AdamaxHistory(memless.MemoryOptimizer):
    """torch.optim.Adamax in history form, written out: F^(n) = mhat / u with
    mhat = (1-b1) sum_k b1^k g_(n-k) / (1 - b1^(n+1)) and u = max_k b2^k (|g_(n-k)| + eps)."""

    name = "adamax-history"

    def __init__(self, beta1, beta2, eps=1e-8):
        super().__init__()
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def direction(self, history, gradient):
        n = len(history) - 1
        gs = [gradient(theta) for theta in history]           # newest first
        m = sum((1 - self.beta1) * self.beta1 ** k * g for k, g in enumerate(gs)) / (1 - self.beta1 ** (n + 1))
        u = anp.max(anp.stack([self.beta2 ** k * (anp.abs(g) + self.eps) for k, g in enumerate(gs)]), axis=0)
        return m / u


def _cases(beta2):
    adam = dict(beta1=0.9, beta2=beta2, eps=1e-8, eps_inside=False)
    return [
        (lambda: TorchOptimizer(torch.optim.AdamW, betas=(0.9, beta2), weight_decay=0.01),
         lambda: memless.get_optimizer("adamw", weight_decay=0.01, **adam)),
        (lambda: TorchOptimizer(torch.optim.Adam, betas=(0.9, beta2)), lambda: memless.get_optimizer("adam", **adam)),
        (lambda: TorchOptimizer(torch.optim.RMSprop, alpha=beta2),
         lambda: memless.get_optimizer("rmsprop", rho=beta2, eps=1e-8, eps_inside=False)),
        (lambda: TorchOptimizer(torch.optim.Adamax, betas=(0.9, beta2)), lambda: AdamaxHistory(0.9, beta2)),
    ]


MOMENTUM = [
    (lambda: TorchOptimizer(torch.optim.SGD, momentum=0.9), lambda: memless.get_optimizer("heavy-ball", beta=0.9)),
    (lambda: TorchOptimizer(torch.optim.SGD, momentum=0.9, nesterov=True),
     lambda: memless.get_optimizer("nesterov", beta=0.9)),
]


def assert_same_corrections(box, reference, ns=(3, 30, None)):
    for n in ns:
        ours, info = memless.correction(box, mlp_loss, THETA, lr=1e-3, n=n, full_output=True)
        theirs = memless.correction(reference, mlp_loss, THETA, lr=1e-3, n=n)
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-8 * np.max(np.abs(theirs)),
                                   err_msg=f"{box.label} at n={n}")
        assert box.derivative_error == 0.0            # forward mode: no differences taken
        if n is None:
            assert info.converged and info.tail <= 1e-9


@pytest.mark.parametrize("beta2", [0.95, pytest.param(0.999, marks=pytest.mark.slow)])
@pytest.mark.parametrize("which", range(4), ids=["adamw", "adam", "rmsprop", "adamax"])
def test_torch_adaptive_black_boxes_match_on_an_mlp(which, beta2):
    make_box, make_reference = _cases(beta2)[which]
    box = make_box()
    assert box.derivatives == "forward"
    assert_same_corrections(box, make_reference())


@pytest.mark.parametrize("which", range(2), ids=["sgd-momentum", "sgd-nesterov"])
def test_torch_momentum_black_boxes_match_on_an_mlp(which):
    make_box, make_reference = MOMENTUM[which]
    assert_same_corrections(make_box(), make_reference())


def test_sgd_with_dampening_falls_back_to_differences():
    """torch's SGD clones a detached gradient into its first momentum buffer; memless starts the buffer at 0
    instead, which is the same only without dampening: with dampening the derivative is by differences."""
    box = TorchOptimizer(torch.optim.SGD, momentum=0.9, dampening=0.5)
    assert box.derivatives == "differences"
    forced = TorchOptimizer(torch.optim.SGD, momentum=0.9, dampening=0.5, derivatives="forward")
    ours = memless.correction(box, mlp_loss, THETA, lr=1e-3, n=5)
    wrong = memless.correction(forced, mlp_loss, THETA, lr=1e-3, n=5)
    assert np.max(np.abs(ours - wrong)) > 1e-3 * np.max(np.abs(ours))     # why it is not the default


def test_forward_mode_equals_differences_on_every_listed_torch_class():
    """Every class of FORWARD_TORCH: the forward-mode M^(n) equals the differences' M^(n) (n = 4) to the
    differences' accuracy -- the check behind the list, for the classes memless has no built-in for too."""
    from memless.frameworks.optimizers.blackbox import FORWARD_TORCH
    settings = {"SGD": dict(momentum=0.9), "ASGD": dict(t0=2.0)}
    for name in sorted(FORWARD_TORCH):
        cls = getattr(torch.optim, name)
        exact = TorchOptimizer(cls, **settings.get(name, {}))
        differences = TorchOptimizer(cls, derivatives="differences", **settings.get(name, {}))
        assert exact.derivatives == "forward"
        ours = memless.correction(exact, mlp_loss, THETA, lr=1e-3, n=4)
        theirs = memless.correction(differences, mlp_loss, THETA, lr=1e-3, n=4)
        scale = np.max(np.abs(theirs))
        assert scale > 0 or name in ("Rprop", "ASGD")        # sign steps; ASGD averages off the path
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=max(1e-6 * scale, 1e-15), err_msg=name)


optax = pytest.importorskip("optax", reason="optax is not installed (pip install memless[jax])")


@pytest.mark.parametrize("beta2", [0.95, pytest.param(0.999, marks=pytest.mark.slow)])
@pytest.mark.parametrize("factory", ["adam", "adamw"])
def test_optax_adaptive_black_boxes_match_on_an_mlp(factory, beta2):
    from memless.frameworks.blackbox import OptaxTransformation
    extra = dict(weight_decay=0.01) if factory == "adamw" else {}
    box = OptaxTransformation(getattr(optax, factory), b1=0.9, b2=beta2, **extra)
    reference = memless.get_optimizer(factory, beta1=0.9, beta2=beta2, eps=1e-8, eps_inside=False, **extra)
    assert_same_corrections(box, reference)


def test_optax_sgd_momentum_matches_on_an_mlp():
    from memless.frameworks.blackbox import OptaxTransformation
    assert_same_corrections(OptaxTransformation(optax.sgd, momentum=0.9), memless.get_optimizer("heavy-ball", beta=0.9))


@pytest.mark.slow
def test_adagrad_memory_is_measured_not_to_decay():
    """torch.optim.Adagrad sums every squared gradient: its memory does not decay, and memless measures that
    (S_2 still grows by the longest replay) instead of assuming it: the limit is refused with the numbers, the
    memory profile says so, and the reason says "measured" -- never "declared" for a black box."""
    from memless.engine.corrections import memory_profile
    box = TorchOptimizer(torch.optim.Adagrad)
    assert box.declared_decay() is None
    with pytest.raises(memless.MemlessError, match="memory does not decay .*still changed by"):
        memless.correction(box, mlp_loss, THETA, lr=1e-3)
    profile = memory_profile(box, mlp_loss, THETA)
    assert not profile.decays and profile.reason.startswith("measured")
    adamw = memory_profile(TorchOptimizer(torch.optim.AdamW), mlp_loss, THETA)       # beta2 = 0.999: decays
    assert adamw.decays and adamw.reason.startswith("measured")
