"""Lion-K (Cattaneo & Shigida 2025, Example 1.5; Chen et al. 2023; Chen, Liu et al. 2024)."""
from __future__ import annotations

import autograd.numpy as anp

import numpy as np

from ..core import Channel, DecoupledWeightDecay, Effect, ImplicitLoss, MomentumOptimizer, Structure, gradient_signal
from ..errors import HyperparameterError
from ..hyperparameters import choice, decay, positive, weight_decay
from .sgd import gradient_penalty, gradient_penalty_structure


class _LionK(MomentumOptimizer):
    """Lion-K's momenta and Phi, without weight decay."""

    elementwise = True

    @property
    def sharpness(self):
        """The proxy K implies: ||grad L||^2 for K = ||x||^2/2, ||grad L||_{1,eps} for the sign-like K."""
        return "l2" if self.k == "l2" else "l1"

    @property
    def linear(self):
        """Phi is linear in the memories only for K = ||x||^2/2."""
        return self.k == "l2"

    def validate(self):
        if self.rho2 == 0.0 and self.rho1 > 0.0:
            raise HyperparameterError(
                "lion: rho2=0 with rho1>0 reads the previous gradient without decay, which has "
                "no momentum-variable form; allowed: rho2 in (0, 1), or rho1 = rho2 = 0")

    def grad_k(self, x):
        """grad K(x) for the chosen K."""
        if self.k == "sign":
            return anp.sign(x)
        if self.k == "l2":
            return x
        return x / anp.sqrt(x ** 2 + self.eps)

    def hess_k(self, x):
        """The diagonal of hess K(x)."""
        if self.k == "sign":
            return anp.zeros_like(x)
        if self.k == "l2":
            return anp.ones_like(x)
        return self.eps / (x ** 2 + self.eps) ** 1.5

    def channels(self):
        ratio = self.rho1 / self.rho2 if self.rho2 > 0 else 0.0
        weight = self.rho1 / (1.0 - self.rho2)
        return [
            Channel("momentum", self.rho2, gradient_signal, -ratio * (1.0 - self.rho2),
                    "+h rho1/(1-rho2) hess K(-g) H F",
                    lambda h, theta, g, HF: h * weight * self.hess_k(-g) * HF),
            Channel("gradient", 0.0, gradient_signal, -(1.0 - ratio)),
        ]

    def combine(self, m):
        return -self.grad_k(m["momentum"] + m["gradient"])


class Lion(DecoupledWeightDecay, _LionK):
    """Lion-K: ``c = rho1 m + (1-rho1) g;  theta <- theta - h [-grad K(-c) + lambda theta];
    m <- rho2 m + (1-rho2) g`` (optax's b1 = rho1, b2 = rho2).

    ``k`` chooses K: ``"l1-smooth"`` (default) ``K = sum sqrt(x^2 + eps)``, a smooth
    sign; ``"sign"`` exact Lion, ``grad K = sign`` (autograd differentiates sign to 0,
    so the correction is exactly 0); ``"l2"`` ``K = ||x||^2/2`` (heavy-ball when
    rho1 = rho2, lambda = 0).  The correction is ``M = h rho1/(1-rho2) hess K(-g) H F``:
    for the smooth sign ``hess K(-g) = eps/(g^2 + eps)^(3/2)``, small where every
    ``|g_i| >> sqrt(eps)``, so Lion's memory does not anti-regularize.

    >>> import memless, numpy as np
    >>> M = memless.correction(memless.get_optimizer("lion", k="sign"),
    ...                        lambda t: (t ** 4).sum(), np.ones(2), lr=1e-3)
    >>> bool(np.all(M == 0))
    True
    """

    name = "lion"
    hyperparameters = (
        decay("rho1", 0.9, "interpolation between momentum and gradient (optax b1)"),
        decay("rho2", 0.99, "momentum decay (optax b2)"),
        weight_decay(0.0),
        choice("k", "l1-smooth", ("l1-smooth", "sign", "l2"), "the convex function K"),
        positive("eps", 1e-8, "smoothing of |x| in K = l1-smooth", tame=0.3),
    )
    update_rule = ("c = rho1 m + (1-rho1) g;  theta <- theta - h [-grad K(-c) + lambda theta];  "
                   "m <- rho2 m + (1-rho2) g")
    reference = "Example 1.5"

    @property
    def modified_loss(self):
        if self.k == "sign":
            return "L exactly: autograd differentiates sign to 0, so M = 0"
        if self.k == "l2":
            return "L + h rho1/(2(1-rho2)) ||grad L||^2 (lambda = 0; heavy-ball's form when rho1 = rho2)"
        return ("L, up to a term of size h rho1/(1-rho2) eps/|g_i|^3 |(H F)_i|: small where every "
                "|g_i| >> sqrt(eps), P = D^(-1/2)")

    def structure(self, gradients):
        """The sign of <grad N, M> with N the proxy K implies (lambda = 0; with decay: measured)."""
        weight = self.rho1 / (1.0 - self.rho2)
        if self.rho1 == 0.0:
            return Structure(Effect.NONE, "exact", "rho1 = 0: the step reads the current gradient only",
                             "L", {"momentum": 0})
        if self.k == "sign":
            return Structure(Effect.NONE, "exact", "grad K = sign has zero derivative, so M = 0", self.modified_loss,
                             {"momentum": 0})
        if self.weight_decay:
            return None
        if self.k == "l2":
            return gradient_penalty_structure(weight, "rho1/(1-rho2)", self.modified_loss)
        g = np.abs(np.asarray(gradients, dtype=float))
        smallest = float(np.min(g)) / np.sqrt(self.eps) if g.size else float("nan")
        size = ("small" if smallest >= 10 else "not small") + \
            f" here: min |g_i|/sqrt(eps) = {smallest:.3g} along the path (small where every |g_i| >> sqrt(eps))"
        return Structure(
            Effect.REGULARIZING, "exact in sign, on every loss",
            f"M = h rho1/(1-rho2) hess K(-g) H F with hess K(-g)_i = eps/(g_i^2 + eps)^(3/2) > 0 and grad N = H F, "
            f"so <grad N, M> = h {weight:.4g} sum_i eps/(g_i^2+eps)^(3/2) (H F)_i^2 >= 0; its size is {size}",
            self.modified_loss, {"momentum": 1})

    def implicit_loss(self, loss, lr):
        """lambda = 0: l2 -> L + h rho1/(2(1-rho2)) ||grad L||^2; l1-smooth -> L as eps -> 0; sign -> L."""
        if self.weight_decay:
            return None
        if self.k == "l2":
            return gradient_penalty(loss, lr * self.rho1 / (1.0 - self.rho2), 1.0, self.modified_loss)
        if self.k == "sign":
            return ImplicitLoss(loss, lambda theta, g: 1.0 / anp.abs(g), self.modified_loss)
        return ImplicitLoss(loss, lambda theta, g: 1.0 / anp.sqrt(g ** 2 + self.eps), self.modified_loss,
                            "eps -> 0, |g_i| >> sqrt(eps)")
