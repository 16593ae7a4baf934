"""Adam, AdamW, NAdam (Cattaneo & Shigida 2025, Examples 1.3, 1.4) and RMSProp
(Cattaneo, Klusowski & Shigida 2023, Definition 3.1).

``eps_inside=True`` (default) is the papers' form ``m/sqrt(v + eps)``;
``eps_inside=False`` is PyTorch's ``m/(sqrt(v) + eps)``.  Every correction term
has the form ``h c(g) * (H F)``, F the limit direction: the channels carry that
closed form next to its text.
"""
from __future__ import annotations

from typing import Tuple

import autograd.numpy as anp

from ..contract.hyperparameters import Hyperparameter, decay, flag, positive, weight_decay
from ..contract.optimizer import (Channel, DecoupledWeightDecay, MomentumOptimizer, ema, ema_bias_correction,
                                  gradient_signal, squared_gradient_signal)
from ..numerics.autodiff import sqrt

# ----------------------------------------------------------------------------
# The shared pieces: preconditioner and moment channels
# ----------------------------------------------------------------------------


class Adaptive(MomentumOptimizer):
    """Shared by the adaptive methods: the preconditioner ``P = 1/sqrt(v + eps)`` (or
    ``1/(sqrt(v) + eps)``), the moment channels, and what their terms do.

    The first moment's term is ``+h c1 P H F``, the second's ``-h c2 g^2 D^(-3/2) H F``
    (D = g^2 + eps), F the limit direction.  With N = ||grad L||_{1,eps}, grad N = H F
    (no decay), so each component of <grad N, M> carries the weight
    ``(c1 - c2) g_i^2 + c1 eps`` times a positive factor: that decides the verdict.
    """

    #: hyperparameters (declared below; set and checked by the constructor)
    eps: float
    eps_inside: bool

    elementwise = True
    sharpness = "l1"
    #: lambda; DecoupledWeightDecay sets it on the optimizers that have it
    weight_decay = 0.0
    #: c1 and c2 in words
    first_text = "beta1/(1-beta1)"
    second_text = "beta2/(1-beta2)"

    def weights(self) -> Tuple[float, float]:
        """(c1, c2): the first and second moments' weights in M."""
        raise NotImplementedError

    def precondition(self, numerator, second_moment):
        if self.eps_inside:
            return numerator / sqrt(second_moment + self.eps)
        return numerator / (sqrt(second_moment) + self.eps)

    def preconditioner_at(self, g):
        """P(g): d Phi / d(first moment) at the limit."""
        return 1.0 / sqrt(g * g + self.eps) if self.eps_inside else 1.0 / (anp.abs(g) + self.eps)

    def _q(self, g):
        """-d Phi / d(second moment) * 2 g / m1 at the limit: g^2 D^(-3/2) (or |g|/(|g| + eps)^2)."""
        if self.eps_inside:
            squared = g * g
            D = squared + self.eps
            return squared / (D * sqrt(D))      # not D ** 1.5: a power costs ten square roots
        a = anp.abs(g) + self.eps
        return anp.abs(g) / (a * a)

    @property
    def preconditioner_text(self) -> str:
        """P in words."""
        return "D^(-1/2)" if self.eps_inside else "1/(|g|+eps)"

    def first_moment(self, beta: float, weight: float, weight_text: str) -> Channel:
        """The bias-corrected gradient EMA; its term is +h weight P H F: it penalizes ||grad L||_{1,eps}."""
        return Channel("first-moment", beta, gradient_signal, ema_bias_correction(beta),
                       f"+h {weight_text} {self.preconditioner_text} H F",
                       lambda h, theta, g, HF: (h * weight) * HF * self.preconditioner_at(g))

    def second_moment(self, beta: float, scale, text: str = "beta2/(1-beta2)") -> Channel:
        """The squared-gradient EMA; its term is -h beta/(1-beta) g^2 D^(-3/2) H F: it rewards ||grad L||_{1,eps}."""
        q_text = "g^2 D^(-3/2)" if self.eps_inside else "|g|/(|g|+eps)^2"
        weight = beta / (1.0 - beta)
        return Channel("second-moment", beta, squared_gradient_signal, scale, f"-h {text} {q_text} H F",
                       lambda h, theta, g, HF: (-h * weight) * HF * self._q(g))

def _moments(weight_decay_default=None):
    params: Tuple[Hyperparameter, ...] = (
        decay("beta1", 0.9, "first-moment decay"),
        decay("beta2", 0.999, "second-moment decay"),
        positive("eps", 1e-8, "numerical stability constant", tame=0.1),
    )
    if weight_decay_default is not None:
        params += (weight_decay(weight_decay_default),)
    return params + (flag("eps_inside", True, "eps inside the square root (paper) or outside (PyTorch)"),)


# ----------------------------------------------------------------------------
# The optimizers
# ----------------------------------------------------------------------------


