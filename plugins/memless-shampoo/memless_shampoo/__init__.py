"""Shampoo as a memless plugin: two Kronecker-factor accumulators per matrix, in momentum form."""
from __future__ import annotations

import autograd.numpy as anp

from memless.extend import Channel, MomentumOptimizer, decay, ema_bias_correction, gradient_signal, positive

__version__ = "0.1.0"


def _inverse_fourth_root(A, eps):
    """(A + eps I)^(-1/4) for a symmetric positive semidefinite A, by eigh."""
    w, V = anp.linalg.eigh(A + eps * anp.eye(A.shape[0]))
    return anp.dot(V * anp.maximum(w, eps) ** -0.25, anp.transpose(V))


class Shampoo(MomentumOptimizer):
    """Shampoo with EMA accumulators (Gupta, Koren & Singer 2018), per parameter matrix G::

        L <- beta L + (1-beta) G G^T,  R <- beta R + (1-beta) G^T G   (bias-corrected)
        theta <- theta - h (L + eps I)^(-1/4) G (R + eps I)^(-1/4)

    Channels: "left" and "right" (decay beta, signals G G^T and G^T G of every matrix,
    flattened one after the other) and "gradient" (no memory).  Every parameter must be a
    2-D matrix.  There is no closed form for M: the engine computes it (Eq. 12).

    >>> import memless
    >>> opt = Shampoo(beta=0.5, eps=0.1)
    >>> M = memless.correction(opt, "factorization", None, lr=1e-3)
    """

    name = "shampoo"
    hyperparameters = (
        decay("beta", 0.99, "decay of the Kronecker-factor accumulators"),
        positive("eps", 1e-4, "added to L and R before the inverse fourth root", tame=0.1),
    )
    update_rule = "L <- EMA(G G^T); R <- EMA(G^T G); theta <- theta - h (L + eps)^(-1/4) G (R + eps)^(-1/4)"
    reference = "Gupta, Koren & Singer 2018 (an open question in Cattaneo & Shigida 2025)"
    modified_loss = "no closed form: M comes from the engine (Eq. 12)"

    @property
    def needs_matrices(self):
        return True

    def check_layout(self, layout):
        super().check_layout(layout)
        vectors = [name for name, shape in layout.shapes.items() if len(shape) != 2]
        if vectors:
            from memless.errors import HyperparameterError
            raise HyperparameterError(f"shampoo preconditions 2-D matrices only; {', '.join(map(repr, vectors))} "
                                      "are not (analyze those parameters with 'adamw')")

    def _factors(self, theta, grad, side):
        parts = self.layout.unflatten(grad)
        blocks = []
        for name in self.layout.matrices:
            G = parts[name]
            blocks.append(anp.ravel(anp.dot(G, anp.transpose(G)) if side == "left" else anp.dot(anp.transpose(G), G)))
        return anp.concatenate(blocks)

    def channels(self):
        return [
            Channel("left", self.beta, lambda theta, grad: self._factors(theta, grad, "left"),
                    ema_bias_correction(self.beta)),
            Channel("right", self.beta, lambda theta, grad: self._factors(theta, grad, "right"),
                    ema_bias_correction(self.beta)),
            Channel("gradient", 0.0, gradient_signal),
        ]

    def combine(self, m):
        grads = self.layout.unflatten(m["gradient"])
        out, left_at, right_at = [], 0, 0
        for name in self.layout.matrices:
            rows, cols = self.layout.shapes[name]
            L = anp.reshape(m["left"][left_at:left_at + rows * rows], (rows, rows))
            R = anp.reshape(m["right"][right_at:right_at + cols * cols], (cols, cols))
            left_at, right_at = left_at + rows * rows, right_at + cols * cols
            step = anp.dot(anp.dot(_inverse_fourth_root(L, self.eps), grads[name]), _inverse_fourth_root(R, self.eps))
            out.append(anp.ravel(step))
        return anp.concatenate(out)


__all__ = ["Shampoo"]
