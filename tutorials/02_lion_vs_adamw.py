# %% [markdown]
# # Tutorial 2 — Why Lion is not anti-regularized and AdamW is
#
# AdamW keeps two memories: the first moment m (an EMA of g, decay beta1) and the
# second moment v (an EMA of g², decay beta2). memless splits the correction into
# one term per memory channel, `M = M_first + M_second (+ weight decay)` (Section
# 3.2), and each term either penalizes the sharpness proxy `N = ||grad L||_{1,eps}`
# (regularizing) or rewards it (anti-regularizing).

# %%
import numpy as np
import autograd.numpy as anp
from autograd import grad

import memless
from memless import teaching
from memless.losses import curvy

theta = np.array([0.3, 0.5, -0.4])
h, eps = 1e-3, 1e-8


def strength(term, eps=eps):
    """<grad N, M_l>: > 0 means the channel pushes N = ||grad L||_{1,eps} down (regularizing)."""
    N = lambda t: anp.sum(anp.sqrt(grad(curvy)(t) ** 2 + eps))
    return float(grad(N)(theta) @ term)


# %% [markdown]
# ## AdamW's two memories pull in opposite directions

# %%
adamw = memless.get_optimizer("adamw", beta1=0.9, beta2=0.999, eps=eps, weight_decay=0.0)
terms = memless.correction_terms(adamw, curvy, theta, lr=h)
for name, term in terms.items():
    print(f"{name:14s} strength {strength(term):+.4g}")
assert strength(terms["first-moment"]) > 0, "the first moment penalizes the gradient norm"
assert strength(terms["second-moment"]) < 0, "the second moment rewards it"
assert strength(sum(terms.values())) < 0, "with beta2 > beta1 the second moment wins"

# %% [markdown]
# As eps -> 0 the weights are exactly `beta1/(1-beta1)` and `beta2/(1-beta2)`
# (Cattaneo & Shigida 2025, Section 4): 9 against 999 at the defaults.
#
# **Exercise 2.** Write `net_effect(beta1, beta2)` returning `"regularizing"` or
# `"anti-regularizing"` for AdamW's memory (eps -> 0).

# %%
def net_effect(beta1, beta2):
    # your answer here
    return None


# %%
if not teaching.check("adamw-net-effect", net_effect):
    net_effect = teaching.solution("adamw-net-effect")     # only with MEMLESS_SOLUTIONS=1

# %% [markdown]
# The engine agrees with your rule when beta1 > beta2 too:

# %%
flipped = memless.get_optimizer("adamw", beta1=0.99, beta2=0.9, eps=eps, weight_decay=0.0)
total = memless.correction(flipped, curvy, theta, lr=h)
print("beta1=0.99, beta2=0.9:", net_effect(0.99, 0.9), f"(strength {strength(total):+.4g})")
assert (strength(total) > 0) == (net_effect(0.99, 0.9) == "regularizing")

# %% [markdown]
# ## Lion: one memory, and a correction that is small where |g_i| >> sqrt(eps)
#
# Lion's step is a (smoothed) sign: `F = -grad K(-c)` with `K = sum sqrt(x² + eps)`.
# Its only memory feeds the sign, so `M = -h rho1/(1-rho2) hess K(-g) H grad K(-g)`,
# and `hess K = eps / (x² + eps)^{3/2}` is O(eps) wherever eps << g² (where some
# |g_i| is near sqrt(eps) or below, it is not small). Measure it:

# %%
sizes = []
epsilons = [1e-5, 1e-6, 1e-7, 1e-8]     # all well below g_i^2 (the smallest |g_i| is 0.04)
for e in epsilons:
    lion = memless.get_optimizer("lion", eps=e)
    sizes.append(np.linalg.norm(memless.correction(lion, curvy, theta, lr=h)))
    print(f"eps = {e:g}: |M| = {sizes[-1]:.3e}")
slope = np.polyfit(np.log(epsilons), np.log(sizes), 1)[0]
print(f"|M| ~ eps^{slope:.2f}")
assert 0.8 <= slope <= 1.2, "Lion's correction vanishes linearly with eps"

exact_sign = memless.get_optimizer("lion", k="sign")
assert np.all(memless.correction(exact_sign, curvy, theta, lr=h) == 0)
print("exact-sign Lion: M = 0 exactly (the sign has zero derivative almost everywhere)")

# %% [markdown]
# Its sign is fixed, though: with `N = ||grad L||_{1,eps}`, `grad N = H F`, so
# `<grad N, M> = h rho1/(1-rho2) sum_i eps/(g_i^2+eps)^{3/2} (H F)_i^2 >= 0`. Lion's
# memory can only regularize; it is just tiny wherever every `|g_i| >> sqrt(eps)`.
# Check the sign on the loss we use here:

# %%
lion = memless.get_optimizer("lion", eps=1e-6)
assert strength(memless.correction(lion, curvy, theta, lr=h), eps=1e-6) >= 0
print("Lion on curvy: <grad N, M> =", f"{strength(memless.correction(lion, curvy, theta, lr=h), eps=1e-6):+.3e}")

# %% [markdown]
# ## The report says the same
#
# `python -m memless report adamw --loss curvy` and `python -m memless report lion
# --loss curvy` give the verdict from each optimizer's declared structure (the signs
# above, exact where the report says they hold), and measure `<grad N, M>` along the
# optimizer's trajectory on every reference loss as evidence. In Python, on the loss
# of this tutorial:

# %%
from memless.studies.analysis import analyze

for name in ("adamw", "lion"):
    analysis = analyze(memless.get_optimizer(name), loss=curvy, theta=theta, lr=1e-3)
    print(f"{name}: {analysis.net_effect} -- {analysis.verdict}")
    print("   holds:", analysis.regime)
    assert str(analysis.net_effect) == {"adamw": "anti-regularizing", "lion": "regularizing"}[name]
    assert all(e.agrees is not False for e in analysis.evidence)     # no measurement contradicts it
