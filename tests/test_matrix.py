"""Matrix optimizers: parameters with structure, the polar factor's derivative, Muon, Lion-K's
nuclear and logcosh K, and the JVP fallback for functions autograd differentiates only in reverse.

Every engine number is held to an independent computation: a hand-written float64 loop of
torch.optim.Muon's update, torch.optim.Muon itself (where torch is installed), central
differences of the polar factor, and a finite difference of F^(n) along Eq. (12)'s history.
"""
import math

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad

import memless
import memless.testing
from memless.numerics.autodiff import jvp, jvp_mode
from memless.errors import HyperparameterError, LossError
from memless.numerics.linalg import newton_schulz, nuclear_norm, polar, polar_derivative
from memless.losses import REFERENCE_LOSSES
from memless.engine.objective import Objective
from memless.parameters import Layout, structured
from memless.testing import finite_difference_correction
from memless.studies import meanings

FACTOR = REFERENCE_LOSSES["factorization"]
NETWORK = REFERENCE_LOSSES["network"]
LAYOUT = FACTOR.loss.layout
gradient = grad(FACTOR.loss)


# -- parameters with structure --------------------------------------------------------

def test_a_dict_theta_a_structured_loss_and_a_hand_flattened_loss_give_one_correction():
    def of_params(p):
        return anp.sum(anp.tanh(anp.dot(p["W"], p["b"])) ** 2) + anp.sum(p["W"] ** 4) / 4

    params = {"W": np.array([[0.3, -0.2, 0.5], [0.1, 0.4, -0.6]]), "b": np.array([0.7, -0.1, 0.2])}

    def flat(t):
        return of_params({"W": anp.reshape(t[:6], (2, 3)), "b": t[6:]})

    theta = np.concatenate([params["W"].ravel(), params["b"]])
    opt = memless.get_optimizer("adamw", beta1=0.8, beta2=0.9, eps=0.01)
    expected = memless.correction(opt, flat, theta, lr=0.01)
    np.testing.assert_allclose(memless.correction(opt, of_params, params, lr=0.01), expected, rtol=1e-13)
    f = structured(of_params, params)
    np.testing.assert_allclose(memless.correction(opt, f, None, lr=0.01), expected, rtol=1e-13)
    np.testing.assert_allclose(memless.trajectory(opt, of_params, params, lr=0.01, steps=5),
                               memless.trajectory(opt, flat, theta, lr=0.01, steps=5), rtol=1e-13)


def test_layout_errors_are_one_line_and_name_the_entry():
    layout = Layout({"W": (2, 3), "b": (3,)})
    with pytest.raises(LossError, match="'W' has shape \\(3, 2\\); the layout says \\(2, 3\\)"):
        layout.flatten({"W": np.zeros((3, 2)), "b": np.zeros(3)})
    with pytest.raises(LossError, match="do not match the layout"):
        layout.flatten({"W": np.zeros((2, 3))})
    with pytest.raises(LossError, match="every dimension must be >= 1"):
        Layout({"W": (0, 3)})


def test_muon_refuses_vectors_and_flat_vectors_in_one_line_naming_them():
    opt = memless.get_optimizer("muon")
    params = {"W": np.ones((3, 2)) + np.eye(3, 2), "b": np.ones(2)}

    def loss(p):
        return anp.sum(anp.dot(p["W"], p["b"]) ** 2)

    with pytest.raises(HyperparameterError) as info:
        memless.correction(opt, loss, params, lr=1e-3)
    message = str(info.value)
    assert "'b' has shape (2,)" in message and "AdamW" in message and "\n" not in message
    with pytest.raises(HyperparameterError, match="got one flat vector"):
        memless.correction(opt, "curvy", None, lr=1e-3)
    with pytest.raises(HyperparameterError, match="k='nuclear' acts on matrices"):
        memless.correction(memless.get_optimizer("lion", k="nuclear"), "curvy", None, lr=1e-3)


# -- the polar factor and the JVP where autograd has no forward rule --------------------------

