"""Muon: momentum orthogonalized per matrix (torch.optim.Muon; Jordan et al. 2024).

In the paper's terms (Cattaneo & Shigida 2025, Example 1.5) Muon is Lion-K with K the
nuclear norm, grad K(X) = polar(X) = U V^T (Chen, Li & Liu 2025): its Nesterov step
``u = (1-mu) g + mu buf`` is Lion's ``c = rho1 m + (1-rho1) g`` with rho1 = mu^2 and
rho2 = mu.  Unlike Lion's sign, the polar factor has a non-zero derivative, so Muon's
memory term does not vanish.
"""
from __future__ import annotations

import math
from typing import cast

from ..contract.hyperparameters import choice, coefficients, decay, flag, integer, positive, weight_decay
from ..contract.optimizer import Channel, DecoupledWeightDecay, MomentumOptimizer, gradient_signal
from ..numerics.autodiff import jvp
from ..numerics.linalg import NS_COEFFICIENTS, NS_EPS, NS_STEPS, newton_schulz, polar, polar_derivative
from ..parameters import Layout
from .matrices import check_matrices, named

ORTHOGONALIZATIONS = ("newton-schulz", "polar")
LR_ADJUSTMENTS = ("original", "match_rms_adamw", "none")


def lr_adjustment(shape, rule: str) -> float:
    """torch.optim.Muon's ``_adjust_lr`` factor for a matrix of ``shape`` (A, B): "original"
    sqrt(max(1, A/B)) (Keller Jordan's), "match_rms_adamw" 0.2 sqrt(max(A, B)) (Moonshot's)."""
    rows, cols = shape[:2]
    if rule == "original":
        return math.sqrt(max(1.0, rows / cols))
    if rule == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))
    return 1.0


class Orthogonalized(MomentumOptimizer):
    """Muon's momenta and Phi, without weight decay."""

    #: hyperparameters (declared below; set and checked by the constructor)
    momentum: float
    nesterov: bool

    #: u^(n) = (1 - mu^(n+2)) g at a constant history, and orth(c X) = orth(X) for c > 0 (the quintic
    #: normalizes by ||X||_F first), so F^(n)(theta) = F(theta): no finite-n residuals
    stationary = True

    @property
    def needs_matrices(self) -> bool:
        return True

    def check_layout(self, layout):
        check_matrices(self.label, layout, "acts on matrices")

    # -- the pieces ------------------------------------------------------------

    def orth(self, X):
        """The orthogonalization of one matrix."""
        if self.orthogonalize == "polar":
            return polar(X)
        return newton_schulz(X, self.ns_coefficients, self.ns_steps, self.eps)

    def orth_derivative(self, X, V):
        """d orth(X)[V]: the closed form for the polar factor, a forward-mode JVP of the quintic."""
        if self.orthogonalize == "polar":
            return polar_derivative(X, V)
        return jvp(self.orth, X, V)[1]

    def matrix_layout(self) -> Layout:
        """The layout of the matrices it acts on (the one-line error of check_layout where there is none)."""
        self.check_layout(self.layout)
        return cast(Layout, self.layout)

    def adjustments(self):
        """r for each matrix, by name."""
        return {name: lr_adjustment(shape, self.adjust_lr_fn) for name, shape in self.matrix_layout().shapes.items()}

    @property
    def memory_weight(self) -> float:
        """w in M = h w r d polar(G)[H F]: mu^2/(1-mu) with nesterov, mu/(1-mu) without."""
        mu = self.momentum
        return (mu * mu if self.nesterov else mu) / (1.0 - mu)

    def channels(self):
        mu = self.momentum
        weight = self.memory_weight

        def closed(h, theta, g, HF):
            r = self.adjustments()
            return h * weight * self.matrix_layout().map(
                lambda name, G, V: r[name] * named(name, self.orth_derivative, G, V), g, HF)

        formula = f"+h w r d {'polar' if self.orthogonalize == 'polar' else 'NS'}(G)[H F], w = " + (
            "mu^2/(1-mu)" if self.nesterov else "mu/(1-mu)")
        if not self.nesterov:
            return [Channel("momentum", mu, gradient_signal, 1.0 - mu, formula, closed)]
        return [Channel("momentum", mu, gradient_signal, mu * (1.0 - mu), formula, closed),
                Channel("gradient", 0.0, gradient_signal, 1.0 - mu)]

    def combine(self, m):
        u = m["momentum"] + m["gradient"] if self.nesterov else m["momentum"]
        r = self.adjustments()
        return self.matrix_layout().map(lambda name, X: r[name] * named(name, self.orth, X), u)


