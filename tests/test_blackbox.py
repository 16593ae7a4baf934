"""Black-box optimizers: a step function or a torch.optim class becomes a MemoryOptimizer; its
correction (replay + difference quotients, HVPs from the loss) equals the matching built-in's."""
import numpy as np
import pytest

import memless
from memless.frameworks.blackbox import StepFunction


def _heavy_ball(grads, params, state):
    state = 0.5 * state + grads
    return state, state


def test_step_function_matches_the_builtin_at_finite_n_and_in_the_limit():
    box = StepFunction(_heavy_ball, init=np.zeros_like, name="my-heavy-ball")
    ref = memless.get_optimizer("heavy-ball", beta=0.5)
    for n in (1, 6, 25, None):
        ours = memless.correction(box, "curvy", None, lr=0.01, n=n)
        np.testing.assert_allclose(ours, memless.correction(ref, "curvy", None, lr=0.01, n=n), rtol=1e-7, atol=0)
    assert 0 <= box.derivative_error < 1e-6
    np.testing.assert_allclose(memless.trajectory(box, "curvy", None, lr=0.01, steps=30),
                               memless.trajectory(ref, "curvy", None, lr=0.01, steps=30), rtol=0, atol=1e-15)


def test_step_function_errors_are_one_line():
    with pytest.raises(memless.MemlessError, match="needs callables"):
        StepFunction(3, init=np.zeros_like)


torch = pytest.importorskip("torch")
from memless.frameworks.blackbox import TorchOptimizer  # noqa: E402

TORCH_CASES = [
    ((torch.optim.SGD, dict(momentum=0.9)), ("heavy-ball", dict(beta=0.9))),
    ((torch.optim.SGD, dict(momentum=0.8, nesterov=True)), ("nesterov", dict(beta=0.8))),
    ((torch.optim.AdamW, dict(betas=(0.9, 0.99), eps=1e-3, weight_decay=0.05)),
     ("adamw", dict(beta1=0.9, beta2=0.99, eps=1e-3, eps_inside=False, weight_decay=0.05))),
    ((torch.optim.RMSprop, dict(alpha=0.9, eps=1e-12)), ("rmsprop", dict(rho=0.9, eps=1e-24))),
]


@pytest.mark.parametrize("torch_case,builtin", TORCH_CASES, ids=["sgd-momentum", "sgd-nesterov", "adamw", "rmsprop"])
def test_torch_optimizers_give_the_builtin_correction(torch_case, builtin):
    """Finite n: relative error <= 1e-7 (measured 1e-13 to 6e-11); the paths agree to 1e-10 (RMSprop's
    eps placement leaves 2.5e-12 over 20 steps; the others agree to 1e-16).
    (torch's RMSprop puts eps outside the root, memless's inside: eps = 1e-12 / 1e-24 makes both
    negligible here.)"""
    cls, kwargs = torch_case
    box = TorchOptimizer(cls, **kwargs)
    ref = memless.get_optimizer(builtin[0], **builtin[1])
    for n in (3, 30):
        ours = memless.correction(box, "curvy", None, lr=1e-3, n=n)
        reference = memless.correction(ref, "curvy", None, lr=1e-3, n=n)
        np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-7 * np.max(np.abs(reference)))
    np.testing.assert_allclose(memless.trajectory(box, "curvy", None, lr=1e-2, steps=20),
                               memless.trajectory(ref, "curvy", None, lr=1e-2, steps=20), rtol=0, atol=1e-10)


def test_torch_optimizer_refuses_its_own_lr():
    with pytest.raises(memless.MemlessError, match="leave lr out"):
        TorchOptimizer(torch.optim.SGD, lr=0.1)
