"""The second-order correction M2 (memless.engine.second_order): beyond the paper's Eq. (12).

* heavy-ball's M2 in closed form, derived by hand: h^2 beta(1+beta)/(2(1-beta)^5) grad(g^T H g);
* the engine's limit M2 against the finite-n formula written out over the explicit history and
  differentiated by central differences only (no autograd in the reference);
* the claim: with M1 + M2 the memoryless iteration tracks the optimizer with order ~3 (with M1
  ~2, without ~1), for every family, on losses with real third derivatives;
* what it refuses, in one line.
"""
import numpy as np
import autograd.numpy as anp
import pytest
from autograd import grad, make_jvp

import memless
from memless.engine.objective import objective, problem
from memless.engine.second_order import second_order_correction
from memless.losses import REFERENCE_LOSSES, curvy, rosenbrock

THETA = np.array([0.3, 0.5, -0.4])


def _m2(opt, loss, theta, lr, n=None):
    setup = problem(opt, loss, theta)
    return second_order_correction(setup.optimizer, objective(setup.loss, setup.theta), setup.theta, lr, n)


# ----------------------------------------------------------------------------
# Closed form
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("loss", [curvy, rosenbrock], ids=["curvy", "rosenbrock"])
@pytest.mark.parametrize("beta", [0.3, 0.7, 0.9])
def test_heavy_balls_second_order_term_is_its_closed_form(loss, beta):
    """M2 = h^2 beta(1+beta)/(2(1-beta)^5) grad(g^T H g) = h^2 beta(1+beta)/(1-beta)^5 (H^2 g + T[g,g]/2)."""
    h = 0.01
    g = grad(loss)

    def gHg(t):
        return anp.dot(g(t), make_jvp(g)(t)(g(t))[1])

    closed = h ** 2 * beta * (1 + beta) / (2 * (1 - beta) ** 5) * grad(gHg)(THETA)
    engine = _m2(memless.get_optimizer("heavy-ball", beta=beta), loss, THETA, h)
    np.testing.assert_allclose(engine, closed, rtol=1e-12, atol=1e-15 * np.max(np.abs(closed)))


def test_the_public_functions_add_m2_to_the_first_order_correction():
    opt = memless.get_optimizer("adamw", beta1=0.5, beta2=0.6, eps=0.1, weight_decay=0.05)
    first = memless.correction(opt, "curvy", None, lr=0.01, n=7)
    second = memless.correction(opt, "curvy", None, lr=0.01, n=7, order=2)
    terms = memless.correction_terms(opt, "curvy", None, lr=0.01, n=7, order=2)
    m2 = _m2(opt, "curvy", None, 0.01, n=7)          # AdamW's moments are bias-corrected: M2^(7) exactly
    np.testing.assert_allclose(second, first + m2, rtol=1e-14)
    np.testing.assert_allclose(terms["second-order"], m2, rtol=1e-14)
    np.testing.assert_allclose(sum(v for k, v in terms.items() if k != "second-order"), first, rtol=1e-13)


# ----------------------------------------------------------------------------
# Against the explicit history form, differentiated by central differences
# ----------------------------------------------------------------------------

def _m2_by_differences(opt, loss, theta, h, N):
    """M2^(N) from its definition: the history F^(N)(theta^(N), ..., theta^(0)) written out, every
    derivative a central difference (M1^(s) from the first-order engine, tested on its own)."""
    g = grad(loss)
    F = {s: np.asarray(opt.memoryless_direction(theta, g, s), dtype=float) for s in range(N)}
    v = {0: np.zeros_like(theta)}
    for k in range(1, N + 1):
        v[k] = v[k - 1] + F[N - k]

    def jacobian_times(s, u, eps=1e-5):
        return (np.asarray(opt.memoryless_direction(theta + eps * u, g, s))
                - np.asarray(opt.memoryless_direction(theta - eps * u, g, s))) / (2 * eps)

    inner = {s: memless.correction(opt, loss, theta, lr=h, n=s) + h * jacobian_times(s, v[N - s])
             for s in range(N)}
    delta2, total = {}, np.zeros_like(theta)
    for k in range(1, N + 1):
        total = total + inner[N - k]
        delta2[k] = h * total

    def along(shifts, t):
        history = [theta] + [theta + t * shifts[k] for k in range(1, N + 1)]
        return np.asarray(opt.direction(history, g), dtype=float)

    delta1 = {k: h * v[k] for k in range(1, N + 1)}
    e1, e2 = 1e-3, 2e-2
    first = (along(delta2, e1) - along(delta2, -e1)) / (2 * e1)
    second = (along(delta1, e2) - 2 * along(delta1, 0.0) + along(delta1, -e2)) / e2 ** 2
    return first + 0.5 * second