class Muon(DecoupledWeightDecay, Orthogonalized):
    """Muon, as torch.optim.Muon runs it, for losses over named 2-D matrices::

        buf <- mu buf + (1-mu) g                       (buf starts at 0, no bias correction)
        u   <- (1-mu) g + mu buf    (nesterov; else u = buf)
        theta <- theta (1 - h lambda) - h r orth(u)    r = adjust_lr_fn(shape), per matrix

    ``orthogonalize="newton-schulz"`` (default) is torch's quintic (``ns_coefficients``,
    ``ns_steps``, normalized by max(||u||_F, eps)), in float64 here; ``"polar"`` is the exact
    polar factor U V^T that the theory idealizes.  Hyperparameter names and defaults are
    torch.optim.Muon's (``adjust_lr_fn``: "original" is torch's None; "none" means r = 1).
    Every parameter must be a 2-D matrix, as in torch.optim.Muon: vectors (biases, gains) go
    to AdamW in common practice, and memless raises a one-line error naming them.

    Momentum form (Remark 3.2): channels "momentum" (decay mu, b = mu(1-mu); without
    nesterov b = 1-mu) and "gradient" (no memory, b = 1-mu), Phi = r orth(m_momentum +
    m_gradient) + lambda theta.  Limit correction (Section 3.2), exact for "polar"::

        M = h w r d polar(G)[H F],   w = mu^2/(1-mu) (nesterov) or mu/(1-mu)

    -- Lion-K's ``h rho1/(1-rho2) hess K(-g) H F`` with K the nuclear norm.  d polar(G) is
    positive semidefinite, so with lambda = 0 memory penalizes N = sum_j r_j ||G_j||_*
    (regularizing); it grows like 1/sigma_min(G): |M| <= h w r |H F| / sigma_min(G).

    >>> import memless
    >>> M = memless.correction(memless.get_optimizer("muon", orthogonalize="polar", weight_decay=0.0),
    ...                        "factorization", None, lr=1e-3)
    >>> M.shape
    (33,)
    """

    name = "muon"
    hyperparameters = (
        decay("momentum", 0.95, "momentum factor mu"),
        flag("nesterov", True, "Nesterov form u = (1-mu) g + mu buf"),
        weight_decay(0.1),
        coefficients("ns_coefficients", NS_COEFFICIENTS, 3, "(a, b, c) of the Newton-Schulz quintic"),
        integer("ns_steps", NS_STEPS, 1, 99, "Newton-Schulz iterations"),
        positive("eps", NS_EPS, "floor of ||u||_F in the Newton-Schulz normalization"),
        choice("adjust_lr_fn", "original", LR_ADJUSTMENTS, "per-matrix lr factor r (torch's adjust_lr_fn)"),
        choice("orthogonalize", "newton-schulz", ORTHOGONALIZATIONS, "the literal quintic, or the exact polar factor"),
    )
    update_rule = ("buf <- mu buf + (1-mu) g;  u = (1-mu) g + mu buf;  "
                   "theta <- theta (1 - h lambda) - h r orth(u)")
    reference = "Example 1.5 with K = ||.||_* (Chen, Li & Liu 2025); torch.optim.Muon"


__all__ = ["Muon", "lr_adjustment"]