@pytest.mark.parametrize("shape", [(5, 3), (3, 5), (4, 4)])
def test_polar_derivative_is_the_central_difference_and_a_psd_self_adjoint_map(shape):
    rng = np.random.default_rng(sum(shape))
    X, E, F = (rng.normal(size=shape) for _ in range(3))
    delta = 1e-6
    central = (polar(X + delta * E) - polar(X - delta * E)) / (2 * delta)
    exact = polar_derivative(X, E)
    np.testing.assert_allclose(exact, central, atol=2e-9)
    np.testing.assert_allclose(jvp(polar, X, E)[1], exact, atol=1e-13)
    with jvp_mode("reverse"):
        np.testing.assert_allclose(jvp(polar, X, E)[1], exact, atol=1e-12)
    assert abs(np.sum(F * polar_derivative(X, E)) - np.sum(E * polar_derivative(X, F))) < 1e-12
    assert np.sum(E * exact) > 0
    np.testing.assert_allclose(grad(nuclear_norm)(X), polar(X), atol=1e-14)


def test_reverse_mode_fallback_differentiates_eigh_as_central_differences():
    """autograd has no forward rule for eigh; jvp falls back to two reverse passes (and keeps
    eigh's eigenvector part, which a zero cotangent would have dropped)."""
    A0 = np.array([[2.0, 1.0, 0.2], [1.0, 3.0, 0.5], [0.2, 0.5, 1.5]])
    E = np.array([[1.0, 0.5, 0.0], [0.5, -1.0, 0.3], [0.0, 0.3, 0.4]])

    def inverse_fourth_root(t):
        w, V = anp.linalg.eigh(A0 + t * E)
        return anp.ravel(anp.dot(V * w ** -0.25, anp.transpose(V)))

    with pytest.raises(NotImplementedError), jvp_mode("forward"):
        jvp(inverse_fourth_root, 0.0, 1.0)
    delta = 1e-6
    central = (inverse_fourth_root(delta) - inverse_fourth_root(-delta)) / (2 * delta)
    np.testing.assert_allclose(jvp(inverse_fourth_root, 0.0, 1.0)[1], central, atol=1e-9)


# -- Muon: the step -------------------------------------------------------------------------

def _newton_schulz(G, coefficients=(3.4445, -4.775, 2.0315), steps=5, eps=1e-7):
    a, b, c = coefficients
    X = G.T if G.shape[0] > G.shape[1] else G
    X = X / max(np.linalg.norm(X), eps)
    for _ in range(steps):
        A = X @ X.T
        X = a * X + (b * A + c * A @ A) @ X
    return X.T if G.shape[0] > G.shape[1] else X


def _torch_muon_loop(theta, lr, steps, momentum=0.95, nesterov=True, weight_decay=0.1, adjust="original",
                     orth=_newton_schulz):
    """torch/optim/_muon.py's _single_tensor_muon, transcribed in float64 numpy."""
    params = {k: np.array(v) for k, v in LAYOUT.unflatten(theta).items()}
    buffers = {k: np.zeros_like(v) for k, v in params.items()}
    path = [theta.copy()]
    for _ in range(steps):
        g = LAYOUT.unflatten(gradient(LAYOUT.flatten(params)))
        for k in params:
            G, buf = np.array(g[k]), buffers[k]
            buf += (1 - momentum) * (G - buf)                       # buf.lerp_(grad, 1 - momentum)
            update = G + momentum * (buf - G) if nesterov else buf  # grad.lerp(buf, momentum)
            A, B = params[k].shape
            ratio = {"original": math.sqrt(max(1, A / B)), "match_rms_adamw": 0.2 * math.sqrt(max(A, B))}[adjust]
            params[k] = params[k] * (1 - lr * weight_decay) - lr * ratio * orth(update)
        path.append(LAYOUT.flatten(params))
    return np.array(path)


@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("adjust", ["original", "match_rms_adamw"])
def test_muon_step_is_torch_update_in_float64_to_rounding(nesterov, adjust):
    opt = memless.get_optimizer("muon", nesterov=nesterov, adjust_lr_fn=adjust)
    path = memless.trajectory(opt, "factorization", None, lr=0.01, steps=20)
    np.testing.assert_allclose(path, _torch_muon_loop(FACTOR.start, 0.01, 20, nesterov=nesterov, adjust=adjust),
                               rtol=0, atol=1e-13)
    exact = memless.get_optimizer("muon", nesterov=nesterov, adjust_lr_fn=adjust, orthogonalize="polar")
    np.testing.assert_allclose(memless.trajectory(exact, "factorization", None, lr=0.01, steps=20),
                               _torch_muon_loop(FACTOR.start, 0.01, 20, nesterov=nesterov, adjust=adjust, orth=polar),
                               rtol=0, atol=1e-13)