@pytest.mark.parametrize("name,hp", [("heavy-ball", dict(beta=0.5)), ("adamw", dict(beta1=0.5, beta2=0.5, eps=0.1)),
                                     ("lion", dict(rho1=0.5, rho2=0.5, eps=0.1)),
                                     ("nesterov", dict(beta=0.4))])
def test_the_limit_m2_is_the_finite_n_definition_by_central_differences(name, hp):
    opt = memless.get_optimizer(name, **hp)
    h, N = 0.01, 40                      # decays <= 0.5: 0.5^40 ~ 1e-12, the limit to well below the differences' error
    reference = _m2_by_differences(opt, curvy, THETA, h, N)
    engine = _m2(opt, curvy, THETA, h)
    np.testing.assert_allclose(engine, reference, rtol=2e-5, atol=2e-5 * np.max(np.abs(reference)))


# ----------------------------------------------------------------------------
# The claim: order 3
# ----------------------------------------------------------------------------

class WindowAverage(memless.MemoryOptimizer):
    """A history-form optimizer with a window: F^(n) = mean of the last 3 gradients."""
    name = "window-average"
    window = 3

    def direction(self, history, gradient):
        recent = history[: self.window]
        return sum(gradient(t) for t in recent) / len(recent)


ORDER_CASES = [
    ("heavy-ball", dict(beta=0.5), "curvy", [0.01, 0.005, 0.0025], 0.4),
    ("nesterov", dict(beta=0.5), "curvy", [0.01, 0.005, 0.0025], 0.4),
    ("adamw", dict(beta1=0.5, beta2=0.5, eps=0.1, weight_decay=0.01), "curvy", [0.01, 0.005, 0.0025], 0.4),
    ("nadam", dict(beta1=0.5, beta2=0.5, eps=0.1), "curvy", [0.01, 0.005, 0.0025], 0.4),
    ("rmsprop", dict(rho=0.5, eps=0.1), "curvy", [0.01, 0.005, 0.0025], 0.4),
    ("lion", dict(rho1=0.5, rho2=0.5, eps=0.1), "curvy", [0.01, 0.005, 0.0025], 0.4),
    ("muon", dict(momentum=0.5), "factorization", [0.0025, 0.00125, 0.000625], 0.1),
    ("muon", dict(momentum=0.5, orthogonalize="polar"), "factorization", [0.0025, 0.00125, 0.000625], 0.1),
    ("lion", dict(rho1=0.5, rho2=0.5, k="nuclear"), "factorization", [0.0025, 0.00125, 0.000625], 0.1),
    ("window-average", {}, "curvy", [0.01, 0.005, 0.0025], 0.4),
    ("ademamix", dict(beta1=0.5, beta2=0.5, beta3=0.5, alpha=2.0, eps=0.1, eps_inside=True), "curvy",
     [0.005, 0.0025, 0.00125], 0.2),
]


@pytest.mark.slow
@pytest.mark.parametrize("name,hp,loss,lrs,horizon", ORDER_CASES,
                         ids=[c[0] + "".join(f"-{v}" for v in c[1].values() if isinstance(v, str)) for c in ORDER_CASES])
def test_with_the_second_order_term_the_error_falls_with_order_three(name, hp, loss, lrs, horizon):
    if name == "window-average":
        opt = WindowAverage()
    else:
        if name == "ademamix":
            pytest.importorskip("memless_ademamix", reason="the example plugin is not installed")
        opt = memless.get_optimizer(name, **hp)
    study = memless.order_study(opt, loss, None if loss in REFERENCE_LOSSES else THETA, horizon=horizon, lrs=lrs,
                                order=2)
    assert abs(study.order_second - 3.0) <= 0.35, study.summary()
    assert abs(study.order_corrected - 2.0) <= 0.3, study.summary()
    assert abs(study.order_uncorrected - 1.0) <= 0.3, study.summary()
    assert all(e2 < e1 for e2, e1 in zip(study.errors_second, study.errors_corrected)), study.summary()
    assert "with M1+M2" in study.summary()


