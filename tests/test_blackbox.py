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


torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install memless[torch])")
from memless.frameworks.blackbox import TorchOptimizer  # noqa: E402

TORCH_CASES = [
    ((torch.optim.SGD, dict(momentum=0.9)), ("heavy-ball", dict(beta=0.9))),
    ((torch.optim.SGD, dict(momentum=0.8, nesterov=True)), ("nesterov", dict(beta=0.8))),
    ((torch.optim.AdamW, dict(betas=(0.9, 0.99), eps=1e-3, weight_decay=0.05)),
     ("adamw", dict(beta1=0.9, beta2=0.99, eps=1e-3, eps_inside=False, weight_decay=0.05))),
    ((torch.optim.RMSprop, dict(alpha=0.9, eps=1e-12)), ("rmsprop", dict(rho=0.9, eps=1e-24))),
]


@pytest.mark.parametrize("torch_case,builtin", TORCH_CASES, ids=["sgd-momentum", "sgd-nesterov", "adamw", "rmsprop"])
def test_torch_optimizers_give_the_builtin_limit_correction(torch_case, builtin):
    """The limit: one derivative along the stationary history direction k F, the replay doubled
    from 200 steps until M changes by < 1e-9; relative error <= 1e-7 (measured 5e-11 to 2e-10:
    the replay's truncation, above the difference quotients' estimated 1e-12).  AdamW at
    beta2 = 0.95 here: at 0.99 the replay needs 6400 steps (13 s), at 0.999 51200."""
    cls, kwargs = torch_case
    if cls is torch.optim.AdamW:
        kwargs = dict(kwargs, betas=(0.9, 0.95))
        builtin = (builtin[0], dict(builtin[1], beta2=0.95))
    box = TorchOptimizer(cls, **kwargs)
    ref = memless.get_optimizer(builtin[0], **builtin[1])
    ours, info = memless.correction(box, "curvy", None, lr=1e-3, full_output=True)
    reference = memless.correction(ref, "curvy", None, lr=1e-3)
    assert info.converged and info.tail <= 1e-9 and info.terms >= 400
    assert box.derivative_error < 1e-9
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-7 * np.max(np.abs(reference)))


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


def _newton_schulz_float64(grad, ns_coefficients, ns_steps, eps):
    """torch.optim._muon._zeropower_via_newtonschulz with its one bfloat16 cast removed."""
    a, b, c = ns_coefficients
    X = grad.double()
    if grad.size(0) > grad.size(1):
        X = X.T
    X = X / X.norm().clamp(min=eps)
    for _ in range(ns_steps):
        gram = X @ X.T
        X = torch.addmm(X, torch.addmm(gram, gram, gram, beta=b, alpha=c), X, beta=a)
    return X.T if grad.size(0) > grad.size(1) else X


muon_available = pytest.mark.skipif(not hasattr(torch.optim, "Muon"), reason="this torch has no torch.optim.Muon")


@muon_available
def test_torch_muon_in_float64_gives_the_builtin_muon_correction(monkeypatch):
    """torch.optim.Muon on the 'network' loss (two matrices, each its own parameter), with its
    Newton-Schulz run in float64: the built-in muon's M^(n) and limit, to 1e-7 relative."""
    monkeypatch.setattr(torch.optim._muon, "_zeropower_via_newtonschulz", _newton_schulz_float64)
    box = TorchOptimizer(torch.optim.Muon, momentum=0.5, weight_decay=0.1)
    ref = memless.get_optimizer("muon", momentum=0.5, weight_decay=0.1)
    for n in (3, 12, None):
        ours = memless.correction(box, "network", None, lr=1e-3, n=n)
        reference = memless.correction(ref, "network", None, lr=1e-3, n=n)
        np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-7 * np.max(np.abs(reference)))
        assert box.derivative_error < 1e-8


@muon_available
def test_torch_muon_as_shipped_is_flagged_not_smooth():
    """torch.optim.Muon casts to bfloat16 inside its Newton-Schulz: its replay is piecewise constant at
    the scale of the difference quotients, and the adapter says so instead of returning a quiet number."""
    box = TorchOptimizer(torch.optim.Muon, momentum=0.5)
    with pytest.warns(memless.DerivativeWarning, match="not smooth"):
        memless.correction(box, "network", None, lr=1e-3, n=3)
    assert box.derivative_error > 1e-6



def test_a_smooth_black_box_does_not_warn_on_negligible_history_blocks():
    """Late history blocks contribute almost nothing: their relative error is rounding, not a kink.
    The error is reported relative to the largest derivative of the call (here below 1e-9)."""
    import warnings
    box = StepFunction(_heavy_ball, init=np.zeros_like)
    with warnings.catch_warnings():
        warnings.simplefilter("error", memless.DerivativeWarning)
        for n in (200, None):
            memless.correction(box, "curvy", None, lr=0.01, n=n)
            assert box.derivative_error < 1e-9
        memless.engine.memory_profile(box, "curvy", None, n=64)


