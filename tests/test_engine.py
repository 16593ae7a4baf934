"""The engine's M against independent computations: the papers' closed forms,
Eq. (12) with explicit Jacobians, and finite differences without autograd."""
import warnings

import numpy as np
import pytest

import memless
from memless.engine import corrections as engine
from memless.engine.corrections import history_correction
from memless.engine.objective import Objective

import reference as ref

# (registry name, hyperparameters): every built-in with memory, in a few settings
CASES = [
    ("heavy-ball", dict(beta=0.5)),
    ("heavy-ball", dict(beta=0.9)),
    ("nesterov", dict(beta=0.7)),
    ("adam", dict(beta1=0.9, beta2=0.999, eps=1e-3)),
    ("adamw", dict(beta1=0.6, beta2=0.75, eps=0.1, weight_decay=0.05)),
    ("adamw", dict(beta1=0.95, beta2=0.8, eps=1e-2, weight_decay=0.01)),
    ("nadam", dict(beta1=0.8, beta2=0.9, eps=0.05, weight_decay=0.02)),
    ("rmsprop", dict(rho=0.8, eps=0.05)),
    ("lion", dict(rho1=0.9, rho2=0.99, weight_decay=0.1, k="l1-smooth", eps=0.3)),
    ("lion", dict(rho1=0.5, rho2=0.8, weight_decay=0.0, k="l1-smooth", eps=1e-2)),
]
IDS = [f"{name}-{i}" for i, (name, _) in enumerate(CASES)]
H = 0.01


def make(name, hp):
    opt = memless.get_optimizer(name, **hp)
    return opt, opt.hyper


@pytest.mark.parametrize("name,hp", CASES, ids=IDS)
@pytest.mark.parametrize("point", range(len(ref.POINTS)))
def test_limit_matches_closed_form(name, hp, point):
    opt, full = make(name, hp)
    t = ref.POINTS[point]
    expected = ref.closed_form_limit(name, full, t, H)
    got = memless.correction(opt, ref.loss, t, lr=H)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("name,hp", CASES, ids=IDS)
