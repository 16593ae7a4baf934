# %% [markdown]
# # Tutorial 6 — What memory does in Muon
#
# Muon (torch.optim.Muon) orthogonalizes its momentum per matrix: the step is the polar
# factor `U V^T` of `u = (1-mu) g + mu buf` (Newton–Schulz approximates it). In the
# paper's terms it is Lion-K with K the nuclear norm, `rho1 = mu^2`, `rho2 = mu`
# (Chen, Li & Liu 2025), so its memory correction is
#
#     M = h w r d polar(G)[H F],   w = mu^2/(1-mu)
#
# Lion's sign has a zero derivative and its term vanishes (Tutorial 2); the polar factor's
# derivative is not zero, so Muon's term does not. We compare AdamW, Lion and Muon on a
# low-rank matrix factorization with a few hundred parameters.

# %%
import numpy as np
import autograd.numpy as anp

import memless
from memless import teaching
from memless.studies.analysis import analyze
from memless.optimizers.matrices import smallest_singular_values

rng = np.random.default_rng(0)
target = rng.normal(size=(12, 10))                      # full rank: the fit stays imperfect
params = {"U": 0.4 * rng.normal(size=(12, 6)), "V": 0.4 * rng.normal(size=(10, 6))}


def factorization(p):
    """||U V^T - Y||^2 / 2: quartic in (U, V), 132 parameters."""
    return 0.5 * anp.sum((anp.dot(p["U"], anp.transpose(p["V"])) - target) ** 2)


loss = memless.structured(factorization, params)     # a loss on flat theta that knows its matrices
print(loss.layout, "->", loss.start.size, "parameters")

# %% [markdown]
# ## Three optimizers, side by side
#
# Each analysis measures, along the optimizer's own path, the signed strength
# `<grad N, M_l> / |<grad N, F>|` of every memory channel, where N is the sharpness
# proxy the optimizer's K implies (`||grad L||_{1,eps}` for AdamW, `K(grad L)` for Lion,
# the nuclear norms `sum_j r_j ||G_j||_*` for Muon).

# %%
h = 1e-3
optimizers = {
    "adamw": memless.get_optimizer("adamw", weight_decay=0.0),
    "lion": memless.get_optimizer("lion"),
    "muon": memless.get_optimizer("muon", orthogonalize="polar", weight_decay=0.0),
}
results = {}
for name, opt in optimizers.items():
    a = analyze(opt, loss, lr=h, steps=100, points=4, evidence_losses=())
    results[name] = a
    channels = ", ".join(f"{c.name} {c.strength:+.3g}" for c in a.channels if c.decay)
    print(f"{name:6s} {str(a.net_effect):18s} ({a.basis}); channels: {channels}")
assert results["adamw"].net_effect == memless.studies.analysis.Effect.ANTI_REGULARIZING
assert results["lion"].net_effect == memless.studies.analysis.Effect.REGULARIZING
assert results["muon"].net_effect == memless.studies.analysis.Effect.REGULARIZING
for name in ("lion", "muon"):
    print(f"{name}: |M_momentum|/|F| = {results[name].channels[0].size:.3g}; {results[name].regime}")

# %% [markdown]
# AdamW's second moment anti-regularizes (Tutorial 2). Lion's and Muon's terms are both
# regularizing, exactly in sign: hess K is positive semidefinite for every convex K, and
# for Muon `d polar(G)` is the nuclear norm's Hessian. Neither is zero here. Lion's size
# follows `|g_i| / sqrt(eps)` (Tutorial 2: with some `|g_i|` within about 10 sqrt(eps) along
# this path, its term is a few percent of the step); Muon's follows the singular values of
# the gradient matrices, as its verdict says:

# %%
print(results["muon"].verdict)

# %% [markdown]
# ## The correction is right: order 2 with M, 1 without
#
# At tamed settings (mu = 0.5) and a short horizon, halving h divides the error of the
# corrected memoryless iteration by about 4 and of the uncorrected one by about 2.

# %%
tamed = memless.get_optimizer("muon", momentum=0.5, orthogonalize="polar", weight_decay=0.0)
study = memless.order_study(tamed, loss, None, horizon=0.2, lrs=[0.004, 0.002, 0.001])
print(f"orders: {study.order_corrected:.2f} with M, {study.order_uncorrected:.2f} without")
assert abs(study.order_corrected - 2) < 0.3 and abs(study.order_uncorrected - 1) < 0.2

# %% [markdown]
# ## When is Muon's memory term small? The 1/sigma condition
#
# `d polar(G)` divides by singular values: for each matrix,
# `|M_j| <= h w r_j |(H F)_j| / sigma_min(G_j)`. The term is small where the smallest
# singular value of every gradient matrix is large, the analogue of Lion's
# `|g_i| >> sqrt(eps)`. Check the bound along Muon's path:

# %%
from autograd import grad as derivative
from memless.numerics.autodiff import jvp

muon = optimizers["muon"].bind(loss.layout)
gradient = derivative(loss)
path = memless.trajectory(muon, loss, None, lr=h, steps=300)
w = 0.95 ** 2 / (1 - 0.95)
for theta in path[::100]:
    M = loss.layout.unflatten(memless.correction(muon, loss, theta, lr=h))
    HF = loss.layout.unflatten(jvp(gradient, theta, muon.limit_direction(theta, gradient))[1])
    sigma = smallest_singular_values(loss.layout, gradient(theta))[0]
    for (name, (rows, cols)), s in zip(loss.layout.shapes.items(), sigma):
        r = np.sqrt(max(1, rows / cols))
        bound = h * w * r * np.linalg.norm(HF[name]) / s
        print(f"{name}: sigma_min = {s:.3g}, |M| = {np.linalg.norm(M[name]):.3g} <= {bound:.3g}")
        assert np.linalg.norm(M[name]) <= bound * (1 + 1e-9)

# %% [markdown]
# **Exercise 6.** Write `muon_memory_weight(mu, nesterov)` returning w in
# `M = h w r d polar(G)[H F]`. (Without Nesterov the step reads the buffer alone.)

# %%
def muon_memory_weight(mu, nesterov):
    # your answer here
    return None


# %%
if not teaching.check("muon-memory-weight", muon_memory_weight):
    muon_memory_weight = teaching.solution("muon-memory-weight")     # only with MEMLESS_SOLUTIONS=1