class Adam(Adaptive):
    """Adam (Example 1.3 with lambda = 0): the first moment penalizes ``||grad L||_{1,eps}``
    with weight beta1/(1-beta1), the second rewards it with weight beta2/(1-beta2).

    ``m <- beta1 m + (1-beta1) g;  v <- beta2 v + (1-beta2) g^2;  theta <- theta - h mhat / sqrt(vhat + eps)``
    with bias-corrected mhat, vhat.

    >>> import memless, numpy as np
    >>> parts = memless.correction_terms(memless.get_optimizer("adam"), lambda t: (t ** 4).sum(), np.ones(2), lr=1e-3)
    >>> sorted(parts)
    ['first-moment', 'second-moment']
    """

    name = "adam"
    hyperparameters = _moments()
    update_rule = "m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;  theta <- theta - h mhat/sqrt(vhat+eps)"
    reference = "Example 1.3 (lambda = 0)"

    def weights(self):
        return self.beta1 / (1.0 - self.beta1), self.beta2 / (1.0 - self.beta2)

    def channels(self):
        return [self.first_moment(self.beta1, self.beta1 / (1.0 - self.beta1), "beta1/(1-beta1)"),
                self.second_moment(self.beta2, ema_bias_correction(self.beta2))]

    def combine(self, m):
        return self.precondition(m["first-moment"], m["second-moment"])


class AdamW(DecoupledWeightDecay, Adam):
    """AdamW: Adam with decoupled weight decay (Example 1.3).

    ``theta <- theta - h [ mhat / sqrt(vhat + eps) + lambda theta ]``; the memory terms are Adam's,
    with F including lambda theta.  With beta2 > beta1 memory anti-regularizes (as eps -> 0).

    >>> import memless, numpy as np
    >>> opt = memless.get_optimizer("adamw", beta1=0.9, beta2=0.999, weight_decay=0.01)
    >>> sorted(memless.correction_terms(opt, lambda t: (t ** 4).sum(), np.ones(2), lr=1e-3))
    ['first-moment', 'second-moment', 'weight-decay']
    """

    name = "adamw"
    hyperparameters = _moments(weight_decay_default=0.01)
    update_rule = ("m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;  "
                   "theta <- theta - h [mhat/sqrt(vhat+eps) + lambda theta]")
    reference = "Example 1.3"


class _NesterovAdam(Adaptive):
    """NAdam's moments and Phi, without weight decay."""

    first_text = "beta1^2/(1-beta1)"

    def weights(self):
        return self.beta1 ** 2 / (1.0 - self.beta1), self.beta2 / (1.0 - self.beta2)

    def channels(self):
        return [self.first_moment(self.beta1, self.beta1 ** 2 / (1.0 - self.beta1), "beta1^2/(1-beta1)"),
                self.second_moment(self.beta2, ema_bias_correction(self.beta2)),
                Channel("gradient", 0.0, gradient_signal)]

    def combine(self, m):
        numerator = self.beta1 * m["first-moment"] + (1.0 - self.beta1) * m["gradient"]
        return self.precondition(numerator, m["second-moment"])


class NAdam(DecoupledWeightDecay, _NesterovAdam):
    """NAdam with decoupled weight decay, in the paper's form (Example 1.4, Dozat 2016).

    ``theta <- theta - h [ (beta1 mhat + (1-beta1) g) / sqrt(vhat + eps) + lambda theta ]``.
    (PyTorch's NAdam adds a momentum-decay schedule; this is the schedule-free form
    the paper analyses.)  Its correction is AdamW's with beta1/(1-beta1) -> beta1^2/(1-beta1).
    """

    name = "nadam"
    hyperparameters = _moments(weight_decay_default=0.0)
    update_rule = "theta <- theta - h [(b1 mhat + (1-b1) g)/sqrt(vhat+eps) + lambda theta]"
    reference = "Example 1.4"


class RMSProp(Adaptive):
    """RMSProp without bias correction (Cattaneo et al. 2023, Definition 3.1; PyTorch's RMSprop).

    ``v <- rho v + (1-rho) g^2;  theta <- theta - h g / sqrt(v + eps)``.
    Its correction ``-h rho/(1-rho) g^2 D^(-3/2) H F`` anti-regularizes.
    """

    name = "rmsprop"
    hyperparameters = (
        decay("rho", 0.99, "second-moment decay"),
        positive("eps", 1e-8, "numerical stability constant", tame=0.1),
        flag("eps_inside", True, "eps inside the square root (paper) or outside (PyTorch)"),
    )
    update_rule = "v <- rho v + (1-rho) g^2;  theta <- theta - h g/sqrt(v+eps)"
    reference = "Cattaneo, Klusowski & Shigida 2023, Definition 3.1"
    first_text = ""
    second_text = "rho/(1-rho)"

    def weights(self):
        return 0.0, self.rho / (1.0 - self.rho)

    def channels(self):
        return [Channel("gradient", 0.0, gradient_signal),
                self.second_moment(self.rho, ema(self.rho), "rho/(1-rho)")]

    def combine(self, m):
        return self.precondition(m["gradient"], m["second-moment"])
