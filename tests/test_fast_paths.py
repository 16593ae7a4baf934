"""The engine's fast paths against the slow, obviously-correct ones (the performance issue).

* linear Phi: finite-n sums as scalars == the same sums over explicit rows F^(s);
* chunked rows == rows formed at once;
* the momentum closed form at large n == Eq. (12) summed term by term (history method);
* the loss evaluated once, and one Hessian-vector product per distinct history
  direction, both counted;
* the history engine's memory grows with the window W, not with d^2.
"""
import tracemalloc

import numpy as np
import pytest

import memless
from memless.engine import corrections as engine
from memless.losses import mlp
from memless.engine import objective as problem
from memless.engine.objective import Objective

import reference as ref

H = 0.01
LINEAR = [("heavy-ball", dict(beta=0.7)), ("nesterov", dict(beta=0.9)),
          ("lion", dict(rho1=0.6, rho2=0.9, k="l2", weight_decay=0.1))]


def as_nonlinear(opt):
    """The same optimizer with the linear fast path switched off."""
    slow = type("Slow" + type(opt).__name__, (type(opt),), {"linear": False})
    return slow(**opt.hyper)


@pytest.mark.parametrize("name,hp", LINEAR, ids=[c[0] for c in LINEAR])
@pytest.mark.parametrize("n", [1, 7, 60, 500])
def test_linear_fast_path_equals_rows(name, hp, n):
    fast = memless.get_optimizer(name, **hp)
    assert fast.linear
    slow = as_nonlinear(fast)
    t = ref.POINTS[1]
    expected = memless.correction(slow, ref.loss, t, lr=H, n=n)
    np.testing.assert_allclose(memless.correction(fast, ref.loss, t, lr=H, n=n), expected, rtol=1e-12, atol=1e-16)
    for name_, part in memless.correction_terms(fast, ref.loss, t, lr=H, n=n).items():
        np.testing.assert_allclose(part, memless.correction_terms(slow, ref.loss, t, lr=H, n=n)[name_],
                                   rtol=1e-12, atol=1e-16)


def test_only_linear_phis_claim_linearity():
    """A false `linear` flag would silently give wrong corrections: the built-ins' claims are checked."""
    rng = np.random.default_rng(0)
    for name in memless.available():
        opt = memless.get_optimizer(name)
        if not getattr(opt, "linear", False):
            continue
        channels = opt.channels()
        a = {ch.name: rng.normal(size=3) for ch in channels}
        b = {ch.name: rng.normal(size=3) for ch in channels}
        mixed = {k: 2.0 * a[k] - 3.0 * b[k] for k in a}
        np.testing.assert_allclose(opt.combine(mixed), 2.0 * opt.combine(a) - 3.0 * opt.combine(b),
                                   rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name,hp", [("lion", dict(rho1=0.8, rho2=0.95, eps=0.1)),
                                     ("rmsprop", dict(rho=0.9, eps=0.05))])
def test_chunked_rows_equal_rows_at_once(name, hp, monkeypatch):
    opt = memless.get_optimizer(name, **hp)
    t = ref.POINTS[2]
    at_once = memless.correction(opt, ref.loss, t, lr=H, n=300)
    monkeypatch.setattr(engine, "_CHUNK_ELEMENTS", 7)     # rows of 3 parameters: chunks of 2 rows
    np.testing.assert_allclose(memless.correction(opt, ref.loss, t, lr=H, n=300), at_once, rtol=1e-13, atol=1e-17)


@pytest.mark.parametrize("name,hp", [("heavy-ball", dict(beta=0.6)), ("rmsprop", dict(rho=0.7, eps=0.05)),
                                     ("lion", dict(rho1=0.5, rho2=0.7, eps=0.1)),
                                     ("adamw", dict(beta1=0.6, beta2=0.7, eps=0.1))])
@pytest.mark.parametrize("n", [300, 3000])
def test_momentum_closed_form_equals_term_by_term_sum_at_large_n(name, hp, n):
    """Cost independent of n must not mean wrong at large n: compare with Eq. (12) term by term."""
    opt = memless.get_optimizer(name, **hp)
    t = ref.POINTS[0]
    fast = memless.correction(opt, ref.loss, t, lr=H, n=n, method="momentum")
    slow, info = memless.correction(opt, ref.loss, t, lr=H, n=n, method="history", full_output=True)
    assert info.terms >= 32
    np.testing.assert_allclose(fast, slow, rtol=1e-10, atol=1e-16)