def test_muon_agrees_with_torch_optim_muon_to_its_bfloat16_newton_schulz():
    """torch runs the quintic in bfloat16 (8 significant bits); the paths differ by no more than
    each step's lr r times the bfloat16 quintic's measured error, summed over the steps."""
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install memless[torch])")
    from torch.optim._muon import _zeropower_via_newtonschulz

    lr, steps = 0.01, 6
    params = {k: torch.tensor(np.array(v), dtype=torch.float64, requires_grad=True)
              for k, v in LAYOUT.unflatten(FACTOR.start).items()}
    optimizer = torch.optim.Muon(list(params.values()), lr=lr)
    torch_path, budget = [FACTOR.start.copy()], [0.0]
    buffers = {k: np.zeros(v.shape) for k, v in params.items()}
    for _ in range(steps):
        flat = LAYOUT.flatten({k: v.detach().numpy() for k, v in params.items()})
        g = LAYOUT.unflatten(gradient(flat))
        bound = 0.0
        for k, p in params.items():
            p.grad = torch.tensor(np.array(g[k]))
            buffers[k] += 0.05 * (np.array(g[k]) - buffers[k])
            update = np.array(g[k]) + 0.95 * (buffers[k] - np.array(g[k]))
            low = _zeropower_via_newtonschulz(torch.tensor(update), (3.4445, -4.775, 2.0315), 5, 1e-7)
            error = np.max(np.abs(low.double().numpy() - _newton_schulz(update)))
            bound = max(bound, lr * math.sqrt(max(1, p.shape[0] / p.shape[1])) * error)
        optimizer.step()
        torch_path.append(LAYOUT.flatten({k: v.detach().numpy() for k, v in params.items()}))
        budget.append(budget[-1] + 1.5 * bound)
    ours = memless.trajectory(memless.get_optimizer("muon"), "factorization", None, lr=lr, steps=steps)
    gap = np.max(np.abs(np.array(torch_path) - ours), axis=1)
    assert np.all(gap <= np.array(budget) + 1e-12), (gap, budget)
    assert gap[-1] > 0       # torch really ran in lower precision: the comparison can fail
    assert budget[-1] < 0.1 * np.max(np.abs(ours[-1] - ours[0]))


def test_muon_is_lion_k_with_the_nuclear_norm():
    """Nesterov Muon with the exact polar factor, r = 1 and lambda = 0 is Lion-K with K = ||.||_*,
    rho1 = mu^2, rho2 = mu (Chen, Li & Liu 2025): same paths and same corrections."""
    mu = 0.8
    muon = memless.get_optimizer("muon", momentum=mu, orthogonalize="polar", adjust_lr_fn="none", weight_decay=0.0)
    lion = memless.get_optimizer("lion", rho1=mu ** 2, rho2=mu, k="nuclear")
    np.testing.assert_allclose(memless.trajectory(muon, "network", None, lr=0.01, steps=30),
                               memless.trajectory(lion, "network", None, lr=0.01, steps=30), rtol=0, atol=1e-13)
    for n in (3, None):
        np.testing.assert_allclose(memless.correction(muon, "network", None, lr=0.01, n=n),
                                   memless.correction(lion, "network", None, lr=0.01, n=n), rtol=1e-11, atol=1e-15)


# -- Muon: the correction ---------------------------------------------------------------------

MUON_CASES = [dict(orthogonalize="polar", weight_decay=0.0), dict(orthogonalize="polar"),
              dict(), dict(nesterov=False, momentum=0.8), dict(adjust_lr_fn="match_rms_adamw")]


@pytest.mark.parametrize("hp", MUON_CASES, ids=[str(hp) for hp in MUON_CASES])
@pytest.mark.parametrize("mode", ["auto", "reverse"])
def test_muon_engine_is_a_finite_difference_of_eq_12(hp, mode):
    """Forward mode (the polar factor's own rule; the quintic by autograd) and reverse mode (two
    VJPs) both equal a central difference of F^(n) along the history direction.  Tolerance:
    the difference's truncation error, O(delta^2 |F'''|) with delta = 1e-5, about 1e-8 relative."""
    opt = memless.get_optimizer("muon", **hp).bind(LAYOUT)
    obj = Objective(FACTOR.loss)
    theta = FACTOR.start
    for n in (1, 6, 20):
        expected = finite_difference_correction(opt, obj.gradient, theta, 1e-3, n)
        with jvp_mode(mode):
            got = memless.correction(opt, FACTOR.loss, theta, lr=1e-3, n=n)
            generic = memless.correction(opt, FACTOR.loss, theta, lr=1e-3, n=n, method="history")
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-7 * np.max(np.abs(expected)))
        np.testing.assert_allclose(got, generic, rtol=1e-10, atol=1e-14)


