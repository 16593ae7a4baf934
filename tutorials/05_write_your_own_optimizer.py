# %% [markdown]
# # Tutorial 5 — Write your own optimizer
#
# memless is not limited to the optimizers it ships. In this tutorial you write
# **quasi-hyperbolic momentum** (QHM, Ma & Yarats 2019),
#
#     m <- beta m + (1 - beta) g;   theta <- theta - h [(1 - nu) g + nu m],
#
# get its memory correction from the generic engine, run the conformance kit that
# every plugin should pass, and package it as a plugin that `python -m memless
# list` discovers.

# %%
import os
import sys
import tempfile

import numpy as np

import memless
import memless.testing
from memless import teaching
from memless.losses import curvy

# %% [markdown]
# ## The optimizer in momentum form (Remark 3.2)
#
# A `MomentumOptimizer` lists its memories as **channels** — each an exponential
# sum `m_l = b_l sum_k beta_l^k g_l(theta^(n-k))` — and writes the update
# direction `Phi` from them in `combine`. Heavy-ball, for comparison:
#
# ```python
# class HeavyBall(memless.MomentumOptimizer):
#     hyperparameters = (memless.decay("beta", 0.9),)
#     def channels(self):
#         return [memless.Channel("momentum", self.beta, lambda theta, grad: grad)]
#     def combine(self, m):
#         return m["momentum"]
# ```
#
# **Exercise 5.** Write `QHM` with hyperparameters `nu` (default 0.7) and `beta`
# (default 0.999): a momentum channel (an EMA: `scale=1 - self.beta`) and a
# memoryless gradient channel (`decay 0`).

# %%
class QHM(memless.MomentumOptimizer):
    # your answer here
    pass


# %%
if not teaching.check("qhm-optimizer", QHM):
    QHM = teaching.solution("qhm-optimizer")     # only with MEMLESS_SOLUTIONS=1

# %% [markdown]
# ## Its correction, with no formula written by you
#
# The engine differentiates `combine` and the channel signals with autograd. Each
# channel's term comes out separately:

# %%
theta, h = np.array([0.3, 0.5, -0.4]), 1e-3
qhm = QHM(nu=0.7, beta=0.9)
for name, term in memless.correction_terms(qhm, curvy, theta, lr=h).items():
    print(f"{name:10s} M_l = {term}")
M = memless.correction(qhm, curvy, theta, lr=h)
heavy_ball_equivalent = memless.correction(memless.get_optimizer("heavy-ball", beta=0.9), curvy, theta, lr=h)
# QHM's correction is heavy-ball's (same beta) times nu (1-beta)^2: the EMA scale (1-beta) and the weight nu
assert np.allclose(M, 0.7 * (1 - 0.9) ** 2 * heavy_ball_equivalent, rtol=1e-10)

# %% [markdown]
# ## The conformance kit
#
# `memless.testing.check_optimizer` checks a new optimizer end to end: the history
# and streaming forms agree, the engine's M matches a finite-difference Eq. (12),
# and the corrected memoryless iteration tracks it with order ≈ 2 (≈ 1 without).
# Put it in your plugin's tests.

# %%
report = memless.testing.check_optimizer(QHM(nu=0.7, beta=0.5), raise_on_failure=False)
print(report.summary())
assert report.passed

# %% [markdown]
# ## Package it as a plugin
#
# A plugin is a distribution that declares an entry point in the group
# `memless.optimizers`. In its `setup.cfg`:
#
# ```ini
# [options.entry_points]
# memless.optimizers =
#     qhm = memless_qhm:QHM
# ```
#
# `pip install .` then makes `python -m memless report qhm` work (see
# `plugins/memless-ademamix` for a complete example). Below, the installed
# metadata is written by hand into a temporary folder so you can watch memless
# discover it without installing anything.

# %%
from memless.optimizers.registry import discover

with tempfile.TemporaryDirectory() as site:
    with open(os.path.join(site, "memless_qhm.py"), "w") as fh:
        fh.write("from solutions.s05_write_your_own_optimizer import QHM\n")
    info = os.path.join(site, "memless_qhm-0.1.dist-info")
    os.makedirs(info)
    with open(os.path.join(info, "METADATA"), "w") as fh:
        fh.write("Metadata-Version: 2.1\nName: memless-qhm\nVersion: 0.1\n")
    with open(os.path.join(info, "entry_points.txt"), "w") as fh:
        fh.write("[memless.optimizers]\nqhm = memless_qhm:QHM\n")
    sys.path.insert(0, site)
    try:
        found = discover([site])
    finally:
        sys.path.remove(site)
entry = found["qhm"]
print(f"discovered {entry.name!r} from {entry.distribution} {entry.version}: {entry.description}")
assert not entry.broken and entry.distribution == "memless-qhm"