class CountingLoss:
    """ref.loss, counting how often it is evaluated (a gradient evaluates it once)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, theta):
        self.calls += 1
        return ref.loss(theta)


@pytest.fixture
def hvps(monkeypatch):
    """Counts the Hessian-vector products taken from recorded gradients."""
    count = {"hvp": 0}
    evaluate = Objective._evaluate

    def counting(self, theta, linearize):
        value, g, hvp = evaluate(self, theta, linearize)
        if hvp is None:
            return value, g, hvp

        def counted(v):
            count["hvp"] += 1
            return hvp(v)

        return value, g, counted

    monkeypatch.setattr(Objective, "_evaluate", counting)
    monkeypatch.setattr(problem, "RECORD_MIN_SIZE", 0)     # record even for 3 parameters
    return count


@pytest.mark.parametrize("name", ["heavy-ball", "nesterov", "adamw", "adam", "nadam", "rmsprop", "lion"])
@pytest.mark.parametrize("n", [None, 5, 5000])
def test_one_gradient_and_one_hvp_per_memory_direction(name, n, hvps):
    """correction() evaluates the loss once (value, gradient and its record in one pass),
    then one Hessian-vector product per distinct history direction: channels without a
    finite-n residual share one, so the limit costs exactly one HVP for every built-in."""
    opt = memless.get_optimizer(name)
    engine._closed_forms_match(opt)          # the once-per-optimizer probe of its closed forms, not counted
    hvps["hvp"] = 0
    loss = CountingLoss()
    memless.correction(opt, loss, ref.POINTS[1], lr=H, n=n)
    assert loss.calls == 1
    memory = sum(1 for ch in opt.channels() if ch.decay > 0)
    if n is None:
        assert hvps["hvp"] == 1
    else:
        assert 1 <= hvps["hvp"] <= memory


def test_split_costs_no_extra_hessian_vector_product(hvps):
    engine._closed_forms_match(memless.get_optimizer("adamw"))
    hvps["hvp"] = 0
    loss = CountingLoss()
    memless.correction_terms(memless.get_optimizer("adamw"), loss, ref.POINTS[1], lr=H)
    assert loss.calls == 1 and hvps["hvp"] == 1


@pytest.mark.parametrize("name,hp", [("heavy-ball", dict(beta=0.7)), ("adamw", dict(beta1=0.8, beta2=0.9, eps=0.1)),
                                     ("lion", dict(rho1=0.5, rho2=0.8, eps=0.1)), ("rmsprop", dict(rho=0.8, eps=0.1))])
@pytest.mark.parametrize("n", [None, 4, 40])
def test_recorded_and_recomputed_hvps_give_the_same_correction(name, hp, n, monkeypatch):
    """Small models recompute the gradient inside forward-over-reverse HVPs; large ones
    record it once and take reverse-over-reverse HVPs.  Both are exact."""
    opt = memless.get_optimizer(name, **hp)
    t = ref.POINTS[1]
    recomputed = memless.correction(opt, ref.loss, t, lr=H, n=n)
    history = memless.correction(opt, ref.loss, t, lr=H, n=n or 200, method="history")
    monkeypatch.setattr(problem, "RECORD_MIN_SIZE", 0)
    np.testing.assert_allclose(memless.correction(opt, ref.loss, t, lr=H, n=n), recomputed, rtol=1e-12, atol=1e-16)
    np.testing.assert_allclose(memless.correction(opt, ref.loss, t, lr=H, n=n or 200, method="history"), history,
                               rtol=1e-12, atol=1e-16)


def test_hessian_vector_products_are_the_hessian(monkeypatch):
    monkeypatch.setattr(problem, "RECORD_MIN_SIZE", 0)
    """The recorded reverse-over-reverse HVP equals the hand-written Hessian times v."""
    rng = np.random.default_rng(3)
    obj = Objective(ref.loss).check(ref.POINTS[2], linearize=True)
    frozen = obj.frozen(ref.POINTS[2], linearize=True)
    for _ in range(3):
        v = rng.normal(size=3)
        np.testing.assert_allclose(engine.jvp(frozen, ref.POINTS[2], v)[1], ref.hess(ref.POINTS[2]) @ v,
                                   rtol=1e-12, atol=1e-14)
    # away from the frozen point it is the ordinary gradient, differentiated as usual
    x = ref.POINTS[0]
    np.testing.assert_allclose(frozen(x), ref.grad(x), rtol=1e-13)
    np.testing.assert_allclose(engine.jvp(frozen, x, v)[1], ref.hess(x) @ v, rtol=1e-12, atol=1e-14)


class Window(memless.MemoryOptimizer):
    """F^(n) = weighted average of the last W gradients (no momentum form)."""

    def __init__(self, window):
        super().__init__()
        self.window = window

    def direction(self, history, gradient):
        recent = history[: self.window]
        return sum((k + 1.0) * gradient(theta) for k, theta in enumerate(recent)) / len(recent) ** 2


def test_history_engine_memory_grows_with_window_not_d_squared():
    problem = mlp(sizes=(30, 40, 5), samples=16)      # d = 1445: d^2 floats would be 16.7 MB
    theta, d = problem.start, problem.start.size
    peaks = {}
    for W in (4, 16):
        opt = Window(W)
        memless.correction(opt, problem.loss, theta, lr=H, n=2 * W)   # warm-up
        tracemalloc.start()
        memless.correction(opt, problem.loss, theta, lr=H, n=2 * W)
        peaks[W] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert max(peaks.values()) < 0.1 * d * d * 8
    # the extra memory of 12 more history directions is a few d-vectors each, not d x d
    assert peaks[16] - peaks[4] < 12 * 20 * d * 8


def test_window_engine_counts_one_hvp_per_history_term(hvps):
    loss = CountingLoss()
    memless.correction(Window(6), loss, ref.POINTS[1], lr=H, n=20)
    assert loss.calls == 1
    assert hvps["hvp"] == 5        # W - 1 = 5 perturbed history entries


@pytest.mark.parametrize("k", ["l1-smooth", "logcosh", "sign"])
@pytest.mark.parametrize("rho1, rho2", [(0.9, 0.99), (0.99, 0.999), (0.5, 0.9)])
def test_lions_finite_n_rows_through_the_interpolant_match_every_row_formed(k, rho1, rho2, monkeypatch):
    """Lion's exact M^(n) sums thousands of directions F^(s) that differ from the limit; an elementwise
    F^(s) depends on s through the channel weights only, so they are interpolated at Chebyshev nodes
    (checked between its nodes). Against every row formed one by one, on a loss with real curvature."""
    from memless.losses import mlp
    problem_ = mlp(sizes=(4, 8, 3), samples=16)
    opt = memless.get_optimizer("lion", k=k, rho1=rho1, rho2=rho2, eps=1e-6)
    formed = []
    rows = engine._rows
    monkeypatch.setattr(engine, "_rows", lambda *a: formed.append(len(a[3])) or rows(*a))
    for n in (300, 1000, 5000):
        formed.clear()
        fast = memless.correction(opt, problem_.loss, problem_.start, lr=1e-3, n=n)
        if (rho1, rho2) == (0.9, 0.99) and k != "sign" and n == 1000:
            assert formed == [], (n, formed)               # no row was formed one by one
        with monkeypatch.context() as m:
            m.setattr(engine, "INTERPOLATION_NODES", ())
            exact = memless.correction(opt, problem_.loss, problem_.start, lr=1e-3, n=n)
        if (rho1, rho2) == (0.9, 0.99) and k != "sign" and n == 1000:
            assert sum(formed) > 100                       # ... and here they were
        np.testing.assert_allclose(fast, exact, rtol=0, atol=1e-12 * np.max(np.abs(exact)))


# ----------------------------------------------------------------------------
# Reference losses with hand-written derivatives
# ----------------------------------------------------------------------------

def _relative(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) / max(float(np.max(np.abs(b))), 1e-300)


@pytest.mark.parametrize("name", list(memless.losses.REFERENCE_LOSSES))
def test_reference_losses_hand_written_derivatives_are_autograds(name):
    """Gradient, HVP and the HVP's own derivative (third derivatives, by autograd through the
    hand-written HVP) against autograd on the plain function, at points away from the start."""
    from autograd import grad, make_jvp
    reference = memless.losses.REFERENCE_LOSSES[name]
    closed, plain = reference.loss, reference.loss.function
    rng = np.random.default_rng(7)
    for _ in range(3):
        t = reference.start + 0.4 * rng.normal(size=reference.start.shape)
        v, w = rng.normal(size=t.shape), rng.normal(size=t.shape)
        assert closed(t) == plain(t)
        assert _relative(closed.gradient_function(t), grad(plain)(t)) < 1e-14
        assert _relative(closed.hvp_function(t, v), make_jvp(grad(plain))(t)(v)[1]) < 1e-14
        third = make_jvp(lambda x, v=v: make_jvp(closed.traced_gradient)(x)(v)[1])(t)(w)[1]
        expected = make_jvp(lambda x, v=v: make_jvp(grad(plain))(x)(v)[1])(t)(w)[1]
        assert _relative(third, expected) < 1e-13
    if name == "bilinear":          # the general form, beyond the reference's two parameters
        t = np.array([0.7, -1.2, 0.4])
        assert _relative(closed.gradient_function(t), grad(plain)(t)) < 1e-14
        assert _relative(closed.hvp_function(t, v[:1].repeat(3)), make_jvp(grad(plain))(t)(v[:1].repeat(3))[1]) < 1e-14


@pytest.mark.parametrize("opt_name,loss_name", [("adamw", "curvy"), ("lion", "rosenbrock"), ("nesterov", "logistic"),
                                                ("muon", "network")])
def test_reference_loss_by_name_gives_the_numbers_of_the_plain_function(opt_name, loss_name):
    """The hand-written derivatives are a fast path: the same correction and path as autograd's
    general path on the same function (a user's own loss), up to rounding."""
    reference = memless.losses.REFERENCE_LOSSES[loss_name]
    opt = memless.get_optimizer(opt_name)
    plain = reference.loss.function
    for n in (5, None):
        fast = memless.correction(opt, loss_name, reference.start, 0.01, n)
        general = memless.correction(opt, plain, reference.start, 0.01, n)
        assert _relative(fast, general) < 1e-12
    fast = memless.trajectory(opt, loss_name, reference.start, 0.01, 40, memoryless=True)
    general = memless.trajectory(opt, plain, reference.start, 0.01, 40, memoryless=True)
    assert _relative(fast, general) < 1e-12


# ----------------------------------------------------------------------------
# Channels' closed forms in place of the forward-mode route
# ----------------------------------------------------------------------------

CLOSED_FORM_ROUTE = [("adamw", dict(beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01)),
                     ("adam", dict(beta1=0.5, beta2=0.6, eps=0.1)),
                     ("adam", dict(beta1=0.9, beta2=0.99, eps=1e-3, eps_inside=False)),
                     ("nadam", dict()), ("rmsprop", dict(rho=0.9, eps=1e-3)),
                     ("heavy-ball", dict(beta=0.8)), ("nesterov", dict(beta=0.7))]


def _big_problem():
    problem_ = mlp(sizes=(20, 40, 10), samples=32)
    return problem_.loss, problem_.start + 0.05 * np.sin(np.arange(problem_.start.size))


@pytest.mark.parametrize("name,hp", CLOSED_FORM_ROUTE, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CLOSED_FORM_ROUTE)])
@pytest.mark.parametrize("n", [None, 1, 6, 200])
def test_closed_form_route_equals_forward_mode(name, hp, n, monkeypatch):
    """Where a correction is taken from the channels' closed forms it equals the forward-mode route to
    1e-12 -- the total and each channel -- and the forward-mode route is really skipped there."""
    loss, theta = _big_problem()
    opt = memless.get_optimizer(name, **hp)
    with engine.forward_mode_only():
        expected_total = memless.correction(opt, loss, theta, lr=H, n=n)
        expected_terms = memless.correction_terms(opt, loss, theta, lr=H, n=n)
    assert np.max(np.abs(expected_total)) > 0
    closed_forms_apply = n is None or all(ch.constant_weight or ch.weight(n) == ch.weight(np.inf)
                                          for ch in opt.channels() if ch.decay > 0)
    assert engine._closed_forms_match(opt)            # the probe (kept), before counting
    calls = []
    real = engine._signal_tangents
    monkeypatch.setattr(engine, "_signal_tangents", lambda *a, **k: calls.append(1) or real(*a, **k))
    total = memless.correction(opt, loss, theta, lr=H, n=n)
    terms = memless.correction_terms(opt, loss, theta, lr=H, n=n)
    assert (not calls) == closed_forms_apply
    scale = np.max(np.abs(expected_total))
    np.testing.assert_allclose(total, expected_total, rtol=0, atol=1e-12 * scale)
    assert sorted(terms) == sorted(expected_terms)
    for key, term in expected_terms.items():
        np.testing.assert_allclose(terms[key], term, rtol=0, atol=1e-12 * scale)