def test_muon_limit_is_the_closed_form_with_central_differences_of_the_polar_factor():
    """M = h w r d polar(G)[H F] (w = mu^2/(1-mu)), with d polar replaced by a central
    difference of numpy's SVD: independent of the engine and of the derivative rule."""
    mu, h = 0.9, 1e-3
    opt = memless.get_optimizer("muon", momentum=mu, orthogonalize="polar", weight_decay=0.05).bind(LAYOUT)
    obj = Objective(FACTOR.loss)
    for theta in (FACTOR.start, FACTOR.start + 0.3 * np.cos(np.arange(33))):
        G = LAYOUT.unflatten(obj.gradient(theta))
        F = np.asarray(opt.limit_direction(theta, obj.gradient))
        HF = LAYOUT.unflatten(jvp(obj.gradient, theta, F)[1])
        parts = {}
        for name, (rows, cols) in LAYOUT.shapes.items():
            r = math.sqrt(max(1, rows / cols))
            d = 1e-6
            central = (polar(G[name] + d * HF[name]) - polar(G[name] - d * HF[name])) / (2 * d)
            parts[name] = h * mu ** 2 / (1 - mu) * r * central
        np.testing.assert_allclose(memless.correction(opt, FACTOR.loss, theta, lr=h), LAYOUT.flatten(parts),
                                   rtol=0, atol=1e-8 * np.max(np.abs(LAYOUT.flatten(parts))))


def test_muon_memory_term_grows_like_one_over_sigma_min():
    """Scaling one singular value of the gradient matrix down scales |M| up like 1/sigma_min."""
    rng = np.random.default_rng(3)
    U, _ = np.linalg.qr(rng.normal(size=(4, 3)))
    V, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    stiffness = 1.0 + rng.uniform(size=(4, 3))

    def loss_at(sigma_min):
        shift = U @ np.diag([1.0, 0.7, sigma_min]) @ V.T

        def loss(p):     # at W = 0: gradient = shift, Hessian = diag(stiffness^2), not aligned with U V^T
            W = p["W"]
            return 0.5 * anp.sum((stiffness * W) ** 2) + anp.sum(shift * W) + 0.1 * anp.sum(W ** 4)
        return loss

    opt = memless.get_optimizer("muon", orthogonalize="polar", weight_decay=0.0)
    sizes = []
    for sigma in (1e-1, 1e-2, 1e-3):
        M = memless.correction(opt, loss_at(sigma), {"W": np.zeros((4, 3))}, lr=1e-3)
        sizes.append(np.linalg.norm(M))
    ratios = np.array(sizes[1:]) / np.array(sizes[:-1])
    assert np.all((ratios > 5) & (ratios < 12)), ratios


@pytest.mark.slow
@pytest.mark.parametrize("hp", [dict(), dict(orthogonalize="polar")], ids=["newton-schulz", "polar"])
def test_muon_passes_the_kit(hp):
    result = memless.testing.check_optimizer(memless.get_optimizer("muon", **hp))
    assert result.passed and len(result.checks) == 10, result.summary()          # 5 checks on 2 losses
    assert sum(c.name == "closed form" for c in result.checks) == 2


def test_muon_report_verdict_follows_the_structure():
    """Polar, lambda = 0: declared regularizing (d polar PSD); the default (the quintic, lambda = 0.1):
    measured, and measured regularizing on both matrix reference losses."""
    from memless.studies.analysis import Effect, analyze

    exact = analyze(memless.get_optimizer("muon", orthogonalize="polar", weight_decay=0.0), steps=100, points=4)
    assert exact.basis == "declared" and exact.net_effect == Effect.REGULARIZING
    assert "sigma_min" in exact.verdict and exact.loss == "factorization"
    default = analyze(memless.get_optimizer("muon"), steps=100, points=4)
    assert default.basis == "measured" and default.net_effect == Effect.REGULARIZING
    assert [e.loss for e in default.evidence] == ["factorization", "network"]
    assert all(e.strength > 0 for e in default.evidence)


# -- Lion-K: logcosh and nuclear -----------------------------------------------------------