def test_torch_elementwise_stacking_equals_parameter_groups():
    """AdamW's replays stacked along a new axis of each matrix (the default for torch.optim's elementwise
    classes) give the parameter-group replays' M on the 'network' loss."""
    stacked = TorchOptimizer(torch.optim.AdamW, betas=(0.9, 0.95), weight_decay=0.1)
    grouped = TorchOptimizer(torch.optim.AdamW, betas=(0.9, 0.95), weight_decay=0.1, elementwise=False)
    assert stacked.elementwise and not grouped.elementwise
    for n in (3, 30):
        np.testing.assert_allclose(memless.correction(stacked, "network", None, lr=1e-3, n=n),
                                   memless.correction(grouped, "network", None, lr=1e-3, n=n), rtol=1e-12, atol=0)


# -- honest limits, measured memory, and a step that is not a function ---------------------------


def _float32_heavy_ball(grads, params, state):
    state = (0.5 * state + grads).astype(np.float32).astype(float)
    return state, state


def test_a_limit_whose_differences_are_not_accurate_is_not_converged_and_gets_no_verdict():
    """A step that rounds to float32 inside: its difference quotients are off by ~1e-1 of M (the estimate), far
    above the 1e-9 asked for, so the limit is reported not converged, with the size of the error, and the
    analysis prints no verdict from it (before: the settling tolerance grew with the error, converged=True)."""
    from memless.studies.analysis import analyze
    box = StepFunction(_float32_heavy_ball, init=np.zeros_like, name="float32-heavy-ball", limit_n=50)
    box.max_limit_n = 400
    with pytest.warns(memless.DerivativeWarning, match="may be off by"):
        _, info = memless.correction(box, "curvy", None, lr=0.01, full_output=True)
    assert not info.converged and box.derivative_error > 1e-6
    with pytest.warns(memless.DerivativeWarning):
        analysis = analyze(box, "curvy", lr=1e-3, points=2, evidence_losses=("curvy",), evidence_steps=20)
    assert analysis.net_effect == memless.studies.analysis.Effect.UNRELIABLE
    assert analysis.verdict.startswith("No verdict: the limit correction did not settle")
    assert all(item.agrees is None for item in analysis.evidence)
    assert {str(row.effect) for row in analysis.channels} == {"no verdict"}


def test_a_limit_that_has_not_settled_by_the_longest_replay_is_not_converged():
    """heavy-ball beta = 0.9 replayed at most 200 steps: S_2 has settled (memory decays) but M still changes
    by ~1e-3 over the last doubling, above 1e-9: converged=False with a warning, never a quiet number."""
    box = StepFunction(lambda g, p, m: (0.9 * m + g,) * 2, init=np.zeros_like, limit_n=50)
    box.max_limit_n = 200
    with pytest.warns(memless.MemoryTruncationWarning, match="has not settled"):
        _, info = memless.correction(box, "curvy", None, lr=0.01, full_output=True)
    assert not info.converged and 1e-6 < info.tail < 1e-1


def test_a_step_with_hidden_state_is_refused():
    """F^(n) must be a function of the history: a step that counts its calls gives different directions on two
    identical replays, and memless says so instead of differentiating noise."""
    calls = []

    def counting(grads, params, state):
        calls.append(1)
        state = 0.5 * state + grads * (1 + 1e-3 * len(calls))
        return state, state

    box = StepFunction(counting, init=np.zeros_like, name="counting")
    for n in (5, None):
        with pytest.raises(memless.OptimizerError, match="not a function of"):
            memless.correction(box, "curvy", None, lr=0.01, n=n)


def test_reading_history_beyond_the_declared_window_is_refused():
    """An optimizer that declares window = 2 but reads history[-1]: the engine sums only the window, so M would
    silently be 0 for that read; it raises an OptimizerError naming the window instead."""
    class Averaging(memless.MemoryOptimizer):
        name = "oldest-and-newest"
        window = 2

        def direction(self, history, gradient):
            return 0.5 * gradient(history[0]) + 0.5 * gradient(history[-1])

    for n in (5, None):
        with pytest.raises(memless.OptimizerError, match=r"read history\[\d+\], outside its declared window=2"):
            memless.correction(Averaging(), "curvy", None, lr=0.01, n=n)
    assert np.all(np.isfinite(memless.correction(Averaging(), "curvy", None, lr=0.01, n=1)))   # within the window