def test_a_corrected_path_of_order_two_is_the_iteration_with_m1_plus_m2():
    opt = memless.get_optimizer("heavy-ball", beta=0.5)
    path = memless.trajectory(opt, "curvy", None, lr=0.01, steps=5, memoryless=True, order=2)
    theta = REFERENCE_LOSSES["curvy"].start.copy()
    for n in range(5):
        g = grad(curvy)
        step = np.asarray(opt.memoryless_direction(theta, g, n)) + memless.correction(opt, curvy, theta, 0.01, n=n,
                                                                                       order=2)
        theta = theta - 0.01 * step
        np.testing.assert_allclose(path[n + 1], theta, rtol=1e-13)


# ----------------------------------------------------------------------------
# Refusals, in one line
# ----------------------------------------------------------------------------

def test_a_loss_without_third_derivatives_is_refused_with_the_reason():
    from memless.frameworks import ExternalLoss
    A = np.diag([1.0, 3.0])
    loss = ExternalLoss(lambda t: 0.5 * t @ A @ t, lambda t: A @ t, lambda t, v: A @ v, start=np.ones(2))
    opt = memless.get_optimizer("heavy-ball", beta=0.5)
    memless.correction(opt, loss, None, lr=0.01)                   # first order: fine
    with pytest.raises(memless.LossError, match="order=2 needs the loss's third derivatives"):
        memless.correction(opt, loss, None, lr=0.01, order=2)


def test_what_order_2_cannot_do_is_refused_in_one_line():
    with pytest.raises(memless.MemlessError, match="order must be 1 .* or 2"):
        memless.correction(memless.get_optimizer("adam"), "curvy", None, lr=0.01, order=3)
    with pytest.raises(memless.MemlessError, match="order=2 applies to the corrected memoryless iteration"):
        memless.trajectory(memless.get_optimizer("adam"), "curvy", None, lr=0.01, steps=3, order=2)
    with pytest.raises(memless.MemlessError, match="order=2 is computed for momentum-form optimizers"):
        memless.correction(memless.get_optimizer("schedule-free-sgd"), "curvy", None, lr=0.01, n=5, order=2)


# ----------------------------------------------------------------------------
# Newton-Schulz differentiated twice
# ----------------------------------------------------------------------------

def test_newton_schulz_second_derivative_is_the_derivative_of_its_first():
    from memless.numerics.linalg import NS_COEFFICIENTS, newton_schulz
    rng = np.random.default_rng(3)
    X, E, W = rng.normal(size=(3, 5)), rng.normal(size=(3, 5)), rng.normal(size=(3, 5))

    def first(x):
        return make_jvp(newton_schulz)(x)(E)[1]

    def first_unrolled(x):               # autograd through the plain iteration, no custom rule
        a, b, c = NS_COEFFICIENTS
        y = x / anp.sqrt(anp.sum(x * x))
        for _ in range(5):
            A = anp.dot(y, anp.transpose(y))
            y = a * y + anp.dot(b * A + c * anp.dot(A, A), y)
        return y

    np.testing.assert_allclose(first(X), make_jvp(first_unrolled)(X)(E)[1], rtol=1e-12, atol=1e-13)
    second = make_jvp(first)(X)(W)[1]
    expected = make_jvp(lambda x: make_jvp(first_unrolled)(x)(E)[1])(X)(W)[1]
    np.testing.assert_allclose(second, expected, rtol=1e-11, atol=1e-12)


# ----------------------------------------------------------------------------
# The report: |M2|/|M1| where |M|/|F| is largest
# ----------------------------------------------------------------------------