def test_lion_logcosh_limit_is_its_closed_form():
    """M = h rho1/(1-rho2) kappa sech^2(kappa g) H F, F = tanh(kappa g) (lambda = 0), on curvy."""
    r1, r2, kappa, h = 0.8, 0.9, 3.0, 1e-2
    opt = memless.get_optimizer("lion", rho1=r1, rho2=r2, k="logcosh", kappa=kappa)
    loss = REFERENCE_LOSSES["curvy"]
    theta = loss.start
    g = grad(loss.loss)(theta)
    H = np.array([jvp(grad(loss.loss), theta, e)[1] for e in np.eye(3)])
    F = np.tanh(kappa * g)
    expected = h * r1 / (1 - r2) * kappa / np.cosh(kappa * g) ** 2 * (H @ F)
    np.testing.assert_allclose(memless.correction(opt, loss.loss, theta, lr=h), expected, rtol=1e-12)
    structure = meanings.structure(opt, g[None, :])
    assert structure.effect == memless.studies.analysis.Effect.REGULARIZING and "1/kappa" in structure.reason


def test_lion_logcosh_sharpens_to_sign_and_its_term_vanishes_with_kappa():
    loss = REFERENCE_LOSSES["curvy"]
    sizes = [np.linalg.norm(memless.correction(memless.get_optimizer("lion", k="logcosh", kappa=kappa),
                                               "curvy", None, lr=1e-3)) for kappa in (10.0, 100.0, 1000.0)]
    assert sizes[0] > sizes[1] > sizes[2] and sizes[2] < 1e-20 + 1e-6 * sizes[0]
    F = memless.get_optimizer("lion", k="logcosh", kappa=1e6).limit_direction(loss.start, grad(loss.loss))
    np.testing.assert_allclose(F, np.sign(grad(loss.loss)(loss.start)), atol=1e-12)


def test_newton_schulz_is_torch_quintic_and_approximates_the_polar_factor():
    X = np.random.default_rng(5).normal(size=(6, 3))
    np.testing.assert_allclose(newton_schulz(X), _newton_schulz(X), atol=1e-15)
    singular = np.linalg.svd(newton_schulz(X), compute_uv=False)
    assert np.all((singular > 0.6) & (singular < 1.3))


# -- memory that does not decay ------------------------------------------------------------------

def test_schedule_free_paths_are_its_z_x_y_recursion():
    loss = REFERENCE_LOSSES["curvy"]
    g = grad(loss.loss)
    h, beta = 0.01, 0.9
    z, x, y = loss.start.copy(), loss.start.copy(), loss.start.copy()
    expected = [y.copy()]
    for t in range(40):
        z = z - h * g(y)
        c = 1.0 / (t + 1)
        x = (1 - c) * x + c * z
        y = (1 - beta) * z + beta * x
        expected.append(y.copy())
    opt = memless.get_optimizer("schedule-free-sgd", beta=beta)
    for form in ("streaming", "history"):
        np.testing.assert_allclose(memless.trajectory(opt, "curvy", None, lr=h, steps=40, form=form),
                                   np.array(expected), rtol=0, atol=1e-14)


def test_memory_profile_tells_geometric_memory_from_memory_that_does_not_decay():
    from memless.engine.corrections import memory_profile

    class GenericHeavyBall(memless.MemoryOptimizer):      # no momentum form: the decay is measured
        name = "generic-heavy-ball"

        def direction(self, history, gradient):
            return sum(0.8 ** k * gradient(theta) for k, theta in enumerate(history))

    geometric = memory_profile(GenericHeavyBall(), "curvy")
    assert geometric.decays and geometric.reason.startswith("measured")
    # its profile is about k 0.8^k |H F|: log(profile / k) is a straight line of slope log 0.8
    ks, values = geometric.ks, geometric.values
    tail = (ks >= 20) & (values > 0)
    slope = np.polyfit(ks[tail], np.log(values[tail] / ks[tail]), 1)[0]
    assert abs(slope - np.log(0.8)) < 1e-3      # v_k is k F up to the finite-s terms near k = n
    flat = memory_profile(memless.get_optimizer("schedule-free-sgd"), "curvy")
    assert not flat.decays and "Assumption 3.1" in flat.reason
    # the weight of a 100-step-old iterate is about that of a 1-step-old one: beta (n - k)/(n (n+1))
    assert flat.weights[np.searchsorted(flat.ks, 98)] > 0.5 * flat.weights[0]
    declared = memory_profile(memless.get_optimizer("adamw"), "curvy")
    assert declared.decays and declared.reason.startswith("declared")


