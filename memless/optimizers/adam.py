"""Adam, AdamW, NAdam (Examples 1.3, 1.4) and RMSProp (seed paper, Definition 3.1).

``eps_inside=True`` (default) is the papers' form ``m/sqrt(v + eps)``;
``eps_inside=False`` is PyTorch's ``m/(sqrt(v) + eps)``.
"""
import autograd.numpy as anp
from autograd import grad

from ..core import ImplicitLoss, gradient_signal, parameter_signal, squared_gradient_signal, Channel, MomentumOptimizer, decay, ema, ema_bias_correction, flag, nonnegative, positive


class _Adaptive(MomentumOptimizer):
    """Shared pieces: the preconditioner and the weight-decay channel."""

    elementwise = True
    sharpness = "l1"

    def _precondition(self, numerator, second_moment):
        if self.eps_inside:
            return numerator / anp.sqrt(second_moment + self.eps)
        return numerator / (anp.sqrt(second_moment) + self.eps)

    def _weight_decay_channels(self):
        weight_decay = getattr(self, "weight_decay", 0.0)
        return [Channel("weight-decay", 0.0, parameter_signal)] if weight_decay else []

    #: c in Ltilde = L + h c ||grad L||_{1,eps} (eps -> 0); None: no such loss
    def _l1_weight(self):
        return None

    def implicit_loss(self, loss, lr):
        """As eps -> 0 and without weight decay: Ltilde = L + h c ||grad L||_{1,eps}, P = D^(-1/2)."""
        c = self._l1_weight()
        if c is None or getattr(self, "weight_decay", 0.0) or not self.eps_inside:
            return None
        return l1_penalty(loss, lr * c, self.eps, f"L + h ({self._l1_formula}) ||grad L||_(1,eps), P = D^(-1/2)")

    def _decayed(self, direction, m):
        weight_decay = getattr(self, "weight_decay", 0.0)
        return direction + weight_decay * m["weight-decay"] if weight_decay else direction


_FIRST = ("+h beta1/(1-beta1) D^(-1/2) (grad||g||_{1,eps} + lambda H theta)  "
          "[penalizes ||grad L||_{1,eps}]")
_SECOND = "-h beta2/(1-beta2) g^2 D^(-3/2) (grad||g||_{1,eps} + lambda H theta)"


def _adam_hyperparameters(weight_decay=None):
    params = (
        decay("beta1", 0.9, "first-moment decay"),
        decay("beta2", 0.999, "second-moment decay"),
        positive("eps", 1e-8, "numerical stability constant", tame=0.1),
    )
    if weight_decay is not None:
        params += (nonnegative("weight_decay", weight_decay, "decoupled weight decay lambda"),)
    return params + (flag("eps_inside", True, "eps inside the square root (paper) or outside (PyTorch)"),)


class AdamW(_Adaptive):
    """AdamW with decoupled weight decay (Example 1.3).

    ``m <- beta1 m + (1-beta1) g;  v <- beta2 v + (1-beta2) g^2;``
    ``theta <- theta - h [ mhat / sqrt(vhat + eps) + lambda theta ]`` with bias-corrected
    mhat, vhat.  Correction (MATH.md Sec. 4): the first moment penalizes
    ``||grad L||_{1,eps}`` with weight beta1/(1-beta1), the second moment
    rewards it with weight beta2/(1-beta2): with beta2 > beta1 memory anti-regularizes.

    >>> import memless, numpy as np
    >>> opt = memless.get_optimizer("adamw", beta1=0.9, beta2=0.999, weight_decay=0.01)
    >>> parts = memless.correction_terms(opt, lambda t: (t ** 4).sum(), np.ones(2), lr=1e-3)
    >>> sorted(parts)
    ['first-moment', 'second-moment', 'weight-decay']
    """

    name = "adamw"
    hyperparameters = _adam_hyperparameters(weight_decay=0.01)
    update_rule = "m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;  theta <- theta - h [mhat/sqrt(vhat+eps) + lambda theta]"
    reference = "Example 1.3"
    modified_loss = ("as eps -> 0: L + h (beta1/(1-beta1) - beta2/(1-beta2)) ||grad L||_1 + weight-decay terms, "
                     "in the sign-descent geometry of F = grad L/|grad L|")

    _l1_formula = "beta1/(1-beta1) - beta2/(1-beta2)"

    def _l1_weight(self):
        return self.beta1 / (1.0 - self.beta1) - self.beta2 / (1.0 - self.beta2)

    def channels(self):
        return [
            Channel("first-moment", self.beta1, gradient_signal, ema_bias_correction(self.beta1), _FIRST),
            Channel("second-moment", self.beta2, squared_gradient_signal, ema_bias_correction(self.beta2), _SECOND),
        ] + self._weight_decay_channels()

    def combine(self, m):
        return self._decayed(self._precondition(m["first-moment"], m["second-moment"]), m)


