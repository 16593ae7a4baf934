"""Lion-K (Example 1.5; Chen et al. 2023, Chen, Liu et al. 2024)."""
import autograd.numpy as anp

from ..errors import HyperparameterError
from ..core import ImplicitLoss, gradient_signal, parameter_signal, Channel, MomentumOptimizer, choice, decay, nonnegative, positive


class Lion(MomentumOptimizer):
    """Lion-K: ``c = rho1 m + (1-rho1) g;  theta <- theta - h [-grad K(-c) + lambda theta];
    m <- rho2 m + (1-rho2) g`` (optax's b1 = rho1, b2 = rho2).

    ``k`` chooses K: ``"l1-smooth"`` (default) ``K = sum sqrt(x^2 + eps)``, a smooth
    sign; ``"sign"`` exact Lion, ``grad K = sign`` (autograd differentiates sign to 0,
    so the correction is exactly 0); ``"l2"`` ``K = ||x||^2/2`` (heavy-ball when
    rho1 = rho2, lambda = 0).  Correction (MATH.md Sec. 4):
    ``M = -h rho1/(1-rho2) hess K(-g) H [grad K(-g) - lambda theta]``, which is O(eps)
    for the smooth sign: Lion's memory does not anti-regularize.

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
        nonnegative("weight_decay", 0.0, "decoupled weight decay lambda"),
        choice("k", "l1-smooth", ("l1-smooth", "sign", "l2"), "the convex function K"),
        positive("eps", 1e-8, "smoothing of |x| in K = l1-smooth", tame=0.3),
    )
    update_rule = "c = rho1 m + (1-rho1) g;  theta <- theta - h [-grad K(-c) + lambda theta];  m <- rho2 m + (1-rho2) g"
    reference = "Example 1.5"
    sharpness = "l1"

    @property
    def modified_loss(self):
        if self.k == "sign":
            return "L exactly: autograd differentiates sign to 0, so M = 0 (no anti-regularization)"
        if self.k == "l2":
            return ("M = h rho1/(1-rho2) H (grad L + lambda theta): with lambda = 0, L + h rho1/(2(1-rho2)) "
                    "||grad L||^2 (heavy-ball when rho1 = rho2)")
        return "L + O(eps): the smooth sign's Hessian is O(eps), so memory adds no anti-regularization"
    elementwise = True

    @property
    def linear(self):
        """Phi is linear in the memories only for K = ||x||^2/2."""
        return self.k == "l2"

    def _check(self):
        if self.rho2 == 0.0 and self.rho1 > 0.0:
            raise HyperparameterError(
                "lion: rho2=0 with rho1>0 reads the previous gradient without decay, which has "
                "no momentum-variable form; allowed: rho2 in (0, 1), or rho1 = rho2 = 0")

    def implicit_loss(self, loss, lr):
        """lambda = 0: l2 -> L + h rho1/(2(1-rho2)) ||grad L||^2; l1-smooth -> L as eps -> 0; sign -> L."""
        if self.weight_decay:
            return None
        if self.k == "l2":
            from .sgd import _gradient_penalty
            return _gradient_penalty(loss, lr * self.rho1 / (1.0 - self.rho2), 1.0,
                                     "L + h rho1/(2(1-rho2)) ||grad L||^2")
        if self.k == "sign":
            return ImplicitLoss(loss, lambda theta, g: 1.0 / anp.abs(g), "L (M = 0), P = 1/|grad L|")
        return ImplicitLoss(loss, lambda theta, g: 1.0 / anp.sqrt(g ** 2 + self.eps),
                            "L: the memory term is O(eps), P = D^(-1/2)", "eps -> 0")

    def grad_k(self, x):
        """grad K(x) for the chosen K."""
        if self.k == "sign":
            return anp.sign(x)
        if self.k == "l2":
            return x
        return x / anp.sqrt(x ** 2 + self.eps)

    def channels(self):
        ratio = self.rho1 / self.rho2 if self.rho2 > 0 else 0.0
        channels = [
            Channel("momentum", self.rho2, gradient_signal, -ratio * (1.0 - self.rho2),
                    "-h rho1/(1-rho2) hess K(-g) H [grad K(-g) - lambda theta]  [O(eps) for l1-smooth]"),
            Channel("gradient", 0.0, gradient_signal, -(1.0 - ratio)),
        ]
        if self.weight_decay:
            channels.append(Channel("weight-decay", 0.0, parameter_signal))
        return channels

    def combine(self, m):
        direction = -self.grad_k(m["momentum"] + m["gradient"])
        if self.weight_decay:
            direction = direction + self.weight_decay * m["weight-decay"]
        return direction
