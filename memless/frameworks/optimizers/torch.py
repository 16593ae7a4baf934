"""A torch.optim optimizer that also applies memless's correction at every step.

>>> from memless.frameworks.torch import Compensated      # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np

from ...checks import real
from ...contract.optimizer import require_optimizer
from ...engine import corrections
from ...errors import LossError
from ..losses.external import ExternalLoss
from ..losses.torch import flat, import_torch


class Compensated:
    """A torch.optim optimizer whose every step also subtracts ``c h M``, with M = M^(n)(theta) the
    correction of Eq. (12) (Cattaneo & Shigida 2025) for ``memory``, the memless model of that
    optimizer, on ``loss`` (the full-batch objective of the same model).  The optimizer's own step
    moves along F + M to first order (Theorem 3.3), so the run follows F + (1 + c) M:

    c = -1 removes memory's first-order effect (the run then tracks the memoryless iteration
    theta <- theta - h F^(n)(theta) to O(h^2)); c = +1 doubles it; c = 0 is the optimizer.  Each
    step costs one correction (a gradient and a Hessian-vector product or two through ``loss``)
    on top of the optimizer's step; ``seconds`` accumulates that cost.  ``largest_ratio`` is the
    largest |M| / |F| over the steps (|F| measured as the optimizer's own step over h; NaN with
    c = 0, where M is not computed): the first-order picture needs it small.

    >>> import torch, memless                                                        # doctest: +SKIP
    >>> from memless.frameworks.torch import Compensated, objective                 # doctest: +SKIP
    >>> opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)    # doctest: +SKIP
    >>> loss = objective(model, torch.nn.functional.cross_entropy, (x, y))           # doctest: +SKIP
    >>> step = Compensated(opt, memless.get_optimizer("adam", eps=1e-8, eps_inside=False), loss, c=-1.0)  # doctest: +SKIP
    >>> step.step()        # after loss.backward(), as for the optimizer itself        # doctest: +SKIP
    """

    def __init__(self, optimizer, memory, loss: ExternalLoss, c: float, *, limit: bool = False):
        torch = import_torch()
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise LossError(f"Compensated needs a torch.optim.Optimizer, got {type(optimizer).__name__}")
        require_optimizer(memory)
        if not isinstance(loss, ExternalLoss):
            raise LossError("Compensated needs the model's loss as memless.frameworks.torch.objective(model, ...)")
        try:
            self.c = real(c)
        except (TypeError, ValueError):
            raise LossError(f"c must be a finite number, got {c!r}") from None
        groups = optimizer.param_groups
        if len(groups) != 1:
            raise LossError("Compensated supports an optimizer with one parameter group (one lr)")
        self.params = list(groups[0]["params"])
        size = sum(p.numel() for p in self.params)
        if loss.start is None:
            raise LossError("Compensated needs the loss's start point (the model's parameters): build the loss with "
                            "memless.frameworks.torch.objective(model, ...)")
        if size != loss.start.size:
            raise LossError(f"the optimizer holds {size} parameters, the loss {loss.start.size}: build both from "
                            "the same model (its trainable parameters, in order)")
        self.optimizer, self.memory, self.loss, self.limit = optimizer, memory, loss, bool(limit)
        self.n, self.seconds, self.largest_ratio = 0, 0.0, float("nan")

    def _theta(self):
        return flat(self.params)

    def step(self):
        """The optimizer's step, then theta -= c h M^(n)(theta at the step's start)."""
        import time

        torch = import_torch()
        correction = None
        lr = float(self.optimizer.param_groups[0]["lr"])
        if self.c != 0.0:
            start = time.perf_counter()
            before = self._theta()
            correction = corrections.correction(self.memory, self.loss, before, lr=lr,
                                            n=None if self.limit else self.n)
            self.seconds += time.perf_counter() - start
        self.optimizer.step()
        if correction is not None:
            moved = np.linalg.norm(self._theta() - before) / lr
            ratio = float(np.linalg.norm(correction) / moved) if moved > 0 else float("inf")
            self.largest_ratio = ratio if not ratio <= self.largest_ratio else self.largest_ratio
            with torch.no_grad():
                offset = 0
                for p in self.params:
                    part = correction[offset:offset + p.numel()].reshape(p.shape)
                    p.sub_(torch.as_tensor(self.c * lr * part, dtype=p.dtype, device=p.device))
                    offset += p.numel()
        self.n += 1

    def zero_grad(self, set_to_none: bool = True):
        self.optimizer.zero_grad(set_to_none=set_to_none)
