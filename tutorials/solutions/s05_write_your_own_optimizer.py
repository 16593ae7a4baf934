"""Solution to Tutorial 5, Exercise 5: quasi-hyperbolic momentum (Ma & Yarats 2019)."""
import memless


class QHM(memless.MomentumOptimizer):
    """``m <- beta m + (1-beta) g;  theta <- theta - h [(1-nu) g + nu m]``."""

    name = "qhm"
    hyperparameters = (memless.decay("nu", 0.7, "weight of the momentum in the step"),
                       memless.decay("beta", 0.999, "momentum decay"))
    update_rule = "m <- beta m + (1-beta) g;  theta <- theta - h [(1-nu) g + nu m]"
    elementwise = True

    def channels(self):
        return [memless.Channel("momentum", self.beta, lambda theta, grad: grad, scale=1 - self.beta),
                memless.Channel("gradient", 0.0, lambda theta, grad: grad)]

    def combine(self, m):
        return self.nu * m["momentum"] + (1 - self.nu) * m["gradient"]