def test_a_wrong_closed_form_is_not_used():
    """A plugin channel whose closed form is wrong (here: twice the true term) fails the probe: the
    engine keeps the forward-mode route and gives the right numbers."""
    good = memless.get_optimizer("heavy-ball", beta=0.8)
    wrong = _heavy_ball_with(lambda f, h, theta, g, HF: 2.0 * f(h, theta, g, HF), "doubled-closed-form")
    with pytest.warns(memless.DerivativeWarning, match="channel 'momentum': closed_form"):
        assert not engine._closed_forms_match(wrong)
    assert engine._closed_forms_match(good)
    loss, theta = _big_problem()
    with engine.forward_mode_only():
        expected = memless.correction(good, loss, theta, lr=H)
    np.testing.assert_allclose(memless.correction(wrong, loss, theta, lr=H), expected, rtol=1e-12, atol=0)


def _heavy_ball_with(closed_form, name):
    good = memless.get_optimizer("heavy-ball", beta=0.8)

    class Plugin(type(good)):
        def channels(self):
            return [memless.Channel(ch.name, ch.decay, ch.signal, ch.scale, ch.formula,
                                    lambda h, theta, g, HF, f=ch.closed_form: closed_form(f, h, theta, g, HF))
                    for ch in super().channels()]

    Plugin.name = name
    return Plugin(beta=0.8)