def test_the_analysis_reports_the_next_term_where_the_first_is_largest():
    from memless.frameworks import ExternalLoss
    opt = memless.get_optimizer("heavy-ball", beta=0.5)
    analysis = memless.analyze(opt, "curvy", lr=0.01, points=3, evidence_losses=())
    # at the start (theta0) |M|/|F| is largest on this short path; the closed form gives M2 there
    theta = REFERENCE_LOSSES["curvy"].start
    M1 = memless.correction(opt, "curvy", theta, lr=0.01)
    M2 = memless.correction(opt, "curvy", theta, lr=0.01, order=2) - M1
    assert analysis.next_term_ratio is not None and analysis.next_term_ratio > 0
    assert analysis.to_dict()["next_term_ratio"] == analysis.next_term_ratio
    ratios_along = []
    path = memless.trajectory(opt, "curvy", None, lr=0.01, steps=200)
    for point in path[np.linspace(0, 200, 3).astype(int)]:
        m1 = memless.correction(opt, "curvy", point, lr=0.01)
        F = np.asarray(opt.memoryless_direction(point, grad(curvy), 10 ** 6))
        ratios_along.append((np.linalg.norm(m1) / np.linalg.norm(F), point))
    where = max(ratios_along, key=lambda r: r[0])[1]
    m1 = memless.correction(opt, "curvy", where, lr=0.01)
    m2 = memless.correction(opt, "curvy", where, lr=0.01, order=2) - m1
    np.testing.assert_allclose(analysis.next_term_ratio, np.linalg.norm(m2) / np.linalg.norm(m1), rtol=1e-9)
    assert np.linalg.norm(M2) > 0
    A = np.diag([1.0, 3.0])
    external = ExternalLoss(lambda t: 0.5 * t @ A @ t + 0.1 * t[0] ** 4, lambda t: A @ t + np.array([0.4 * t[0] ** 3, 0]),
                            lambda t, v: A @ v + np.array([1.2 * t[0] ** 2 * v[0], 0]), start=np.array([1.0, -0.5]))
    assert memless.analyze(opt, external, lr=0.01, points=3, evidence_losses=()).next_term_ratio is None


def test_the_polar_factors_second_derivative_is_the_derivative_of_its_first():
    """Through Newton's polar iteration, traced (its first derivative equals the closed form), against a
    Richardson-extrapolated central difference of the closed-form first derivative."""
    from memless.numerics.linalg import _polar_traced, polar, polar_derivative
    rng = np.random.default_rng(1)
    for shape in ((6, 3), (3, 5)):
        X, E, W = (rng.normal(size=shape) for _ in range(3))
        np.testing.assert_allclose(_polar_traced(X), polar(X), atol=1e-14)
        np.testing.assert_allclose(make_jvp(_polar_traced)(X)(E)[1], polar_derivative(X, E), atol=1e-13)
        second = make_jvp(lambda x, E=E: make_jvp(polar)(x)(E)[1])(X)(W)[1]
        steps = [(polar_derivative(X + e * W, E) - polar_derivative(X - e * W, E)) / (2 * e) for e in (1e-4, 5e-5)]
        expected = (4 * steps[1] - steps[0]) / 3
        np.testing.assert_allclose(second, expected, rtol=1e-8, atol=1e-9 * np.max(np.abs(expected)))


def _adamw_second_order_closed_form(loss, theta, h, beta1, beta2, eps, lam):
    """AdamW's limit M2 with eps inside the root, derived by hand (D = g^2 + eps, componentwise):
    with p = beta/(1-beta), q = beta/(1-beta)^2, r = beta(1+beta)/(1-beta)^2 for each moment,
    alpha = p1 D^-1/2 - p2 g^2 D^-3/2, gamma = q1 D^-1/2 - q2 g^2 D^-3/2, F = g D^-1/2 + lam theta,
    J F = eps D^-3/2 H F + lam F, T = T[F, F]:
        M2 = h^2 alpha H(alpha H F) + h^2 gamma H(J F)
             + h^2/2 [ -2 p1 p2 g (HF)^2 D^-3/2 + 3 p2^2 g^3 (HF)^2 D^-5/2 + r1 T D^-1/2
                       - r2 g (HF)^2 D^-3/2 - r2 g^2 T D^-3/2 ]."""
    g_of = grad(loss)

    def H(v):
        return make_jvp(g_of)(theta)(v)[1]

    g = g_of(theta)
    D = g ** 2 + eps
    p1, p2 = beta1 / (1 - beta1), beta2 / (1 - beta2)
    q1, q2 = beta1 / (1 - beta1) ** 2, beta2 / (1 - beta2) ** 2
    r1, r2 = beta1 * (1 + beta1) / (1 - beta1) ** 2, beta2 * (1 + beta2) / (1 - beta2) ** 2
    alpha = p1 * D ** -0.5 - p2 * g ** 2 * D ** -1.5
    gamma = q1 * D ** -0.5 - q2 * g ** 2 * D ** -1.5
    F = g * D ** -0.5 + lam * theta
    HF = H(F)
    JF = eps * D ** -1.5 * HF + lam * F
    T = make_jvp(lambda x: make_jvp(g_of)(x)(F)[1])(theta)(F)[1]
    C = 0.5 * (-2 * p1 * p2 * g * HF ** 2 * D ** -1.5 + 3 * p2 ** 2 * g ** 3 * HF ** 2 * D ** -2.5 + r1 * T * D ** -0.5
               - r2 * g * HF ** 2 * D ** -1.5 - r2 * g ** 2 * T * D ** -1.5)
    return h ** 2 * alpha * H(alpha * HF) + h ** 2 * gamma * H(JF) + h ** 2 * C


