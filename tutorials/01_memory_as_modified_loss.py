# %% [markdown]
# # Tutorial 1 — Memory as a modified loss
#
# Heavy-ball momentum, `m <- beta m + grad L(theta); theta <- theta - h m`, is an
# optimizer **with memory**: its step depends on every past gradient. Cattaneo &
# Shigida (2025) show that it is tracked to O(h²) by a *memoryless* iteration
#
#     theta <- theta - h [F(theta) + M(theta)]
#
# with `F = grad L / (1 - beta)` and a correction `M` (their Eq. 12). In this
# tutorial you derive `M` by hand, confirm it with memless, and watch the two
# error orders, O(h) without `M` and O(h²) with it.
#
# Run it as a script (`python 01_memory_as_modified_loss.py`) or open it as a
# notebook (jupytext "percent" format).

# %%
import numpy as np
import autograd.numpy as anp

import memless
from memless import teaching


def loss(theta):
    """A loss with real curvature (not a quadratic): a bilinear valley, sines and quartics."""
    return 0.5 * (1.5 - 2.0 * theta[0] * theta[1]) ** 2 + 0.1 * anp.sum(anp.sin(theta)) + 0.05 * anp.sum(theta ** 4)


theta0 = np.array([0.3, 0.5])

# %% [markdown]
# ## Deriving the correction (Section 2)
#
# At a constant history theta, ..., theta, the heavy-ball direction after n steps is
# `F^(n) = sum_{k<=n} beta^k g(theta^(n-k))`. Moving the iterate k steps back by
# `v_k ≈ k h F` changes `F^(n)` by `beta^k H v_k` (H the Hessian). Eq. (12) sums
# these changes:
#
#     M = h sum_{k>=1} beta^k H (k F) = h H F sum_k k beta^k.
#
# **Exercise 1.** Finish the derivation: write `M` as a function of `beta`, `h`,
# the gradient `g` and the Hessian-gradient product `Hg`. (Hint: `sum_k k beta^k`
# has a closed form.)

# %%
def my_correction(beta, h, g, Hg):
    # your answer here: return the vector M
    return None


# %%
if not teaching.check("heavy-ball-correction", my_correction):
    my_correction = teaching.solution("heavy-ball-correction")     # only with MEMLESS_SOLUTIONS=1

# %% [markdown]
# ## The engine agrees
#
# memless computes `M` for any optimizer by differentiating its update rule with
# autograd. For heavy-ball it must give your formula.

# %%
from autograd import grad
from memless.numerics.autodiff import jvp

beta, h = 0.5, 0.01
opt = memless.get_optimizer("heavy-ball", beta=beta)
g = grad(loss)(theta0)
Hg = jvp(grad(loss), theta0, g)[1]
M_engine = memless.correction(opt, loss, theta0, lr=h)
M_hand = my_correction(beta, h, g, Hg)
print("engine:", M_engine, " by hand:", M_hand)
assert np.allclose(M_engine, M_hand, rtol=1e-10)

# %% [markdown]
# Since `H g = grad ||g||² / 2`, `F + M = (1/(1-beta)) grad[L + h beta/(2(1-beta)²) ||grad L||²]`:
# heavy-ball is gradient descent with step h/(1-beta) on a **modified loss** that
# penalizes the gradient norm — its memory *regularizes*. memless checks that this
# field really is a gradient (a symmetric Jacobian) before calling it a loss:

# %%
implicit = memless.implicit_loss(opt, loss, theta0, lr=h)
print(implicit.summary())
assert implicit.curl_free and implicit.residual < 1e-10

# %% [markdown]
# ## O(h) versus O(h²)
#
# Run heavy-ball and both memoryless iterations over the same time horizon for
# smaller and smaller h, and measure the largest distance between them.

# %%
lrs = [0.02, 0.01, 0.005, 0.0025]
study = memless.order_study(opt, loss, theta0, horizon=0.5, lrs=lrs)
print(study.summary())
assert 1.7 <= study.order_corrected <= 2.3, "the corrected iteration should be second order"
assert 0.8 <= study.order_uncorrected <= 1.2, "the uncorrected iteration should be first order"

# %% [markdown]
# Halving h divides the error without `M` by 2, and with `M` by 4.

# %%
if teaching.pyplot() is not None:          # memless.plot draws the study (in Jupyter, `study` shows itself)
    import memless.plot
    teaching.savefig(memless.plot.order(study), "01_orders")
