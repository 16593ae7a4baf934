# %% [markdown]
# # Tutorial 7 — The next term: M₂ and an O(h³) memoryless iteration
#
# Cattaneo & Shigida (2025) stop at first order: the memoryless iteration
# `theta <- theta - h [F(theta) + M1(theta)]` tracks an optimizer with memory to O(h²).
# memless also computes the **next** term, `M2`, so that
#
#     theta <- theta - h [F(theta) + M1(theta) + M2(theta)]
#
# tracks it to O(h³). This goes beyond the paper; the derivation is in
# `memless/engine/second_order.py` and on the documentation's page "The next term".
# In this tutorial you watch three slopes on one figure, derive heavy-ball's `M2` by
# hand, and use `|M2| / |M1|` to see where the first-order picture stops.
#
# Run it as a script (`python 07_the_next_term.py`) or open it as a notebook.

# %%
import numpy as np
import autograd.numpy as anp

import memless
from memless import teaching


def loss(theta):
    """Real third derivatives: a bilinear valley, sines and quartics."""
    return 0.5 * (1.5 - 2.0 * theta[0] * theta[1]) ** 2 + 0.1 * anp.sum(anp.sin(theta)) + 0.05 * anp.sum(theta ** 4)


theta0 = np.array([0.3, 0.5])

# %% [markdown]
# ## Three slopes
#
# `order_study(..., order=2)` runs the optimizer and three memoryless iterations — without
# a correction, with `M1`, and with `M1 + M2` — over the same horizon, at smaller and
# smaller h. Halving h should divide the three errors by about 2, 4 and 8.

# %%
opt = memless.get_optimizer("heavy-ball", beta=0.5)
study = memless.order_study(opt, loss, theta0, horizon=0.4, lrs=[0.01, 0.005, 0.0025], order=2)
print(study.summary())
assert abs(study.order_second - 3) < 0.3 and abs(study.order_corrected - 2) < 0.3
assert abs(study.order_uncorrected - 1) < 0.3

# %%
plt = teaching.pyplot()
if plt is not None:
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for errors, label, marker in (
            (study.errors_uncorrected, f"no correction (measured order {study.order_uncorrected:.2f})", "o"),
            (study.errors_corrected, f"with M1, Eq. 12 (measured order {study.order_corrected:.2f})", "s"),
            (study.errors_second, f"with M1 + M2 (measured order {study.order_second:.2f})", "^")):
        ax.loglog(study.lrs, errors, marker=marker, label=label)
    ax.set_xlabel("learning rate h")
    ax.set_ylabel("largest distance from heavy-ball")
    ax.set_title("heavy-ball (beta = 0.5): the three memoryless iterations")
    ax.legend(fontsize=8)
    fig.tight_layout()
    teaching.savefig(fig, "07_three_slopes")

# %% [markdown]
# ## Deriving heavy-ball's M2
#
# Along the memoryless path the history seen from theta is `theta + delta_k` with
# `delta_k = h sum_s [F + M1 + h J v + ...]` over the k last steps. Expanding
# `F^(n)(history)` to second order in `delta`, and taking the limit n -> infinity, leaves
# three history operators with the weights of the geometric memory:
#
#     M2 = h A[M1] + h^2 B[J F] + h^2 C[F],
#     A[u] = sum_k k beta^k H u,  B[u] = sum_k k(k+1)/2 beta^k H u,  C[u] = 1/2 sum_k k^2 beta^k T[u, u]
#
# with `F = g/(1-beta)`, `J = H/(1-beta)` (heavy-ball's frozen direction and its Jacobian),
# `M1 = h beta/(1-beta)^3 H g`, and `T` the loss's third derivative.
#
# **Exercise 7.** Collect the terms: write `M2` as a function of `beta`, `h`, `H² g`
# and `T[g, g]`. (Hint: `sum k beta^k = beta/(1-beta)^2`,
# `sum k(k+1)/2 beta^k = beta/(1-beta)^3`, `sum k^2 beta^k = beta(1+beta)/(1-beta)^3`.)

# %%
def second_order_correction(beta, h, HHg, Tgg):
    # your answer here: return the vector M2
    return None


# %%
if not teaching.check("heavy-ball-second-order", second_order_correction):
    second_order_correction = teaching.solution("heavy-ball-second-order")   # only with MEMLESS_SOLUTIONS=1

