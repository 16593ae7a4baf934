"""AdEMAMix as a memless optimizer: four memory channels and Phi, nothing else."""
import autograd.numpy as anp

from memless.extend import (Channel, MomentumOptimizer, decay, ema, ema_bias_correction, flag, gradient_signal,
                            nonnegative, parameter_signal, positive, squared_gradient_signal)

__version__ = "0.1.0"


class AdEMAMix(MomentumOptimizer):
    """AdEMAMix: Adam with an extra slow gradient EMA mixed in (Pagliardini et al. 2024).

    ``theta <- theta - h [(mhat_fast + alpha m_slow) / (sqrt(vhat) + eps) + lambda theta]``
    with ``m_fast``, ``v`` bias-corrected EMAs (beta1, beta2) and ``m_slow`` an EMA
    (beta3) without bias correction.

    >>> import memless, numpy as np
    >>> opt = AdEMAMix(beta3=0.99)
    >>> sorted(memless.correction_terms(opt, lambda t: (t ** 4).sum(), np.ones(2), lr=1e-3))
    ['fast', 'second-moment', 'slow', 'weight-decay']
    """

    name = "ademamix"
    hyperparameters = (
        decay("beta1", 0.9, "fast EMA decay"),
        decay("beta2", 0.999, "second-moment decay"),
        decay("beta3", 0.9999, "slow EMA decay"),
        nonnegative("alpha", 5.0, "weight of the slow EMA"),
        positive("eps", 1e-8, "numerical stability constant", tame=0.1),
        nonnegative("weight_decay", 0.0, "decoupled weight decay lambda"),
        flag("eps_inside", False, "eps inside the square root instead of outside"),
    )
    update_rule = ("m1 <- b1 m1 + (1-b1) g; m2 <- b3 m2 + (1-b3) g; v <- b2 v + (1-b2) g^2; "
                   "theta <- theta - h [(m1hat + alpha m2)/(sqrt(vhat) + eps) + lambda theta]")
    reference = "Pagliardini, Ablin & Grangier (2024), Algorithm 1 (no schedulers)"
    sharpness = "l1"
    elementwise = True
    modified_loss = ("as eps -> 0: L + h (b1/(1-b1) + alpha b3/(1-b3) - (1+alpha) b2/(1-b2)) ||grad L||_1 / (1+alpha), "
                     "in the sign-descent geometry")

    def channels(self):
        return [
            Channel("fast", self.beta1, gradient_signal, ema_bias_correction(self.beta1),
                    "+h b1/(1-b1) H F / (|g| + eps)"),
            Channel("slow", self.beta3, gradient_signal, ema(self.beta3),
                    "+h alpha b3/(1-b3) H F / (|g| + eps)"),
            Channel("second-moment", self.beta2, squared_gradient_signal, ema_bias_correction(self.beta2),
                    "-h (1+alpha) b2/(1-b2) |g| H F / (|g| + eps)^2"),
            Channel("weight-decay", 0.0, parameter_signal),
        ]

    def combine(self, m):
        numerator = m["fast"] + self.alpha * m["slow"]
        if self.eps_inside:
            step = numerator / anp.sqrt(m["second-moment"] + self.eps)
        else:
            step = numerator / (anp.sqrt(m["second-moment"]) + self.eps)
        return step + self.weight_decay * m["weight-decay"]
