"""memless-shampoo: the conformance kit, a hand-written loop, the registry, the report."""
import io

import numpy as np
import pytest
from autograd import grad

import memless
import memless.testing

pytest.importorskip("memless_shampoo", reason="the plugin is not installed (pip install ./plugins/memless-shampoo)")
from memless_shampoo import Shampoo  # noqa: E402

from memless.losses import REFERENCE_LOSSES  # noqa: E402


def _inverse_fourth_root(A):
    w, V = np.linalg.eigh(A)
    return V @ np.diag(w ** -0.25) @ V.T


def test_step_is_the_hand_written_shampoo_loop():
    ref = REFERENCE_LOSSES["factorization"]
    layout, gradient = ref.loss.layout, grad(ref.loss)
    beta, eps, h, steps = 0.9, 1e-3, 0.01, 15
    params = {k: np.array(v) for k, v in layout.unflatten(ref.start.copy()).items()}
    L = {k: np.zeros((v.shape[0],) * 2) for k, v in params.items()}
    R = {k: np.zeros((v.shape[1],) * 2) for k, v in params.items()}
    path = [ref.start.copy()]
    for t in range(1, steps + 1):
        g = layout.unflatten(gradient(layout.flatten(params)))
        for k in params:
            G = np.array(g[k])
            L[k] = beta * L[k] + (1 - beta) * G @ G.T
            R[k] = beta * R[k] + (1 - beta) * G.T @ G
            Lhat, Rhat = L[k] / (1 - beta ** t), R[k] / (1 - beta ** t)
            params[k] = params[k] - h * _inverse_fourth_root(Lhat + eps * np.eye(len(Lhat))) @ G @ \
                _inverse_fourth_root(Rhat + eps * np.eye(len(Rhat)))
        path.append(layout.flatten(params))
    ours = memless.trajectory(Shampoo(beta=beta, eps=eps), "factorization", None, lr=h, steps=steps)
    np.testing.assert_allclose(ours, np.array(path), rtol=0, atol=1e-12)


@pytest.mark.slow
def test_conformance_kit():
    """Runs on the matrix reference losses; the JVP through eigh is taken in reverse mode."""
    result = memless.testing.check_optimizer(Shampoo())
    assert result.passed and len(result.checks) == 8, result.summary()


def test_registered_and_reported_without_a_closed_form():
    from rich.console import Console

    from memless.studies.analysis import analyze
    from memless.show.report import render

    assert "shampoo" in memless.available()
    a = analyze(memless.get_optimizer("shampoo", beta=0.9, eps=0.01), steps=60, points=3, evidence_losses=())
    console = Console(file=io.StringIO(), width=100, color_system=None)
    console.print(render(a))
    text = console.file.getvalue()
    assert "no closed form" in text and a.basis == "measured"
    assert [c.name for c in a.channels] == ["left", "right", "gradient"]