class Adam(AdamW):
    """Adam: AdamW without weight decay (Example 1.3 with lambda = 0)."""

    name = "adam"
    hyperparameters = _adam_hyperparameters()
    update_rule = "m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;  theta <- theta - h mhat/sqrt(vhat+eps)"


class NAdam(_Adaptive):
    """NAdam with decoupled weight decay, in the paper's form (Example 1.4, Dozat 2016).

    ``theta <- theta - h [ (beta1 mhat + (1-beta1) g) / sqrt(vhat + eps) + lambda theta ]``.
    (PyTorch's NAdam adds a momentum-decay schedule; this is the schedule-free form
    the paper analyses.)  Correction: AdamW's with beta1/(1-beta1) -> beta1^2/(1-beta1).
    """

    name = "nadam"
    hyperparameters = _adam_hyperparameters(weight_decay=0.0)
    update_rule = "theta <- theta - h [(b1 mhat + (1-b1) g)/sqrt(vhat+eps) + lambda theta]"
    reference = "Example 1.4"
    modified_loss = ("as eps -> 0: L + h (beta1^2/(1-beta1) - beta2/(1-beta2)) ||grad L||_1 + weight-decay terms, "
                     "in the sign-descent geometry of F = grad L/|grad L|")

    _l1_formula = "beta1^2/(1-beta1) - beta2/(1-beta2)"

    def _l1_weight(self):
        return self.beta1 ** 2 / (1.0 - self.beta1) - self.beta2 / (1.0 - self.beta2)

    def channels(self):
        return [
            Channel("first-moment", self.beta1, gradient_signal, ema_bias_correction(self.beta1),
                    _FIRST.replace("beta1/(1-beta1)", "beta1^2/(1-beta1)")),
            Channel("second-moment", self.beta2, squared_gradient_signal, ema_bias_correction(self.beta2), _SECOND),
            Channel("gradient", 0.0, gradient_signal),
        ] + self._weight_decay_channels()

    def combine(self, m):
        numerator = self.beta1 * m["first-moment"] + (1.0 - self.beta1) * m["gradient"]
        return self._decayed(self._precondition(numerator, m["second-moment"]), m)


class RMSProp(_Adaptive):
    """RMSProp without bias correction (seed paper, Definition 3.1; PyTorch's RMSprop).

    ``v <- rho v + (1-rho) g^2;  theta <- theta - h g / sqrt(v + eps)``.
    Correction: ``M = -h rho/(1-rho) g^2/D^(3/2) grad||g||_{1,eps}`` (anti-regularizing).
    """

    name = "rmsprop"
    hyperparameters = (
        decay("rho", 0.99, "second-moment decay"),
        positive("eps", 1e-8, "numerical stability constant", tame=0.1),
        flag("eps_inside", True, "eps inside the square root (paper) or outside (PyTorch)"),
    )
    update_rule = "v <- rho v + (1-rho) g^2;  theta <- theta - h g/sqrt(v+eps)"
    reference = "Cattaneo et al. 2023, Definition 3.1"
    modified_loss = "as eps -> 0: L - h rho/(1-rho) ||grad L||_1, in the sign-descent geometry of F = grad L/|grad L|"

    _l1_formula = "-rho/(1-rho)"

    def _l1_weight(self):
        return -self.rho / (1.0 - self.rho)

    def channels(self):
        return [
            Channel("gradient", 0.0, gradient_signal),
            Channel("second-moment", self.rho, squared_gradient_signal, ema(self.rho),
                    "-h rho/(1-rho) g^2 D^(-3/2) grad||g||_{1,eps}"),
        ]

    def combine(self, m):
        return self._precondition(m["gradient"], m["second-moment"])


def l1_penalty(loss, weight, eps, formula):
    """Ltilde = L + weight ||grad L||_{1,eps} with P = (grad L^2 + eps)^(-1/2): the eps -> 0 modified loss."""
    gradient = grad(loss)

    def modified(theta):
        return loss(theta) + weight * anp.sum(anp.sqrt(gradient(theta) ** 2 + eps))

    return ImplicitLoss(modified, lambda theta, g: 1.0 / anp.sqrt(g ** 2 + eps), formula, "eps -> 0")