@pytest.mark.parametrize("name,lam", [("adam", 0.0), ("adamw", 0.05)])
@pytest.mark.parametrize("beta1,beta2,eps", [(0.5, 0.6, 0.1), (0.9, 0.99, 1e-3), (0.9, 0.999, 1e-8)])
@pytest.mark.parametrize("loss_name", ["curvy", "logistic"])
def test_adams_second_order_term_is_its_closed_form(name, lam, beta1, beta2, eps, loss_name):
    hp = dict(beta1=beta1, beta2=beta2, eps=eps)
    if name == "adamw":
        hp["weight_decay"] = lam
    reference = REFERENCE_LOSSES[loss_name]
    theta = reference.start + 0.1
    closed = _adamw_second_order_closed_form(reference.loss.function, theta, 1e-3, beta1, beta2, eps, lam)
    engine = _m2(memless.get_optimizer(name, **hp), loss_name, theta, 1e-3)
    np.testing.assert_allclose(engine, closed, rtol=1e-12, atol=1e-12 * np.max(np.abs(closed)))


def test_an_m2_iteration_outside_its_range_gets_no_order_and_a_warning():
    """Heavy-ball at beta = 0.9 on a stiff quadratic: M2 ~ 1/(1-beta)^5 makes the explicit M1 + M2
    iteration blow up (an outsider saw a fitted 'order 38.83'); the study says so instead."""
    A = np.diag([1.0, 4.0, 9.0])

    def quadratic(t):
        return 0.5 * anp.dot(t, anp.dot(A, t))

    with pytest.warns(memless.OrderWarning, match="with M1 \\+ M2 .* outside its range"):
        study = memless.order_study(memless.get_optimizer("heavy-ball", beta=0.9), quadratic, np.ones(3),
                                    horizon=0.4, lrs=[0.01, 0.005, 0.0025], order=2)
    assert np.isnan(study.order_second) and max(study.next_term_ratios) > 1
    with pytest.warns(memless.OrderWarning, match="the second-order term exceeds the first along this path"):
        memless.trajectory(memless.get_optimizer("heavy-ball", beta=0.9), quadratic, np.ones(3), lr=0.01, steps=20,
                           memoryless=True, order=2)
    # in range (beta = 0.5, the same loss): no warning, an order near 3 at small enough lr
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", memless.OrderWarning)
        study = memless.order_study(memless.get_optimizer("heavy-ball", beta=0.5), quadratic, np.ones(3),
                                    horizon=0.2, lrs=[0.0025, 0.00125, 0.000625], order=2)
    assert abs(study.order_second - 3) < 0.35


def test_order_2_errors_name_the_cause():
    with pytest.raises(memless.MemlessError, match="order=2 is computed for momentum-form"):
        memless.correction(memless.get_optimizer("schedule-free-sgd"), "curvy", None, lr=0.01, order=2)   # the limit
    with pytest.raises(memless.MemlessError, match="the second-order term overflows at lr=1e\\+200"):
        memless.correction(memless.get_optimizer("adamw"), "curvy", None, lr=1e200, order=2)


def test_the_next_term_is_not_reported_where_the_first_is_below_rounding():
    """Lion at eps = 1e-8 on bilinear: |M|/|F| ~ 1e-13, so |M2|/|M1| would be a ratio of rounding noise."""
    analysis = memless.analyze(memless.get_optimizer("lion"), "bilinear", lr=1e-3, points=3, evidence_losses=())
    assert analysis.memory_ratio < 1e-10 and analysis.next_term_ratio is None


@pytest.mark.parametrize("name,hp", [("adamw", dict(beta1=0.5, beta2=0.6, eps=0.1, weight_decay=0.05)),
                                     ("nadam", dict(beta1=0.5, beta2=0.6, eps=0.1)),
                                     ("adam", dict(beta1=0.9, beta2=0.99, eps=1e-3))])
