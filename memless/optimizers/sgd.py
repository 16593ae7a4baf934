"""Gradient descent, heavy-ball and Nesterov momentum (Cattaneo & Shigida 2025, Examples 1.1, 1.2)."""
from __future__ import annotations

import autograd.numpy as anp
from autograd import grad

from ..contract.hyperparameters import decay
from ..contract.optimizer import Channel, Effect, ImplicitLoss, MomentumOptimizer, Structure, gradient_signal


class GD(MomentumOptimizer):
    """Plain gradient descent, ``theta <- theta - h grad L(theta)``: no memory, M = 0.

    >>> import memless, numpy as np
    >>> memless.correction(memless.get_optimizer("gd"), lambda t: (t ** 4).sum(), np.ones(2), lr=0.1)
    array([0., 0.])
    """

    name = "gd"
    update_rule = "theta <- theta - h grad L(theta)"
    reference = "Eq. (1) with F = grad L"
    modified_loss = "L"
    elementwise = True
    linear = True

    def channels(self):
        return [Channel("gradient", 0.0, gradient_signal)]

    def implicit_loss(self, loss, lr):
        return ImplicitLoss(loss, lambda theta, grad: 1.0, self.modified_loss)

    def structure(self, gradients):
        return Structure(Effect.NONE, "exact", "no memory: M = 0", self.modified_loss)

    def combine(self, m):
        return m["gradient"]


class HeavyBall(MomentumOptimizer):
    """Heavy-ball momentum, PyTorch's SGD(momentum=beta) (Example 1.1).

    ``m <- beta m + grad L(theta);  theta <- theta - h m``.  Its correction (Section 3.2)
    is ``M = h beta/(1-beta)^3 H grad L``: heavy-ball is GD with step h/(1-beta) on
    ``L + h beta/(2(1-beta)^2) ||grad L||^2`` -- its memory regularizes.

    >>> import memless, numpy as np
    >>> M = memless.correction(memless.get_optimizer("heavy-ball", beta=0.9),
    ...                        lambda t: (t ** 4).sum() / 4, np.ones(2), lr=0.01)
    >>> np.allclose(M, 0.01 * 0.9 / 0.1 ** 3 * 3.0)     # H g = 3 t^2 * t^3 = 3 at t = 1
    True
    """

    #: hyperparameters (declared below; set and checked by the constructor)
    beta: float

    name = "heavy-ball"
    hyperparameters = (decay("beta", 0.9, "momentum decay"),)
    update_rule = "m <- beta m + grad L;  theta <- theta - h m"
    reference = "Example 1.1"
    modified_loss = "L + h beta/(2(1-beta)^2) ||grad L||^2, descended with step h/(1-beta)"
    elementwise = True
    linear = True

    def channels(self):
        beta = self.beta
        return [Channel("momentum", beta, gradient_signal,
                        formula="h beta/(1-beta)^3 H grad L",
                        closed_form=lambda h, theta, g, HF: h * beta / (1 - beta) ** 2 * HF)]

    def implicit_loss(self, loss, lr):
        return gradient_penalty(loss, lr * self.beta / (1.0 - self.beta) ** 2, 1.0 / (1.0 - self.beta),
                                self.modified_loss)

    def structure(self, gradients):
        return gradient_penalty_structure(self.beta / (1.0 - self.beta) ** 3, "beta/(1-beta)^3",
                                          self.modified_loss)

    def combine(self, m):
        return m["momentum"]


class Nesterov(MomentumOptimizer):
    """Nesterov momentum in PyTorch's form, SGD(momentum=beta, nesterov=True) (Example 1.2).

    ``m <- beta m + grad L(theta);  theta <- theta - h (grad L(theta) + beta m)``.
    Its correction is ``M = h beta^2/(1-beta)^3 H grad L`` (regularizing).
    """

    name = "nesterov"
    hyperparameters = (decay("beta", 0.9, "momentum decay"),)
    update_rule = "m <- beta m + grad L;  theta <- theta - h (grad L + beta m)"
    reference = "Example 1.2"
    modified_loss = "L + h beta^2/(2(1-beta)^2) ||grad L||^2, descended with step h/(1-beta)"
    elementwise = True
    linear = True

    def channels(self):
        beta = self.beta
        return [
            Channel("momentum", beta, gradient_signal, scale=beta, formula="h beta^2/(1-beta)^3 H grad L",
                    closed_form=lambda h, theta, g, HF: h * beta ** 2 / (1 - beta) ** 2 * HF),
            Channel("gradient", 0.0, gradient_signal),
        ]

    def implicit_loss(self, loss, lr):
        return gradient_penalty(loss, lr * self.beta ** 2 / (1.0 - self.beta) ** 2, 1.0 / (1.0 - self.beta),
                                self.modified_loss)

    def structure(self, gradients):
        return gradient_penalty_structure(self.beta ** 2 / (1.0 - self.beta) ** 3, "beta^2/(1-beta)^3",
                                          self.modified_loss)

    def combine(self, m):
        return m["momentum"] + m["gradient"]


def gradient_penalty(loss, weight: float, step: float, formula: str) -> ImplicitLoss:
    """Ltilde = L + weight/2 ||grad L||^2 with the scalar preconditioner ``step``."""
    gradient = grad(loss)

    def modified(theta):
        return loss(theta) + 0.5 * weight * anp.sum(gradient(theta) ** 2)

    return ImplicitLoss(modified, lambda theta, g: step, formula)


def gradient_penalty_structure(c: float, c_text: str, modified_loss: str, channel: str = "momentum") -> Structure:
    """M = h c H grad L: <grad ||grad L||^2, M> = 2 h c |H grad L|^2, of the sign of c on every loss."""
    if c == 0:
        return Structure(Effect.NONE, "exact", f"{c_text} = 0: no memory", "L", {channel: 0})
    effect = Effect.REGULARIZING if c > 0 else Effect.ANTI_REGULARIZING
    return Structure(effect, "exact, on every loss",
                     f"M = h c H grad L with c = {c_text} = {c:.4g}, so <grad N, M> = 2 h c |H grad L|^2 "
                     f"{'>=' if c > 0 else '<='} 0", modified_loss, {channel: 1 if c > 0 else -1})
