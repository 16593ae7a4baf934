"""Section 5.1 and 5.2, against independent derivations: the modified equation
(Kovachki & Stuart / Ghosh et al. for heavy-ball, Cattaneo et al. 2023, equation (8), for Adam),
its O(h^2) tracking, implicit losses, and the mini-batch permutation average."""
import itertools

import autograd.numpy as anp
import numpy as np
import pytest

import memless
from memless.minibatch import (C3, C4, batch_order, minibatch_correction, minibatch_trajectory,
                               permutation_average, permutation_monte_carlo)
from memless.studies.trajectories import fitted_order
from memless.studies import meanings

import reference as ref

H = 0.01


# -- the modified equation ---------------------------------------------------------

@pytest.mark.parametrize("beta", [0.3, 0.5, 0.9])
@pytest.mark.parametrize("point", range(len(ref.POINTS)))
def test_heavy_ball_modified_equation_is_kovachki_stuart(beta, point):
    """theta' = -grad L/(1-beta) - h(1+beta)/(4(1-beta)^3) grad ||grad L||^2, with grad ||g||^2 = 2 H g."""
    t = ref.POINTS[point]
    g, Hm = ref.grad(t), ref.hess(t)
    expected = -g / (1 - beta) - H * (1 + beta) / (4 * (1 - beta) ** 3) * 2 * Hm @ g
    eq = memless.modified_equation(memless.get_optimizer("heavy-ball", beta=beta), ref.loss, lr=H)
    np.testing.assert_allclose(eq.rhs(0.0, t), expected, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(eq.G1(t), -g / (1 - beta), rtol=1e-12)


@pytest.mark.parametrize("beta,rho,eps", [(0.9, 0.999, 1e-8), (0.5, 0.9, 1e-3), (0.8, 0.7, 0.1), (0.0, 0.99, 1e-2)])
@pytest.mark.parametrize("point", range(len(ref.POINTS)))
def test_adam_modified_equation_is_seed_004_equation_8(beta, rho, eps, point):
    """Generic engine + Section 5.1 == Cattaneo et al. 2023 eq. (8), written from its own derivation:
    theta' = -g/sqrt(D) + h [(1+rho)/(1-rho) g^2 - (1+beta)/(1-beta) D] / (2 D^(3/2)) * grad||g||_{1,eps}."""
    t = ref.POINTS[point]
    g, Hm = ref.grad(t), ref.hess(t)
    D = g ** 2 + eps
    grad_l1 = Hm @ (g / np.sqrt(D))
    expected = -g / np.sqrt(D) + H * ((1 + rho) / (1 - rho) * g ** 2 - (1 + beta) / (1 - beta) * D) \
        / (2 * D ** 1.5) * grad_l1
    opt = memless.get_optimizer("adam", beta1=beta, beta2=rho, eps=eps)
    np.testing.assert_allclose(memless.modified_equation(opt, ref.loss, lr=H).rhs(0.0, t), expected,
                               rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize("name,hp", [("heavy-ball", dict(beta=0.5)),
                                     ("adam", dict(beta1=0.5, beta2=0.7, eps=0.1)),
                                     ("lion", dict(rho1=0.5, rho2=0.7, eps=0.3))])
def test_ode_tracks_memoryless_iteration_to_second_order(name, hp):
    opt = memless.get_optimizer(name, **hp)
    t0, lrs = ref.POINTS[0], [0.02, 0.01, 0.005]
    corrected, plain = [], []
    for lr in lrs:
        steps = int(round(0.4 / lr))
        eq = memless.modified_equation(opt, ref.loss, lr)
        iterates = eq.iterate(t0, steps)
        corrected.append(np.max(np.abs(eq.solve(t0, steps, rtol=1e-10, atol=1e-12) - iterates)))
        plain.append(np.max(np.abs(eq.solve(t0, steps, corrected=False, rtol=1e-10, atol=1e-12) - iterates)))
    assert 1.7 <= fitted_order(lrs, corrected) <= 2.3, corrected
    assert 0.8 <= fitted_order(lrs, plain) <= 1.2, plain


def test_iterate_is_a_hand_written_heavy_ball_memoryless_loop():
    beta, t = 0.6, ref.POINTS[1].copy()
    eq = memless.modified_equation(memless.get_optimizer("heavy-ball", beta=beta), ref.loss, lr=H)
    path = eq.iterate(t, 5)
    for k in range(5):
        g = ref.grad(t)
        t = t - H * (g / (1 - beta) + H * beta / (1 - beta) ** 3 * ref.hess(t) @ g)
        np.testing.assert_allclose(path[k + 1], t, rtol=1e-12)


def test_modified_equation_errors_are_one_line():
    with pytest.raises(memless.MemlessError, match="lr must be"):
        memless.modified_equation(memless.get_optimizer("adam"), ref.loss, lr=0)
    with pytest.raises(memless.MemlessError, match="optimizer must be"):
        memless.modified_equation("adam", ref.loss, lr=0.1)


# -- implicit losses ----------------------------------------------------------------

EXACT = [("gd", {}), ("heavy-ball", dict(beta=0.7)), ("nesterov", dict(beta=0.8)),
         ("lion", dict(k="l2", rho1=0.6, rho2=0.9))]


@pytest.mark.parametrize("name,hp", EXACT, ids=[c[0] for c in EXACT])
def test_exact_implicit_losses(name, hp):
    opt = memless.get_optimizer(name, **hp)
    for t in ref.POINTS:
        check = memless.implicit_loss(opt, ref.loss, t, lr=H)
        assert check.curl_free and check.asymmetry < 1e-6
        assert check.residual < 1e-10
        assert check.regime == "exact"


def test_heavy_ball_implicit_loss_is_the_formula():
    beta = 0.7
    check = memless.implicit_loss(memless.get_optimizer("heavy-ball", beta=beta), ref.loss, ref.POINTS[0], lr=H)
    t = ref.POINTS[2]
    assert check.loss(t) == pytest.approx(ref.loss_np(t) + H * beta / (2 * (1 - beta) ** 2) * ref.grad(t) @ ref.grad(t))
    assert "||grad L||^2" in check.formula


def far_from_zero_gradients(t):
    """A loss whose gradient entries stay away from 0 near the test point (for eps -> 0)."""
    return ref.loss(t) + anp.sum(t)


@pytest.mark.parametrize("name,hp", [("adam", dict(beta1=0.9, beta2=0.999)), ("nadam", dict(beta1=0.8, beta2=0.9)),
                                     ("rmsprop", dict(rho=0.9)), ("lion", dict())])
def test_adaptive_implicit_losses_hold_as_eps_vanishes(name, hp):
    t = ref.POINTS[0]
    small = memless.implicit_loss(memless.get_optimizer(name, eps=1e-10, **hp), far_from_zero_gradients, t, lr=1e-3)
    assert small.regime.startswith("eps -> 0")
    assert small.curl_free, small.summary()
    assert small.residual < 1e-6
    large = memless.implicit_loss(memless.get_optimizer(name, eps=0.5, **hp), far_from_zero_gradients, t, lr=1e-3)
    assert not large.curl_free and large.residual > 1e-4     # honest: not a gradient field at large eps
    assert "eps -> 0" in large.note


@pytest.mark.parametrize("eps_inside", [True, False])
def test_adamw_with_decay_has_the_papers_implicit_loss(eps_inside):
    """Section 4: F + M = P grad Ltilde + lambda theta, Ltilde = L + h (c1 - c2) [||grad L||_1 + lambda
    (grad L . theta - L)] as eps -> 0, the decay step kept apart from the gradient field."""
    def check(eps):
        opt = memless.get_optimizer("adamw", weight_decay=0.1, eps=eps, eps_inside=eps_inside)
        return memless.implicit_loss(opt, far_from_zero_gradients, ref.POINTS[0], lr=1e-3)

    at_8, at_10 = check(1e-8), check(1e-10)
    assert at_8.loss is not None and "lambda (grad L . theta - L)" in at_8.formula
    assert at_8.residual < 1e-5, at_8.summary()
    assert at_10.curl_free and at_10.residual < 1e-7, at_10.summary()
    # what is left is O(eps): 100 times smaller at eps = 1e-10 than at 1e-8 (or already at rounding)
    assert at_10.asymmetry < 0.05 * at_8.asymmetry or at_10.asymmetry < 1e-9
    # the decay step matters: P grad Ltilde alone misses F + M by lambda theta
    from autograd import grad
    opt = memless.get_optimizer("adamw", weight_decay=0.1, eps=1e-8, eps_inside=eps_inside)
    declared, t = meanings.implicit_loss(opt, far_from_zero_gradients, 1e-3), ref.POINTS[0]
    g = grad(far_from_zero_gradients)(t)
    total = opt.limit_direction(t, grad(far_from_zero_gradients)) + memless.correction(
        opt, far_from_zero_gradients, t, lr=1e-3)
    field = declared.preconditioner(t, g) * grad(declared.loss)(t)
    assert np.linalg.norm(field + 0.1 * t - total) < 1e-5 * np.linalg.norm(total)
    assert np.linalg.norm(field - total) > 1e-3 * np.linalg.norm(total)


def test_adamw_at_large_eps_has_the_small_gradient_implicit_loss():
    """Every |g_i| << sqrt(eps): F + M = eps^(-1/2) grad [L + h c1 ||grad L||^2/(2 sqrt(eps))] (+ decay):
    the first moment alone, a ||grad L||^2 penalty on a flow slowed by eps^(-1/2)."""
    from memless.losses import logistic
    theta = np.full(4, 0.3)
    for decay in (0.0, 0.05):
        opt = memless.get_optimizer("adamw", beta2=0.99, eps=1e6, weight_decay=decay)
        check = memless.implicit_loss(opt, logistic, theta, lr=1e-3)
        assert check.regime == "every |g_i| << sqrt(eps)" and "||grad L||^2/(2 sqrt(eps))" in check.formula
        assert check.residual < 1e-4 and check.curl_free, check.summary()


def test_no_implicit_loss_is_said_so():
    class Plain(memless.MemoryOptimizer):
        window = 2

        def direction(self, history, gradient):
            return sum(gradient(x) for x in history[:2]) / 2

    plain = memless.implicit_loss(Plain(), ref.loss, ref.POINTS[0], lr=H)
    assert plain.loss is None and "declares none" in plain.note


# -- mini-batch (Section 5.2) -----------------------------------------------------------

def batch_loss(c):
    def loss(t):
        return 0.5 * (1.5 - c[0] * t[0] * t[1]) ** 2 + 0.1 * anp.sum(anp.sin(c[1] * t)) + 0.05 * c[2] * anp.sum(t ** 4)
    return loss


BATCHES = [batch_loss(c) for c in np.random.default_rng(0).uniform(0.5, 1.5, size=(5, 3))]


@pytest.mark.parametrize("beta", [0.3, 0.6, 0.9])
@pytest.mark.parametrize("n", [1, 2, 5, 30])
def test_C3_C4_closed_forms_are_the_sums(beta, n):
    k = np.arange(1, n + 1)
    same = np.sum(beta ** k * (1 - beta ** k) / (1 - beta))
    every = sum(beta ** j * sum((1 - beta ** (s + 1)) / (1 - beta) for s in range(n - j, n)) for j in k)
    assert C3(beta, n) == pytest.approx(same, rel=1e-12)
    assert C4(beta, n) == pytest.approx(every - same, rel=1e-10, abs=1e-12)
    assert C3(beta, 10 ** 5) == pytest.approx(C3(beta), rel=1e-12)
    assert C4(beta, 10 ** 5) == pytest.approx(C4(beta), rel=1e-9)
    assert C3(beta) + C4(beta) == pytest.approx(beta / (1 - beta) ** 3)       # the full-batch heavy-ball weight


def test_one_batch_is_full_batch():
    for name in ("heavy-ball", "adamw", "lion"):
        opt = memless.get_optimizer(name)
        np.testing.assert_allclose(minibatch_correction(opt, [ref.loss], [0] * 7, ref.POINTS[1], H),
                                   memless.correction(opt, ref.loss, ref.POINTS[1], H, n=6), rtol=1e-11, atol=1e-16)


def test_permutation_average_is_exact_over_all_permutations():
    """Averaging the engine's M^(n) over all 4! orders equals the closed form to rounding."""
    opt = memless.get_optimizer("heavy-ball", beta=0.6)
    batches, t = BATCHES[:4], ref.POINTS[0]
    exhaustive = np.mean([minibatch_correction(opt, batches, list(p), t, H)
                          for p in itertools.permutations(range(4))], axis=0)
    average = permutation_average(opt, batches, t, H)
    np.testing.assert_allclose(exhaustive, average.total, rtol=1e-10)
    np.testing.assert_allclose(average.full_batch + average.variance, average.total, rtol=1e-12)
    full = memless.correction(opt, lambda x: sum(b(x) for b in batches) / 4, t, H, n=3)
    np.testing.assert_allclose(average.full_batch, full, rtol=1e-10)


@pytest.mark.slow
def test_permutation_average_matches_monte_carlo():
    """5 batches, 400 random orders: every coordinate within 4 standard errors."""
    opt = memless.get_optimizer("heavy-ball", beta=0.8)
    t = ref.POINTS[1]
    mean, se = permutation_monte_carlo(opt, BATCHES, t, H, samples=400, seed=1)
    average = permutation_average(opt, BATCHES, t, H)
    assert np.all(np.abs(mean - average.total) <= 4 * se)
    assert np.all(se < 0.1 * np.abs(average.total))          # the test has power


def _hand_written_correction(beta, h, gradients, hessians, orders):
    """Eq. (12) for heavy-ball, written out, for each row of ``orders`` at once: F^(s) streamed over
    the batches at the constant history, v_k = sum_{s=n-k..n-1} F^(s), M = h sum_k beta^k H_(order[n-k]) v_k."""
    orders = np.atleast_2d(orders)
    G, Hs = np.asarray(gradients), np.asarray(hessians)
    n = orders.shape[1] - 1
    momentum, directions = np.zeros((len(orders), G.shape[1])), []
    for s in range(n):
        momentum = beta * momentum + G[orders[:, s]]
        directions.append(momentum)
    M, v = np.zeros_like(momentum), np.zeros_like(momentum)
    for k in range(1, n + 1):
        v = v + directions[n - k]
        M = M + beta ** k * np.einsum("sij,sj->si", Hs[orders[:, n - k]], v)
    return h * M


@pytest.mark.parametrize("m", [2, 4, 8])
def test_multi_epoch_average_matches_monte_carlo_over_reshuffled_epochs(m):
    """Batches reshuffled every epoch, step n deep in training at position p of its epoch: the closed
    form h [beta/(1-beta)^3 Hbar gbar + kappa_p Cov] equals the average of Eq. (12) over random
    epoch orders within 4 standard errors, and the first-epoch weight would not."""
    from autograd import hessian
    from memless.minibatch import kappa, multi_epoch_average
    beta, t = 0.6, ref.POINTS[1]
    losses = [lambda x, s=s: ref.loss(x) + 2.0 * np.sin(1.0 + 2.0 * s) * anp.sum(x ** 3) + 0.3 * s * x[0] * x[1]
              for s in range(m)]
    gradients = [np.asarray(memless.engine.objective.Objective(f).gradient(t)) for f in losses]
    hessians = [np.asarray(hessian(f)(t)) for f in losses]
    opt = memless.get_optimizer("heavy-ball", beta=beta)
    rng = np.random.default_rng(m)
    epochs = int(np.ceil(90 / m))                   # beta^90 < 1e-19: n -> infinity to rounding
    for position in sorted({0, m // 2, m - 1}):
        average = multi_epoch_average(opt, losses, t, H, position)
        assert average.kappa == pytest.approx(kappa(beta, m, position)) and average.kappa > 0
        orders = np.concatenate([rng.permuted(np.tile(np.arange(m), (4000, 1)), axis=1) for _ in range(epochs + 1)],
                                axis=1)[:, : epochs * m + position + 1]
        draws = _hand_written_correction(beta, H, gradients, hessians, orders)
        mean, se = draws.mean(axis=0), draws.std(axis=0, ddof=1) / np.sqrt(len(draws))
        assert np.all(np.abs(mean - average.total) <= 4 * se + 1e-15), (position, mean, average.total, se)
        # power: the variance term is resolved, and the first-epoch weight would be many errors away
        assert np.max(np.abs(average.variance) / se) > 8
        first_epoch = average.full_batch + average.variance / average.kappa * (C3(beta) - C4(beta) / (m - 1))
        assert np.max(np.abs(first_epoch - mean) / se) > 8
    # the hand-written Eq. (12) is the engine's, for one order
    order = np.concatenate([rng.permutation(m) for _ in range(3)])
    np.testing.assert_allclose(minibatch_correction(opt, losses, order, t, H),
                               _hand_written_correction(beta, H, gradients, hessians, order)[0], rtol=1e-10)


def test_kappa_numbers_and_the_first_epoch_weight_differ():
    """beta = 0.9: kappa_p in [4.50, 4.97] for m = 2 and [7.10, 7.80] for m = 4 (always > 0), while the
    first-epoch weight C3 - C4/(m - 1) of the n -> infinity constants is -805 and -237."""
    from memless.minibatch import kappa
    assert [round(kappa(0.9, 2, p), 2) for p in range(2)] == [4.50, 4.97]
    assert min(kappa(0.9, 4, p) for p in range(4)) == pytest.approx(7.10, abs=0.01)
    assert max(kappa(0.9, 4, p) for p in range(4)) == pytest.approx(7.80, abs=0.01)
    assert C3(0.9) - C4(0.9) / 1 == pytest.approx(-805.26, abs=0.01)
    assert C3(0.9) - C4(0.9) / 3 == pytest.approx(-236.84, abs=0.01)
    with pytest.raises(memless.MemlessError, match="position must be an integer in 0..3"):
        kappa(0.9, 4, 4)
    with pytest.raises(memless.MemlessError, match="beta must be a number in \\[0, 1\\)"):
        C3(1.0)


def test_variance_term_vanishes_for_equal_batches_and_not_otherwise():
    opt = memless.get_optimizer("heavy-ball", beta=0.6)
    equal = permutation_average(opt, [BATCHES[0]] * 4, ref.POINTS[0], H)
    assert np.all(equal.variance == 0)
    different = permutation_average(opt, BATCHES, ref.POINTS[0], H)
    assert np.linalg.norm(different.variance) > 1e-3 * np.linalg.norm(different.full_batch)


def test_variance_term_is_half_the_gradient_of_the_gradient_variance():
    """E[(H_k - Hbar)(g_k - gbar)] = 1/2 grad E||grad L_k - grad L||^2 (finite differences)."""
    from autograd import grad
    opt = memless.get_optimizer("heavy-ball", beta=0.6)
    t, m = ref.POINTS[2], len(BATCHES)
    average = permutation_average(opt, BATCHES, t, H)
    grads = [grad(b) for b in BATCHES]

    def spread(x):
        gs = np.array([g(x) for g in grads])
        return np.mean(np.sum((gs - gs.mean(axis=0)) ** 2, axis=1))

    d = 1e-6
    fd = np.array([(spread(t + d * e) - spread(t - d * e)) / (2 * d) for e in np.eye(3)])
    factor = H * (average.C3 - average.C4 / (m - 1))
    np.testing.assert_allclose(average.variance, factor * fd / 2, rtol=1e-6)


def test_minibatch_trajectory_reshuffles_each_epoch_and_is_seeded():
    order = batch_order(5, 20, seed=3)
    for epoch in range(4):
        assert sorted(order[5 * epoch:5 * epoch + 5]) == list(range(5))
    assert not np.array_equal(order[:5], order[5:10]) or not np.array_equal(order[5:10], order[10:15])
    opt = memless.get_optimizer("heavy-ball", beta=0.5)
    a = minibatch_trajectory(opt, BATCHES, ref.POINTS[0], 0.01, 20, seed=3)
    b = minibatch_trajectory(opt, BATCHES, ref.POINTS[0], 0.01, 20, order=order)
    np.testing.assert_array_equal(a, b)
    # a hand-written heavy-ball loop on the same order
    from autograd import grad
    t, m = ref.POINTS[0].copy(), 0.0
    for n in range(20):
        m = 0.5 * m + grad(BATCHES[order[n]])(t)
        t = t - 0.01 * m
    np.testing.assert_allclose(a[-1], t, rtol=1e-12)


def test_minibatch_errors():
    opt = memless.get_optimizer("heavy-ball")
    with pytest.raises(memless.MemlessError, match="list of per-batch losses"):
        minibatch_trajectory(opt, ref.loss, ref.POINTS[0], 0.1, 3)
    with pytest.raises(memless.MemlessError, match="closed form is for heavy-ball"):
        permutation_average(memless.get_optimizer("adam"), BATCHES, ref.POINTS[0], H)
    with pytest.raises(memless.MemlessError, match="batch indices"):
        minibatch_correction(opt, BATCHES, [0, 9], ref.POINTS[0], H)


def test_the_implicit_loss_is_written_with_its_condition_in_front():
    from memless.studies.modified import implicit_loss
    check = implicit_loss(memless.get_optimizer("adamw"), "curvy", None, 1e-3)
    assert check.equation.startswith("as eps -> 0 (every |g_i| >> sqrt(eps)): Ltilde = L + h (")
    assert "Ltilde = as" not in check.summary()
    plain = implicit_loss(memless.get_optimizer("heavy-ball", beta=0.5), "curvy", None, 1e-3)
    assert plain.equation.startswith("Ltilde = L + h beta/(2(1-beta)^2)")