@pytest.mark.parametrize("N", [1, 2, 5, 12])
def test_the_exact_finite_n_m2_is_its_definition_by_central_differences(name, hp, N):
    """Bias-corrected moments (every channel weight constant): M2^(n) exactly, at small n where the limit
    is far off (by factors 9 to 3e5 here); against the same central-difference definition."""
    opt = memless.get_optimizer(name, **hp)
    reference = _m2_by_differences(opt, curvy, THETA, 0.01, N)
    engine = (memless.correction(opt, curvy, THETA, lr=0.01, n=N, order=2)
              - memless.correction(opt, curvy, THETA, lr=0.01, n=N))
    np.testing.assert_allclose(engine, reference, rtol=1e-4, atol=1e-4 * np.max(np.abs(reference)))
    limit = memless.correction(opt, curvy, THETA, lr=0.01, order=2) - memless.correction(opt, curvy, THETA, lr=0.01)
    if N <= 5:
        assert np.max(np.abs(limit - reference)) > 0.5 * np.max(np.abs(reference))     # the limit is not it


def test_with_the_finite_n_m2_the_first_steps_improve_on_m1():
    """An outsider measured M1 + M2 worse than M1 on a horizon of a few steps with the limit M2 from step 0;
    with M2^(n) (AdamW, bias-corrected) the short horizon improves too."""
    opt = memless.get_optimizer("adamw", beta1=0.5, beta2=0.5, eps=0.1, weight_decay=0.01)
    study = memless.order_study(opt, "curvy", None, horizon=0.04, lrs=[0.01, 0.005, 0.0025], order=2)
    assert all(e2 < 0.2 * e1 for e2, e1 in zip(study.errors_second, study.errors_corrected)), study.summary()


@pytest.mark.parametrize("name,hp", [("heavy-ball", dict(beta=0.5)), ("heavy-ball", dict(beta=0.8)),
                                     ("nesterov", dict(beta=0.6)),
                                     ("lion", dict(rho1=0.6, rho2=0.8, k="l2", weight_decay=0.1))])
@pytest.mark.parametrize("N", [1, 2, 5, 12])
def test_the_exact_finite_n_m2_of_a_linear_phi_is_its_definition(name, hp, N):
    """Linear Phi, channel weights that fill up with n (heavy-ball's a(s) = (1 - beta^(s+1))/(1 - beta)),
    three channels with weight decay (Lion-K, K = |x|^2/2): against the central-difference definition."""
    opt = memless.get_optimizer(name, **hp)
    reference = _m2_by_differences(opt, curvy, THETA, 0.01, N)
    engine = (memless.correction(opt, curvy, THETA, lr=0.01, n=N, order=2)
              - memless.correction(opt, curvy, THETA, lr=0.01, n=N))
    np.testing.assert_allclose(engine, reference, rtol=1e-5, atol=1e-5 * np.max(np.abs(reference)))


def test_smooth_signs_second_derivative_is_finite_where_cosh_overflows():
    """Lion's smooth sign tanh(kappa x) at kappa = 1e4: autograd's tanh rule divides by cosh^2, which
    overflows past |kappa x| = 710, and its second derivative is then NaN; memless's tanh primitive
    differentiates as 1 - tanh^2. Equal to autograd's where both are finite; finite everywhere."""
    import autograd.numpy as anp
    from autograd import elementwise_grad as egrad
    from memless.numerics.autodiff import tanh
    x = np.array([-3.0, -0.4, 0.0, 0.2, 2.5])
    np.testing.assert_allclose(egrad(egrad(tanh))(x), egrad(egrad(anp.tanh))(x), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(egrad(egrad(tanh))(x), -2 * np.tanh(x) * (1 - np.tanh(x) ** 2), rtol=1e-13, atol=1e-15)
    far = np.array([-800.0, 900.0])
    assert np.all(egrad(egrad(tanh))(far) == 0.0)
    with np.errstate(all="ignore"):
        assert not np.all(np.isfinite(egrad(egrad(anp.tanh))(far)))
    opt = memless.get_optimizer("lion", k="logcosh")            # kappa = 1e4
    assert np.all(np.isfinite(memless.correction(opt, "network", None, lr=1e-2, order=2)))