@pytest.mark.parametrize("n", [1, 2, 7, 60])
def test_finite_n_matches_explicit_jacobians(name, hp, n):
    opt, full = make(name, hp)
    t = ref.POINTS[1]
    J, F = ref.explicit(name, full, t, n)
    expected = ref.eq12(J, F, n, H)
    np.testing.assert_allclose(memless.correction(opt, ref.loss, t, lr=H, n=n), expected, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(memless.correction(opt, ref.loss, t, lr=H, n=n, method="history"),
                               expected, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("name,hp", CASES, ids=IDS)
def test_finite_n_converges_to_limit(name, hp):
    opt, _ = make(name, hp)
    t = ref.POINTS[0]
    limit = memless.correction(opt, ref.loss, t, lr=H)
    far = memless.correction(opt, ref.loss, t, lr=H, n=60000)   # beta^n < 1e-26 for every case
    np.testing.assert_allclose(far, limit, rtol=1e-9, atol=1e-15)


def finite_difference_eq12(opt, t, n, h, step=1e-5):
    """Eq. (12) as a central difference of F^(n) along the history direction; analytic gradient, no autograd."""
    vs, v = [], np.zeros_like(t)
    for k in range(1, n + 1):
        v = v + np.asarray(opt.memoryless_direction(t, ref.grad, n - k))
        vs.append(v)
    delta = step / max(1.0, max(np.max(np.abs(v)) for v in vs))    # move each theta by at most `step`
    history_plus = [t] + [t + delta * v for v in vs]
    history_minus = [t] + [t - delta * v for v in vs]
    diff = np.asarray(opt.direction(history_plus, ref.grad)) - np.asarray(opt.direction(history_minus, ref.grad))
    return h * diff / (2 * delta)


@pytest.mark.parametrize("name,hp", CASES, ids=IDS)
@pytest.mark.parametrize("n", [3, 25])
def test_matches_finite_differences_without_autograd(name, hp, n):
    opt, _ = make(name, hp)
    t = ref.POINTS[2]
    expected = finite_difference_eq12(opt, t, n, H)
    got = memless.correction(opt, ref.loss, t, lr=H, n=n)
    scale = np.max(np.abs(expected))
    assert scale > 0
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-8 * scale)


@pytest.mark.parametrize("name,hp", CASES, ids=IDS)
def test_channel_terms_sum_to_total(name, hp):
    opt, _ = make(name, hp)
    t = ref.POINTS[1]
    for n in (None, 4):
        parts = memless.correction_terms(opt, ref.loss, t, lr=H, n=n)
        assert [ch.name for ch in opt.channels()] == list(parts)
        np.testing.assert_allclose(sum(parts.values()), memless.correction(opt, ref.loss, t, lr=H, n=n),
                                   rtol=1e-12, atol=1e-16)


def test_adamw_channels_match_math_md():
    """M_1 = +h b1/(1-b1) D^-1/2 (grad||g|| + lam H theta), M_2 = -h b2/(1-b2) g^2 D^-3/2 (...)."""
    b1, b2, eps, lam = 0.9, 0.99, 1e-3, 0.05
    opt = memless.get_optimizer("adamw", beta1=b1, beta2=b2, eps=eps, weight_decay=lam)
    t = ref.POINTS[0]
    g, Hm = ref.grad(t), ref.hess(t)
    D = g ** 2 + eps
    field = Hm @ (g / np.sqrt(D)) + lam * Hm @ t
    parts = memless.correction_terms(opt, ref.loss, t, lr=H)
    np.testing.assert_allclose(parts["first-moment"], H * b1 / (1 - b1) / np.sqrt(D) * field, rtol=1e-10)
    np.testing.assert_allclose(parts["second-moment"], -H * b2 / (1 - b2) * g ** 2 / D ** 1.5 * field, rtol=1e-10)
    np.testing.assert_array_equal(parts["weight-decay"], 0.0)


@pytest.mark.parametrize("eps_inside", [True, False])
@pytest.mark.parametrize("name", ["adam", "adamw", "nadam"])
def test_pytorch_eps_placement(name, eps_inside):
    hp = dict(beta1=0.7, beta2=0.9, eps=0.02, eps_inside=eps_inside)
    if name != "adam":
        hp["weight_decay"] = 0.03
    opt, full = make(name, hp)
    t = ref.POINTS[1]
    np.testing.assert_allclose(memless.correction(opt, ref.loss, t, lr=H),
                               ref.closed_form_limit(name, full, t, H), rtol=1e-10)


def test_lion_exact_sign_has_zero_correction_and_l2_is_heavy_ball():
    t = ref.POINTS[0]
    sign = memless.get_optimizer("lion", k="sign")
    assert np.all(memless.correction(sign, ref.loss, t, lr=H) == 0)
    assert np.all(memless.correction(sign, ref.loss, t, lr=H, n=10) == 0)
    # K = |x|^2/2, rho1 = rho2 = beta, lambda = 0: Lion's F is (1-beta) x heavy-ball's
    beta = 0.8
    lion = memless.get_optimizer("lion", k="l2", rho1=beta, rho2=beta)
    hb = memless.get_optimizer("heavy-ball", beta=beta)
    for n in (None, 6):
        lion_M = memless.correction(lion, ref.loss, t, lr=H, n=n)
        hb_M = memless.correction(hb, ref.loss, t, lr=H * (1 - beta), n=n)
        np.testing.assert_allclose(lion_M, (1 - beta) * hb_M, rtol=1e-10)


def test_lion_smooth_term_is_order_eps():
    t = ref.POINTS[0]
    sizes = [np.max(np.abs(memless.correction(memless.get_optimizer("lion", eps=eps), ref.loss, t, lr=H)))
             for eps in (1e-6, 1e-7, 1e-8)]
    ratios = np.array(sizes[:-1]) / np.array(sizes[1:])
    np.testing.assert_allclose(ratios, 10.0, rtol=1e-2)


def test_gd_has_no_correction():
    opt = memless.get_optimizer("gd")
    assert np.all(memless.correction(opt, ref.loss, ref.POINTS[0], lr=0.1) == 0)
    assert np.all(memless.correction(opt, ref.loss, ref.POINTS[0], lr=0.1, n=5, method="history") == 0)


def test_step_zero_has_no_memory():
    for name, hp in CASES:
        opt, _ = make(name, hp)
        assert np.all(memless.correction(opt, ref.loss, ref.POINTS[0], lr=H, n=0) == 0)


# -- a generic optimizer, not in momentum form -----------------------------------

class WindowAverage(memless.MemoryOptimizer):
    """F^(n) = average of the last min(W, n+1) gradients."""

    name = "window-average"
    hyperparameters = (memless.Hyperparameter("width", 4, "an integer >= 1", int),)

    def direction(self, history, gradient):
        recent = history[: self.width]
        total = 0.0
        for theta in recent:
            total = total + gradient(theta)
        return total / len(recent)


@pytest.mark.parametrize("width", [1, 2, 5])
@pytest.mark.parametrize("n", [1, 3, 10, 40])
def test_generic_window_average(width, n):
    """Closed form: dF/dtheta^(n-k) = H/W' (k < W'), v_k = k g, so M^(n) = h (W'-1)/2 H g, W' = min(W, n+1)."""
    opt = WindowAverage(width=width)
    t = ref.POINTS[1]
    w = min(width, n + 1)
    expected = H * (w - 1) / 2 * ref.hess(t) @ ref.grad(t)
    M, info = memless.correction(opt, ref.loss, t, lr=H, n=n, full_output=True)
    np.testing.assert_allclose(M, expected, rtol=1e-12, atol=1e-16)
    np.testing.assert_allclose(M, finite_difference_eq12(opt, t, n, H), rtol=1e-6, atol=1e-12)
    assert info.method == "history"
    limit = memless.correction(opt, ref.loss, t, lr=H)
    np.testing.assert_allclose(limit, H * (width - 1) / 2 * ref.hess(t) @ ref.grad(t), rtol=1e-12, atol=1e-16)


class GenericEMA(memless.MemoryOptimizer):
    """Heavy-ball written over the whole history, with no channels and no window."""

    hyperparameters = (memless.decay("beta", 0.6),)

    def direction(self, history, gradient):
        total = 0.0
        for k, theta in enumerate(history):
            total = total + self.beta ** k * gradient(theta)
        return total


@pytest.mark.slow
def test_generic_history_truncates_where_memory_has_decayed():
    opt = GenericEMA(beta=0.6)
    t = ref.POINTS[0]
    M, info = memless.correction(opt, ref.loss, t, lr=H, n=3000, full_output=True)
    assert info.truncated and info.terms < 3000
    assert info.tail <= 1e-13
    hb = memless.get_optimizer("heavy-ball", beta=0.6)
    np.testing.assert_allclose(M, memless.correction(hb, ref.loss, t, lr=H, n=3000), rtol=1e-11)


def test_history_cut_short_warns():
    opt = GenericEMA(beta=0.95)
    obj = Objective(ref.loss)
    with pytest.warns(memless.MemoryTruncationWarning, match="max_history=20"):
        history_correction(opt, obj, ref.POINTS[0], H, 500, max_history=20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        history_correction(opt, obj, ref.POINTS[0], H, 500, max_history=2000)


def test_reference_derivatives_are_right():
    """The hand-written gradient and Hessian agree with central differences of the loss."""
    t, d = ref.POINTS[2], 1e-6
    eye = np.eye(3)
    fd_grad = np.array([(ref.loss_np(t + d * e) - ref.loss_np(t - d * e)) / (2 * d) for e in eye])
    fd_hess = np.array([(ref.grad(t + d * e) - ref.grad(t - d * e)) / (2 * d) for e in eye])
    np.testing.assert_allclose(ref.grad(t), fd_grad, rtol=1e-7)
    np.testing.assert_allclose(ref.hess(t), fd_hess, rtol=1e-6, atol=1e-8)


def test_sqrt_primitive_has_autograds_derivatives_to_second_order():
    """memless's sqrt (derivative g / (2 sqrt x), cheaper than autograd's x ** -0.5) equals
    autograd's own in forward and reverse mode, first and second order."""
    import autograd.numpy as anp
    from autograd import elementwise_grad, make_jvp

    from memless.numerics.autodiff import sqrt
    x = np.array([0.3, 1.0, 4.0, 9.5])
    for f, g in ((sqrt, anp.sqrt), (lambda t: 1.0 / sqrt(t ** 2 + 0.1), lambda t: 1.0 / anp.sqrt(t ** 2 + 0.1))):
        np.testing.assert_allclose(elementwise_grad(f)(x), elementwise_grad(g)(x), rtol=1e-14)
        np.testing.assert_allclose(elementwise_grad(elementwise_grad(f))(x), elementwise_grad(elementwise_grad(g))(x),
                                   rtol=1e-13)
        np.testing.assert_allclose(make_jvp(f)(x)(x)[1], make_jvp(g)(x)(x)[1], rtol=1e-14)


def test_adam_with_eps_outside_the_root_is_finite_where_a_gradient_component_underflows():
    """|g_i| = 1e-170: g_i^2 underflows to 0 while its tangent does not (0 * inf = NaN under autograd's
    rule).  The second moment's term is then of the size of |g_i|: the correction equals the one
    computed with that gradient exactly 0, at finite n and in the limit."""
    import autograd.numpy as anp

    def loss(t):                       # g_2 = t_3: 1e-170 at theta below, while d g_2 / d t_3 = 1
        return anp.sum(t[:2] ** 4) / 4 + t[0] * t[1] + t[2] * t[3]

    opt = memless.get_optimizer("adam", eps=1e-3, eps_inside=False)
    for n in (None, 5, 40):
        tiny = memless.correction(opt, loss, np.array([0.7, -0.4, 0.3, 1e-170]), lr=1e-3, n=n)
        zero = memless.correction(opt, loss, np.array([0.7, -0.4, 0.3, 0.0]), lr=1e-3, n=n)
        assert np.all(np.isfinite(tiny))
        np.testing.assert_allclose(tiny, zero, rtol=1e-13, atol=1e-150)


def test_adam_with_eps_outside_the_root_is_finite_where_a_gradient_component_is_zero():
    """A parameter whose gradient is exactly 0 (a weight on an always-blank input) gives the
    second moment's term its closed form, 0, not 0 * inf = NaN."""
    import autograd.numpy as anp

    def loss(t):                                   # t[2] does not enter: its gradient is exactly 0
        return anp.sum(t[:2] ** 4) / 4 + t[0] * t[1]

    theta = np.array([0.7, -0.4, 0.3])
    for inside in (False, True):
        opt = memless.get_optimizer("adam", eps=1e-3, eps_inside=inside)
        with engine.forward_mode_only():        # the engine's own route, not the closed forms themselves
            terms = memless.correction_terms(opt, loss, theta, lr=1e-3)
        assert all(np.all(np.isfinite(t)) for t in terms.values())
        assert terms["second-moment"][2] == 0.0
        for name, term in terms.items():       # the closed forms, componentwise
            ch = {c.name: c for c in opt.channels()}[name]
            from autograd import grad
            g = grad(loss)(theta)
            F = opt.limit_direction(theta, grad(loss))
            from memless.numerics.autodiff import jvp
            HF = jvp(grad(loss), theta, F)[1]
            np.testing.assert_allclose(term, ch.closed_form(1e-3, theta, g, HF), rtol=1e-12, atol=1e-300)
