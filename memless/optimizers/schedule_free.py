"""Schedule-Free SGD (Defazio et al. 2024, facebookresearch/schedule_free): memory that does not decay."""
from __future__ import annotations

from typing import Any, Dict

from ..contract.hyperparameters import decay
from ..contract.optimizer import MemoryOptimizer


class ScheduleFreeSGD(MemoryOptimizer):
    """Schedule-Free SGD at a constant learning rate (``SGDScheduleFree`` with
    ``warmup_steps=0``, no weight decay)::

        g = grad L(y);  z <- z - h g;  x <- (1 - c) x + c z,  c = 1/(t+1);  y <- (1 - beta) z + beta x

    The gradient is taken at y, so y is the iterate theta^(n); x is the uniform average of
    the z's.  In the paper's form (Eq. 1), for n >= 1,

        F^(n) = (1 - beta) g(theta^(n)) + beta/(n(n+1)) sum_{r=1..n} r g(theta^(r)),

    so the gradient at a k-step-old iterate weighs beta (n-k)/(n(n+1)): it does not decay
    with k (it shrinks with n instead), Assumption 3.1 fails, and Eq. (12)'s correction has
    no first-order guarantee.  The report says so instead of printing a verdict.

    >>> import memless
    >>> from memless.engine.corrections import memory_profile
    >>> memory_profile(memless.get_optimizer("schedule-free-sgd"), "curvy").decays
    False
    """

    name = "schedule-free-sgd"
    hyperparameters = (decay("beta", 0.9, "interpolation y = (1-beta) z + beta x", tame=0.5),)
    update_rule = "z <- z - h g(y);  x <- (1-c) x + c z, c = 1/(t+1);  y <- (1-beta) z + beta x"
    reference = "Defazio et al. 2024, facebookresearch/schedule_free; not in the paper"

    def direction(self, history, gradient):
        n = len(history) - 1
        current = gradient(history[0])
        if n == 0:
            return current
        average = 0.0
        for k in range(n):                     # history[k] = theta^(n-k), r = n - k >= 1
            average = average + (n - k) * gradient(history[k])
        return (1.0 - self.beta) * current + self.beta / (n * (n + 1)) * average

    def memoryless_direction(self, theta, gradient, n):
        """F^(n)(theta) = g for n = 0, (1 - beta/2) g for n >= 1."""
        return gradient(theta) * (1.0 if n == 0 else 1.0 - self.beta / 2.0)

    # -- streaming: one running sum ---------------------------------------------

    def initial_state(self, theta) -> Dict[str, Any]:
        """sum_{r=1..n-1} r g(theta^(r)), before step n."""
        return {"sum": 0.0}

    def advance(self, state, theta, gradient, n):
        g = gradient(theta)
        if n == 0:
            return g, state
        total = state["sum"] + n * g
        return (1.0 - self.beta) * g + self.beta / (n * (n + 1)) * total, {"sum": total}
