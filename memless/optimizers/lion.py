"""Lion-K (Cattaneo & Shigida 2025, Example 1.5; Chen et al. 2023; Chen, Liu et al. 2024).

K is the convex function whose gradient shapes the step; five are built in:

======================  ===============================  ====================================
``k``                    K(x)                              hess K(x), the memory term's factor
======================  ===============================  ====================================
``"l1-smooth"``          sum sqrt(x^2 + eps)               eps/(x^2 + eps)^(3/2)
``"sign"``               sum |x| (exact Lion)              0 (autograd's derivative of sign)
``"l2"``                 ||x||^2/2                          1 (heavy-ball when rho1 = rho2)
``"logcosh"``            sum log cosh(kappa x)/kappa       kappa sech^2(kappa x)  ("RLion")
``"nuclear"``            sum of ||X_j||_* over matrices    d polar(X)[.], positive semidefinite
======================  ===============================  ====================================

``"nuclear"`` acts per matrix (grad K = the polar factor U V^T): Muon's idealization
(Chen, Li & Liu 2025, "Muon optimizes under spectral norm constraints").
"""
from __future__ import annotations

import autograd.numpy as anp
import numpy as np

from ..contract.hyperparameters import choice, decay, positive, weight_decay
from ..contract.optimizer import Channel, DecoupledWeightDecay, MomentumOptimizer, gradient_signal
from ..errors import HyperparameterError
from ..numerics.autodiff import sqrt, tanh
from ..numerics.linalg import nuclear_norm, polar, polar_derivative
from .matrices import check_matrices, per_matrix

K_CHOICES = ("l1-smooth", "sign", "l2", "logcosh", "nuclear")


class LionK(MomentumOptimizer):
    """Lion-K's momenta and Phi, without weight decay."""

    #: hyperparameters (declared below; set and checked by the constructor)
    k: str

    @property
    def elementwise(self):  # type: ignore[override]  # a class attribute elsewhere, here it depends on k
        return self.k != "nuclear"

    @property
    def stationary(self):  # type: ignore[override]
        """sign and the polar factor are scale-invariant and both channels read g: F^(n) = F."""
        return self.k in ("sign", "nuclear")

    @property
    def needs_matrices(self) -> bool:
        return self.k == "nuclear"

    def check_layout(self, layout):
        if self.k == "nuclear":
            check_matrices(self.label, layout, "with k='nuclear' acts on matrices")

    @property
    def linear(self):  # type: ignore[override]
        """Phi is linear in the memories only for K = ||x||^2/2."""
        return self.k == "l2"

    def validate(self):
        if self.rho2 == 0.0 and self.rho1 > 0.0:
            raise HyperparameterError(
                "lion: rho2=0 with rho1>0 reads the previous gradient without decay, which has "
                "no momentum-variable form; allowed: rho2 in (0, 1), or rho1 = rho2 = 0")

    # -- K, its gradient and its Hessian ----------------------------------------

    def K(self, x):
        """K(x)."""
        if self.k == "sign":
            return anp.sum(anp.abs(x))
        if self.k == "l2":
            return 0.5 * anp.sum(x ** 2)
        if self.k == "logcosh":
            kx = self.kappa * x
            return anp.sum(anp.logaddexp(kx, -kx) - np.log(2.0)) / self.kappa
        if self.k == "nuclear":
            return sum(nuclear_norm(X) for X in self._matrices(x))
        return anp.sum(sqrt(x ** 2 + self.eps))

    def grad_k(self, x):
        """grad K(x) for the chosen K."""
        if self.k == "sign":
            return anp.sign(x)
        if self.k == "l2":
            return x
        if self.k == "logcosh":
            return tanh(self.kappa * x)
        if self.k == "nuclear":
            return per_matrix(self._layout(), polar, x)
        return x / sqrt(x ** 2 + self.eps)

    def hess_k_times(self, x, v):
        """hess K(x) v."""
        if self.k == "nuclear":
            return per_matrix(self._layout(), polar_derivative, x, v)
        if self.k == "sign":
            return anp.zeros_like(x) * v
        if self.k == "l2":
            return v
        if self.k == "logcosh":
            return self.kappa * (1.0 - tanh(self.kappa * x) ** 2) * v
        return self.eps / (x ** 2 + self.eps) ** 1.5 * v

    def _layout(self):
        check_matrices(self.label, self.layout, "with k='nuclear' acts on matrices")
        return self.layout

    def _matrices(self, x):
        layout = self._layout()
        parts = layout.unflatten(x)
        return [parts[name] for name in layout.matrices]

    # -- momentum form --------------------------------------------------------------

    def channels(self):
        ratio = self.rho1 / self.rho2 if self.rho2 > 0 else 0.0
        weight = self.rho1 / (1.0 - self.rho2)
        return [
            Channel("momentum", self.rho2, gradient_signal, -ratio * (1.0 - self.rho2),
                    "+h rho1/(1-rho2) hess K(-g) H F",
                    lambda h, theta, g, HF: h * weight * self.hess_k_times(-g, HF)),
            Channel("gradient", 0.0, gradient_signal, -(1.0 - ratio)),
        ]

    def combine(self, m):
        return -self.grad_k(m["momentum"] + m["gradient"])


class Lion(DecoupledWeightDecay, LionK):
    """Lion-K: ``c = rho1 m + (1-rho1) g;  theta <- theta - h [-grad K(-c) + lambda theta];
    m <- rho2 m + (1-rho2) g`` (optax's b1 = rho1, b2 = rho2).

    ``k`` chooses K: ``"l1-smooth"`` (default) ``K = sum sqrt(x^2 + eps)``, a smooth
    sign; ``"sign"`` exact Lion, ``grad K = sign`` (autograd differentiates sign to 0,
    so the correction is exactly 0); ``"l2"`` ``K = ||x||^2/2`` (heavy-ball when
    rho1 = rho2, lambda = 0); ``"logcosh"`` ``K = sum log cosh(kappa x)/kappa``, grad K =
    tanh(kappa x) (a smooth sign, as in "RLion"); ``"nuclear"`` K = the sum of the nuclear
    norms of the parameter matrices, grad K = their polar factors (Muon's idealization;
    needs a loss over named matrices).  The correction is
    ``M = h rho1/(1-rho2) hess K(-g) H F`` (Eq. 12's limit, Section 3.2): hess K is positive
    semidefinite for every convex K, so with lambda = 0 memory never anti-regularizes
    the proxy N = K(grad L); its size follows hess K: small where every ``|g_i| >> sqrt(eps)``
    (l1-smooth), ``|g_i| >> 1/kappa`` (logcosh), or where the smallest singular value of each
    gradient matrix is large (nuclear: ``|M| <= h rho1/(1-rho2) |H F| / sigma_min``).

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
        choice("k", "l1-smooth", K_CHOICES, "the convex function K"),
        positive("eps", 1e-8, "smoothing of |x| in K = l1-smooth", tame=0.3),
        positive("kappa", 1e4, "sharpness of tanh(kappa x) in K = logcosh", tame=2.0),
    )
    update_rule = ("c = rho1 m + (1-rho1) g;  theta <- theta - h [-grad K(-c) + lambda theta];  "
                   "m <- rho2 m + (1-rho2) g")
    reference = "Example 1.5"
