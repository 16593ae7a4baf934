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
import numpy as np
from autograd import grad

from ..contract.hyperparameters import decay, flag, positive, weight_decay
from ..contract.optimizer import (
    Channel,
    DecoupledWeightDecay,
    Effect,
    ImplicitLoss,
    MomentumOptimizer,
    Structure,
    ema,
    ema_bias_correction,
    gradient_signal,
    squared_gradient_signal,
)
from ..numerics.autodiff import sqrt

# ----------------------------------------------------------------------------
# The shared pieces: preconditioner, moment channels, the eps -> 0 implicit loss
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

    def l1_weight(self) -> float:
        """c1 - c2: the weight of ||grad L||_1 in the eps -> 0 modified loss."""
        c1, c2 = self.weights()
        return c1 - c2

    @property
    def l1_formula(self) -> str:
        return f"{self.first_text} - {self.second_text}" if self.first_text else f"-{self.second_text}"

    def precondition(self, numerator, second_moment):
        if self.eps_inside:
            return numerator / sqrt(second_moment + self.eps)
        return numerator / (sqrt(second_moment) + self.eps)

    def _p(self, g):
        """P(g): d Phi / d(first moment) at the limit."""
        return 1.0 / sqrt(g ** 2 + self.eps) if self.eps_inside else 1.0 / (anp.abs(g) + self.eps)

    def _q(self, g):
        """-d Phi / d(second moment) * 2 g / m1 at the limit: g^2 D^(-3/2) (or |g|/(|g| + eps)^2)."""
        if self.eps_inside:
            return g ** 2 / (g ** 2 + self.eps) ** 1.5
        return anp.abs(g) / (anp.abs(g) + self.eps) ** 2

    @property
    def _p_text(self):
        return "D^(-1/2)" if self.eps_inside else "1/(|g|+eps)"

    def first_moment(self, beta: float, weight: float, weight_text: str) -> Channel:
        """The bias-corrected gradient EMA; its term is +h weight P H F: it penalizes ||grad L||_{1,eps}."""
        return Channel("first-moment", beta, gradient_signal, ema_bias_correction(beta),
                       f"+h {weight_text} {self._p_text} H F",
                       lambda h, theta, g, HF: h * weight * self._p(g) * HF)

    def second_moment(self, beta: float, scale, text: str = "beta2/(1-beta2)") -> Channel:
        """The squared-gradient EMA; its term is -h beta/(1-beta) g^2 D^(-3/2) H F: it rewards ||grad L||_{1,eps}."""
        q_text = "g^2 D^(-3/2)" if self.eps_inside else "|g|/(|g|+eps)^2"
        weight = beta / (1.0 - beta)
        return Channel("second-moment", beta, squared_gradient_signal, scale, f"-h {text} {q_text} H F",
                       lambda h, theta, g, HF: -h * weight * self._q(g) * HF)

    # -- the sharpness proxy and the modified losses, per regime --------------

    def sharpness_proxy(self, gradient, loss=None):
        """N = ||grad L||_{1,eps}, plus lambda (grad L . theta - L) with decay: the quantity the
        eps -> 0 modified loss penalizes."""
        eps, decay = self.eps, self.weight_decay
        if not decay:
            return lambda t: anp.sum(anp.sqrt(gradient(t) ** 2 + eps))
        return lambda t: (anp.sum(anp.sqrt(gradient(t) ** 2 + eps))
                          + decay * (anp.dot(gradient(t), t) - loss(t)))

    @property
    def sharpness_formula(self):
        decay = " + lambda (grad L . theta - L)" if self.weight_decay else ""
        return "||grad L||_{1,eps}" + decay

    @property
    def _scale_text(self):
        return "sqrt(eps)" if self.eps_inside else "eps"

    def regime(self, gradients) -> str:
        """"large" (every |g_i| >= 10 sqrt(eps); eps outside the root: 10 eps), "small" (every
        |g_i| <= sqrt(eps)/10, eps inside the root), or "between"."""
        g = np.abs(np.asarray(gradients, dtype=float))
        scale = np.sqrt(self.eps) if self.eps_inside else self.eps
        if g.size and np.min(g) >= 10 * scale:
            return "large"
        if g.size and self.eps_inside and np.max(g) <= scale / 10:
            return "small"
        return "between"

    def _decay_text(self):
        return " + lambda (grad L . theta - L)" if self.weight_decay else ""

    def _large_loss_text(self):
        decay = f"[||grad L||_1{self._decay_text()}]" if self.weight_decay else "||grad L||_1"
        step = ", plus the decay step lambda theta" if self.weight_decay else ""
        return f"L + h ({self.l1_formula}) {decay}, preconditioner P = {self._p_text}{step}"

    def _small_loss_text(self):
        step = ", plus the decay step lambda theta" if self.weight_decay else ""
        return (f"L + h {self.first_text or '0'} [||grad L||^2/(2 sqrt(eps)){self._decay_text()}], "
                f"preconditioner P = eps^(-1/2){step}")

    @property
    def modified_loss(self):
        return f"as eps -> 0 (every |g_i| >> {self._scale_text}): {self._large_loss_text()}"

    def implicit_loss(self, loss, lr):
        """The eps -> 0 form (Section 4): F + M = P grad Ltilde + lambda theta,
        Ltilde = L + h (c1 - c2) [||grad L||_{1,eps} + lambda (grad L . theta - L)]."""
        return _implicit(loss, lr * self.l1_weight(), self.weight_decay, self.eps, self._p, self.modified_loss,
                         f"eps -> 0 (every |g_i| >> {self._scale_text})", l1=True)

    def implicit_loss_at(self, loss, lr, gradient):
        """Where every |g_i| << sqrt(eps) (eps inside the root): F + M = eps^(-1/2) grad Ltilde + lambda theta,
        Ltilde = L + h c1 [||grad L||^2/(2 sqrt(eps)) + lambda (grad L . theta - L)]."""
        if self.regime(gradient) != "small":
            return self.implicit_loss(loss, lr)
        c1, _ = self.weights()
        eps = self.eps
        return _implicit(loss, lr * c1, self.weight_decay, eps, lambda g: 1.0 / np.sqrt(eps),
                         "every |g_i| << sqrt(eps): " + self._small_loss_text(), "every |g_i| << sqrt(eps)", l1=False)

    def structure(self, gradients):
        c1, c2 = self.weights()
        g = np.abs(np.asarray(gradients, dtype=float))
        regime = self.regime(g)
        modified = {"large": self._large_loss_text(), "small": self._small_loss_text(),
                    "between": "between the regimes |g_i| >> sqrt(eps) and |g_i| << sqrt(eps): neither closed form "
                               "applies"}[regime]
        signs = {"first-moment": 1 if c1 > 0 else 0, "second-moment": -1 if c2 > 0 else 0}
        weights = (f"c1 = {self.first_text} = {c1:.4g}" if self.first_text else "c1 = 0") + \
            f", c2 = {self.second_text} = {c2:.4g}"
        if self.weight_decay or not self.eps_inside:
            if regime == "small" and c1 > 0:
                scale = np.sqrt(self.eps)
                return Structure(Effect.REGULARIZING, f"every |g_i| << sqrt(eps) (here max |g_i|/sqrt(eps) = "
                                                      f"{np.max(g) / scale:.3g})",
                                 f"M = h c1 eps^(-1/2) H F (1 + O(g^2/eps)) with {weights}: the second moment's term is "
                                 "smaller by g^2/eps, and <grad N, M> = h c1 eps^(-1/2) |H F|^2 (1 + O(g^2/eps)) >= 0",
                                 modified, {"first-moment": 1, "second-moment": -1 if c2 > 0 else 0})
            if regime != "large" or c1 == c2:
                return None          # no exact statement there: the measurement decides
            scale = np.sqrt(self.eps) if self.eps_inside else self.eps
            effect = Effect.REGULARIZING if c1 > c2 else Effect.ANTI_REGULARIZING
            return Structure(effect, f"as eps -> 0: every |g_i| >> {self._scale_text} (here min |g_i|/"
                                     f"{self._scale_text} = {np.min(g) / scale:.3g})",
                             f"M = h (c1 - c2) P grad N + O(eps) with {weights}", modified, signs)
        scale = np.sqrt(self.eps)
        if c1 == 0 and c2 == 0:
            return Structure(Effect.NONE, "exact", "no memory", "L", signs)
        reason = f"each component of <grad N, M> carries the weight (c1 - c2) g_i^2 + c1 eps times a positive " \
                 f"factor, {weights}"
        if c1 >= c2:
            return Structure(Effect.REGULARIZING, "exact, on every loss", reason + ": positive for every g",
                             modified, signs)
        tau = float(np.sqrt(c1 * self.eps / (c2 - c1)))
        where = f"tau = sqrt(c1 eps/(c2 - c1)) = {tau:.3g} = {tau / scale:.3g} sqrt(eps)" if c1 else "0"
        if np.min(g) > tau:
            return Structure(Effect.ANTI_REGULARIZING,
                             f"exact where every |g_i| > {where}; here min |g_i| = {np.min(g):.3g} along the path",
                             reason, modified, signs)
        if np.max(g) < tau:
            return Structure(Effect.REGULARIZING,
                             f"exact where every |g_i| < {where}; here max |g_i| = {np.max(g):.3g} along the path",
                             reason, modified, signs)
        return Structure(Effect.DEPENDS, f"components with |g_i| > {where} anti-regularize, the others "
                                         "regularize: the measured sum decides on this path", reason, modified, signs)


def _implicit(loss, weight, decay, eps, preconditioner, formula, regime, l1):
    """Ltilde = L + weight [penalty + decay (grad L . theta - L)] with P = preconditioner(g),
    penalty = ||grad L||_{1,eps} (l1) or ||grad L||^2/(2 sqrt(eps))."""
    gradient = grad(loss)

    def modified(theta):
        g = gradient(theta)
        penalty = anp.sum(anp.sqrt(g ** 2 + eps)) if l1 else anp.sum(g ** 2) / (2.0 * anp.sqrt(eps))
        if decay:
            penalty = penalty + decay * (anp.dot(g, theta) - loss(theta))
        return loss(theta) + weight * penalty

    return ImplicitLoss(modified, lambda theta, g: preconditioner(g), formula, regime, decay)


def l1_penalty(loss, weight: float, eps: float, formula: str) -> ImplicitLoss:
    """Ltilde = L + weight ||grad L||_{1,eps} with P = (grad L^2 + eps)^(-1/2): the eps -> 0 modified loss."""
    return _implicit(loss, weight, 0.0, eps, lambda g: 1.0 / anp.sqrt(g ** 2 + eps), formula, "eps -> 0", l1=True)


def _moments(weight_decay_default=None):
    params = (
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