def test_a_closed_form_not_linear_in_h_or_raising_is_not_used_and_the_kit_fails_it():
    """A closed form right at one lr only (here 10 h^2 times the term: right at h = 0.1) is caught by the
    probe's second lr; one that raises is caught too. Neither is used; check_optimizer fails on both."""
    from memless.testing import check_optimizer
    loss, theta = _big_problem()
    good = memless.get_optimizer("heavy-ball", beta=0.8)
    with engine.forward_mode_only():
        expected = memless.correction(good, loss, theta, lr=H)
    quadratic = _heavy_ball_with(lambda f, h, theta, g, HF: 10 * h * f(h, theta, g, HF), "quadratic-in-h")
    raising = _heavy_ball_with(lambda f, h, theta, g, HF: undefined_name, "raising")  # noqa: F821
    for plugin in (quadratic, raising):
        with pytest.warns(memless.DerivativeWarning):
            got = memless.correction(plugin, loss, theta, lr=H)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
        result = check_optimizer(plugin, orders=False, raise_on_failure=False)
        failed = [c for c in result.failures if c.name == "closed form"]
        assert failed and "closed_form" in failed[0].detail
    assert all(c.passed for c in check_optimizer(good, orders=False, raise_on_failure=False).checks)


@pytest.mark.parametrize("name", sorted(memless.available()))
def test_no_built_in_closed_form_is_called_wrong(name):
    """The probe warns only beyond what rounding explains (CLOSED_FORM_WRONG): no built-in warns, whether
    its closed forms are used (Adam, heavy-ball, ...) or not (Lion's smooth sign, whose forward-mode term
    cancels to ~1e-7 of itself at eps = 1e-8)."""
    import warnings
    from memless.studies import meanings
    opt = memless.get_optimizer(name)
    engine._PROBED.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error", memless.DerivativeWarning)
        memless.correction(opt, meanings.reference_losses(opt)[0], None, lr=1e-3, n=None if name != "schedule-free-sgd"
                           else 10)
