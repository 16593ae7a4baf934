"""Gradient descent, heavy-ball and Nesterov momentum (Cattaneo & Shigida 2025, Examples 1.1, 1.2)."""
from __future__ import annotations

from ..contract.hyperparameters import decay
from ..contract.optimizer import Channel, MomentumOptimizer, gradient_signal


class GD(MomentumOptimizer):
    """Plain gradient descent, ``theta <- theta - h grad L(theta)``: no memory, M = 0.

    >>> import memless, numpy as np
    >>> memless.correction(memless.get_optimizer("gd"), lambda t: (t ** 4).sum(), np.ones(2), lr=0.1)
    array([0., 0.])
    """

    name = "gd"
    update_rule = "theta <- theta - h grad L(theta)"
    reference = "Eq. (1) with F = grad L"
    elementwise = True
    linear = True

    def channels(self):
        return [Channel("gradient", 0.0, gradient_signal)]

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
    elementwise = True
    linear = True

    def channels(self):
        beta = self.beta
        return [Channel("momentum", beta, gradient_signal,
                        formula="h beta/(1-beta)^3 H grad L",
                        closed_form=lambda h, theta, g, HF: h * beta / (1 - beta) ** 2 * HF)]

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
    elementwise = True
    linear = True

    def channels(self):
        beta = self.beta
        return [
            Channel("momentum", beta, gradient_signal, scale=beta, formula="h beta^2/(1-beta)^3 H grad L",
                    closed_form=lambda h, theta, g, HF: h * beta ** 2 / (1 - beta) ** 2 * HF),
            Channel("gradient", 0.0, gradient_signal),
        ]

    def combine(self, m):
        return m["momentum"] + m["gradient"]