# %% [markdown]
# Your formula is a gradient: `H² g + T[g, g]/2 = grad(g^T H g)/2`. So heavy-ball's
# second-order modified loss adds `h² beta(1+beta)/(2(1-beta)^4) g^T H g` — a penalty on the
# curvature along the gradient, one order after the paper's `||grad L||²`.

# %% [markdown]
# ## Where the first-order picture stops
#
# `|M2| / |M1|` is the next term relative to the first: small, the first-order picture
# (the paper's modified loss, the report's verdict) describes the run; near 1, the series
# is not converging and neither order describes it. It grows with h and with beta:

# %%
from autograd import grad

print(f"{'beta':>6} {'h':>8} {'|M1|/|F|':>10} {'|M2|/|M1|':>11}")
rows = []
for beta in (0.5, 0.9, 0.99):
    hb = memless.get_optimizer("heavy-ball", beta=beta)
    for h in (0.001, 0.01):
        terms = memless.correction_terms(hb, loss, theta0, lr=h, order=2)
        M2 = terms.pop("second-order")
        M1 = sum(terms.values())
        F = grad(loss)(theta0) / (1 - beta)                  # heavy-ball's direction in the limit
        rows.append((beta, h, np.linalg.norm(M1) / np.linalg.norm(F), np.linalg.norm(M2) / np.linalg.norm(M1)))
        print(f"{beta:>6} {h:>8} {rows[-1][2]:>10.3g} {rows[-1][3]:>11.3g}")
assert all(r[3] < 0.3 for r in rows if r[0] == 0.5)        # beta = 0.5: the next term is small
assert max(r[3] for r in rows if r[0] == 0.99) > 1.0        # beta = 0.99 at these h: it is not

# %% [markdown]
# At beta = 0.99 the next term is larger than the first at these learning rates: the
# expansion in h is outside its range there, and the first-order picture does not describe
# such a run — the report's conclusion from `|M|/|F|`, now with the next term as a witness.
# (`|M2|/|M1|` is linear in h at a fixed point, as `|M1|/|F|` is: the table shows both
# growing tenfold from h = 0.001 to 0.01.)

# %% [markdown]
# ## Where M2 stops helping
#
# The next term helps only while it is small. Run the three iterations at one learning
# rate after another, from small to large, and compare the error with `M1` alone to the
# error with `M1 + M2`. `order_study` warns when the `M1 + M2` iteration is outside its
# range — here that is what we are looking for, so the warning is caught and shown as a row.

# %%
import warnings

lrs = [0.005, 0.01, 0.02, 0.04, 0.08]
print(f"{'beta':>5} {'h':>7} {'err M1':>10} {'err M1+M2':>10} {'|M2|/|M|':>9}  M2 helps?")
table = []
for beta in (0.5, 0.8):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", memless.OrderWarning)
        study = memless.order_study(memless.get_optimizer("heavy-ball", beta=beta), loss, theta0, horizon=0.8,
                                    lrs=lrs, order=2)
    for h, e1, e2, r in zip(lrs, study.errors_corrected, study.errors_second, study.next_term_ratios):
        table.append((beta, h, e1, e2, r))
        print(f"{beta:>5} {h:>7} {e1:>10.3g} {e2:>10.3g} {r:>9.3g}  {'yes' if e2 < e1 else 'no'}")
helped = [row for row in table if row[3] < row[2]]
hurt = [row for row in table if not row[3] < row[2]]
print(f"M2 helped in {len(helped)} of {len(table)} runs, all with |M2|/|M| <= {max(r[4] for r in helped):.3g}; "
      f"it hurt in {len(hurt)}, all with |M2|/|M| >= {min(r[4] for r in hurt):.3g}")
assert all(row[3] < row[2] for row in table if row[4] < 1)    # the next term small: adding it helped
assert all(not row[3] < row[2] for row in table if row[4] > 2)   # the next term large: adding it hurt

# %% [markdown]
# Read the table by its last two columns: where `|M2|/|M|` stays below 1 the next term
# improved the iteration, where it exceeds 2 it made it worse (and at the largest rates
# the `M1 + M2` iteration diverges); the larger beta, the smaller the rate at which that
# happens. `|M2|/|M|` is a measured radius of validity of the expansion in h: the first
# order describes a run where the next term is small.