def test_report_says_outside_the_theory_instead_of_a_verdict():
    import io

    from rich.console import Console

    from memless.studies.analysis import Effect, analyze
    from memless.show.report import render

    a = analyze(memless.get_optimizer("schedule-free-sgd"))
    assert a.net_effect == Effect.OUTSIDE and a.basis == "outside" and not a.channels
    console = Console(file=io.StringIO(), width=100, color_system=None)
    console.print(render(a))
    text = console.file.getvalue()
    assert "outside the theory" in text and "memory does not decay" in text
    assert "regularizes" not in text and "Memory profile" in text
    assert json_ok(a.to_json())


def json_ok(text):
    import json
    data = json.loads(text)
    return data["net_effect"] == "outside the theory" and data["memory"]["decays"] is False


# -- where the polar factor's derivative does not exist --------------------------------------------


def _no_bias_network():
    """A cross-entropy network whose output layer has no bias: the rows of softmax - Y sum to zero, so the
    output layer's gradient W2 (8 x 3) has rank <= 2 and sigma_min ~ 1e-16 sigma_max."""
    import autograd.numpy as anp
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(30, 6)), np.eye(3)[rng.integers(0, 3, 30)]

    def loss(p):
        z = anp.dot(anp.tanh(anp.dot(X, p["W1"])), p["W2"])
        z = z - anp.max(z, axis=1, keepdims=True)
        return -anp.mean(anp.sum(Y * (z - anp.log(anp.sum(anp.exp(z), axis=1, keepdims=True))), axis=1))

    return memless.structured(loss, {"W1": rng.normal(size=(6, 8)) * 0.5, "W2": rng.normal(size=(8, 3)) * 0.5})


@pytest.mark.parametrize("settings", [dict(name="muon", orthogonalize="polar"),
                                      dict(name="muon", orthogonalize="polar", weight_decay=0.0),
                                      dict(name="lion", k="nuclear")], ids=["muon-polar", "muon-polar-no-decay",
                                                                            "lion-nuclear"])
def test_a_rank_deficient_gradient_refuses_the_polar_derivative(settings):
    """Before: |M| ~ 6e4 from differences, or 0.58 returned with no warning.  Now a one-line error that names
    the matrix, gives sigma_min/sigma_max, says why, and suggests the quintic; the quintic itself is smooth."""
    settings = dict(settings)
    opt = memless.get_optimizer(settings.pop("name"), **settings)
    loss = _no_bias_network()
    for n in (3, None):
        with pytest.raises(memless.numerics.linalg.SingularPolarError,
                           match=r"does not exist at matrix 'W2'.*sigma_min/sigma_max = 1\.\de-1[5-7].*newton-schulz"):
            memless.correction(opt, loss, None, lr=1e-3, n=n)
    assert np.all(np.isfinite(memless.correction(memless.get_optimizer("muon"), loss, None, lr=1e-3)))


def test_the_polar_derivative_against_differences_as_sigma_min_shrinks():
    """The measurement behind POLAR_CONDITION: the closed-form derivative agrees with central differences
    (steps below sigma_min) to 1e-7 at sigma_min/sigma_max = 1e-2, 1e-6 at 1e-4, and degrades as sigma_min falls; below
    POLAR_CONDITION it is refused."""
    from memless.numerics.linalg import POLAR_CONDITION, SingularPolarError, polar, polar_derivative
    rng = np.random.default_rng(0)
    U, _ = np.linalg.qr(rng.normal(size=(6, 4)))
    V, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    E = rng.normal(size=(6, 4))
    errors = {}
    for c in (1e-2, 1e-4, 1e-6):
        X = U @ np.diag([1.0, 0.7, 0.3, c]) @ V.T
        D = polar_derivative(X, E)
        errors[c] = min(np.max(np.abs((polar(X + h * E) - polar(X - h * E)) / (2 * h) - D)) / np.max(np.abs(D))
                        for h in (c * 1e-2, c * 1e-3, c * 1e-4))
    assert errors[1e-2] < 1e-7 and errors[1e-4] < 1e-6 and errors[1e-6] < 1e-5
    with pytest.raises(SingularPolarError, match="a 6 x 4 matrix"):
        polar_derivative(U @ np.diag([1.0, 0.7, 0.3, 0.1 * POLAR_CONDITION]) @ V.T, E)
