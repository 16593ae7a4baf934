"""memless-ademamix: the conformance kit, the paper's algorithm, the closed form, the registry."""
import numpy as np
import pytest

import memless
import memless.testing

pytest.importorskip("memless_ademamix", reason="the plugin is not installed (pip install ./plugins/memless-ademamix)")
from memless_ademamix import AdEMAMix  # noqa: E402


def loss(t):
    return (t ** 4).sum() / 4 + 0.5 * t[0] * t[1] + 0.2 * (t ** 3).sum()


def grad(t):
    g = t ** 3 + 0.6 * t ** 2
    return g + 0.5 * np.array([t[1], t[0]])


def hess(t):
    return np.diag(3 * t ** 2 + 1.2 * t) + 0.5 * np.array([[0.0, 1.0], [1.0, 0.0]])


T0 = np.array([0.8, -0.5])


@pytest.mark.slow
def test_conformance_kit():
    result = memless.testing.check_optimizer(AdEMAMix(beta3=0.99, alpha=2.0, weight_decay=0.01))
    assert result.passed, result.summary()
    assert {c.name for c in result.checks} == {"direction", "streaming", "correction", "order"}


def test_step_is_the_papers_algorithm():
    """Algorithm 1 of Pagliardini et al. (no schedulers), written out by hand."""
    b1, b2, b3, alpha, eps, lam, lr = 0.9, 0.99, 0.995, 3.0, 1e-8, 0.01, 0.01
    opt = AdEMAMix(beta1=b1, beta2=b2, beta3=b3, alpha=alpha, eps=eps, weight_decay=lam)
    theta, m1, m2, v = T0.copy(), 0.0, 0.0, 0.0
    expected = [theta.copy()]
    for t in range(1, 41):
        g = grad(theta)
        m1, m2, v = b1 * m1 + (1 - b1) * g, b3 * m2 + (1 - b3) * g, b2 * v + (1 - b2) * g ** 2
        theta = theta - lr * ((m1 / (1 - b1 ** t) + alpha * m2) / (np.sqrt(v / (1 - b2 ** t)) + eps) + lam * theta)
        expected.append(theta.copy())
    np.testing.assert_allclose(memless.trajectory(opt, loss, T0, lr=lr, steps=40), expected, rtol=1e-11)


def test_limit_correction_closed_form():
    """F = (1+alpha) g/(|g|+eps) + lambda theta; M = h [b1/(1-b1) + alpha b3/(1-b3)
    - (1+alpha) b2/(1-b2) |g|/(|g|+eps)] H F / (|g|+eps), derived by hand from Section 3.2."""
    b1, b2, b3, alpha, eps, lam, h = 0.8, 0.9, 0.95, 2.0, 0.05, 0.1, 1e-3
    opt = AdEMAMix(beta1=b1, beta2=b2, beta3=b3, alpha=alpha, eps=eps, weight_decay=lam)
    g, H = grad(T0), hess(T0)
    a = np.abs(g)
    HF = H @ ((1 + alpha) * g / (a + eps) + lam * T0)
    parts = memless.correction_terms(opt, loss, T0, lr=h)
    np.testing.assert_allclose(parts["fast"], h * b1 / (1 - b1) * HF / (a + eps), rtol=1e-10)
    np.testing.assert_allclose(parts["slow"], h * alpha * b3 / (1 - b3) * HF / (a + eps), rtol=1e-10)
    np.testing.assert_allclose(parts["second-moment"],
                               -h * (1 + alpha) * b2 / (1 - b2) * a / (a + eps) ** 2 * HF, rtol=1e-10)


def test_installed_plugin_is_discovered():
    """`pip install plugins/memless-ademamix` registers it under its distribution's name."""
    entry = memless.optimizers.registry.entries(refresh=True)["ademamix"]
    assert not entry.broken and entry.distribution == "memless-ademamix" and entry.version == "0.1.0"
    assert isinstance(memless.get_optimizer("ademamix", alpha=1.0), AdEMAMix)


def test_slow_memory_regularizes():
    from memless.studies.analysis import analyze
    a = analyze(memless.get_optimizer("ademamix"), points=4, evidence_steps=100)
    effects = {c.name: c.effect for c in a.channels}
    assert effects["slow"] == "regularizing" and effects["second-moment"] == "anti-regularizing"
    assert a.net_effect == "regularizing" and a.basis == "measured"     # the plugin declares no structure
    assert all(e.agrees for e in a.evidence)                            # regularizing on every evidence loss
    assert any("|M|/|F| reaches" in c for c in a.caveats)               # at h = 1e-3 far outside the theory
