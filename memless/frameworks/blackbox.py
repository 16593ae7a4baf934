"""Any stateful step as a MemoryOptimizer, without rewriting it: a plain Python step function,
or a torch.optim optimizer class with its keyword arguments.

F^(n) is the replay of the step from its initial state over the gradients at the history
points.  Eq. (12) needs its derivative along the history direction.  Through the gradient
inputs that derivative is a Hessian-vector product of the loss (exact, from the loss);
through the optimizer's own arithmetic it is a difference quotient of the replay -- central
differences with one Richardson extrapolation, so no autodiff runs through the optimizer.
``optimizer.derivative_error`` holds a conservative estimate of its last error: that of the
finer central difference before extrapolation, |D(delta/2) - D(delta)|/3 relative to |D|
(the extrapolated value is usually far better: against the built-ins, 1e-11 where this
estimate says 1e-6).

The limit n -> infinity is M^(n) at the n where it settles, as for any optimizer without a
momentum form; each JVP replays the whole history, so it costs seconds, not milliseconds.

>>> import numpy as np, memless
>>> from memless.frameworks.blackbox import StepFunction
>>> def heavy_ball(grads, params, state):               # theta <- theta - h * direction
...     state = 0.5 * state + grads
...     return state, state
>>> opt = StepFunction(heavy_ball, init=lambda params: np.zeros_like(params), name="my-heavy-ball")
>>> M = memless.correction(opt, "curvy", None, lr=0.01, n=10)
>>> ref = memless.correction(memless.get_optimizer("heavy-ball", beta=0.5), "curvy", None, lr=0.01, n=10)
>>> bool(np.allclose(M, ref, rtol=1e-7))
True
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import autograd.numpy as anp
import numpy as np
from autograd.extend import defjvp, primitive

from .._autodiff import jvp
from ..core import MemoryOptimizer
from ..errors import MemlessError

#: the relative step of the central differences (Richardson-extrapolated: error O(delta^4))
DELTA = 1e-3


class BlackBox(MemoryOptimizer):
    """Base of the black-box adapters: subclasses implement :meth:`start` and :meth:`step`."""

    #: the n at which F^(n) stands for its limit (a black box declares no decay: set it)
    limit_n: int = 200

    def __init__(self, **values: Any):
        super().__init__(**values)
        self.derivative_error = 0.0

    # -- what a subclass writes -------------------------------------------------

    def start(self, theta) -> Any:
        """The optimizer's state before its first step at parameters ``theta``."""
        raise NotImplementedError

    def step(self, state, theta, gradient) -> tuple:
        """(direction, new state): theta_next = theta - h * direction."""
        raise NotImplementedError

    # -- the replay ------------------------------------------------------------------

    def replay(self, thetas, gradients) -> np.ndarray:
        """F^(n) after steps at thetas[n], ..., thetas[0] (newest first) with those gradients."""
        state = self.start(np.array(thetas[-1], dtype=float))
        direction = None
        for theta, g in zip(reversed(list(thetas)), reversed(list(gradients))):
            direction, state = self.step(state, np.array(theta, dtype=float), np.array(g, dtype=float))
        return np.asarray(direction, dtype=float)

    def direction(self, history, gradient):
        return _replayed(anp.stack(list(history)), _Replay(self, gradient))

    def limit_steps(self) -> int:
        return int(self.limit_n)

    def tamed(self) -> "BlackBox":
        """A black box declares no tame values: itself."""
        return self

    def memory_length(self) -> float:
        return float(self.limit_n) / 10.0

    def declared_decay(self) -> Optional[str]:
        return f"declared by the user: the black box's memory is taken to have decayed after {self.limit_n} steps"

    # -- streaming: the live state, one step each ----------------------------------------

    def initial_state(self, theta):
        return None

    def advance(self, state, theta, gradient, n):
        if state is None:
            state = self.start(np.array(theta, dtype=float))
        direction, state = self.step(state, np.array(theta, dtype=float), np.asarray(gradient(theta), dtype=float))
        return np.asarray(direction, dtype=float), state


class _Replay:
    """What the primitive needs besides the history: the optimizer and the gradient function."""

    __slots__ = ("optimizer", "gradient")

    def __init__(self, optimizer, gradient):
        self.optimizer, self.gradient = optimizer, gradient


@primitive
def _replayed(stack, replay):
    return replay.optimizer.replay(stack, [replay.gradient(theta) for theta in stack])


def _replayed_jvp(tangent, ans, stack, replay):
    """Gradients move by H v_k (the loss's HVP); the optimizer's arithmetic by a difference quotient."""
    tangent = np.asarray(tangent, dtype=float)
    gradients = [np.asarray(replay.gradient(theta), dtype=float) for theta in stack]
    moves = [jvp(replay.gradient, theta, t)[1] if np.any(t) else np.zeros_like(t)
             for theta, t in zip(stack, tangent)]
    moves = [np.asarray(m, dtype=float) for m in moves]
    scale = max(float(np.max(np.abs(stack))), 1.0) / max(float(np.max(np.abs(tangent))), 1e-300)

    def central(delta):
        def at(t):
            return replay.optimizer.replay(stack + t * tangent, [g + t * m for g, m in zip(gradients, moves)])
        return (at(delta) - at(-delta)) / (2 * delta)

    coarse, fine = central(DELTA * scale), central(DELTA * scale / 2)
    estimate = (4 * fine - coarse) / 3
    size = max(float(np.max(np.abs(estimate))), 1e-300)
    replay.optimizer.derivative_error = float(np.max(np.abs(fine - coarse))) / 3 / size
    return estimate


defjvp(_replayed, _replayed_jvp, None)


# ----------------------------------------------------------------------------
# Adapters
# ----------------------------------------------------------------------------


class StepFunction(BlackBox):
    """A plain Python step ``step(grads, params, state) -> (direction, state)`` with
    ``init(params) -> state`` (NumPy in, NumPy out; theta_next = theta - h direction)."""

    def __init__(self, step: Callable, init: Callable, name: str = "step-function", limit_n: int = 200):
        if not callable(step) or not callable(init):
            raise MemlessError("StepFunction needs callables step(grads, params, state) and init(params)")
        super().__init__()
        self.step_function, self.init_function, self.name, self.limit_n = step, init, name, int(limit_n)

    def start(self, theta):
        return self.init_function(theta)

    def step(self, state, theta, gradient):
        direction, state = self.step_function(gradient, theta, state)
        return direction, state


class TorchOptimizer(BlackBox):
    """A torch.optim optimizer class and its keyword arguments (``lr`` is memless's h: the
    class runs at lr = 1 and F is the change it makes).  The parameter is one float64 vector."""

    def __init__(self, optimizer_class, name: str = "", limit_n: int = 200, **kwargs):
        try:
            import torch  # noqa: F401
        except ImportError:
            raise MemlessError("TorchOptimizer needs PyTorch: pip install memless[torch]") from None
        if "lr" in kwargs:
            raise MemlessError("TorchOptimizer: leave lr out; memless's lr is the step size h")
        super().__init__()
        self.optimizer_class, self.kwargs = optimizer_class, dict(kwargs)
        self.name = name or f"torch.{getattr(optimizer_class, '__name__', 'optimizer')}"
        self.limit_n = int(limit_n)

    def start(self, theta):
        import torch
        parameter = torch.nn.Parameter(torch.tensor(theta, dtype=torch.float64))
        return parameter, self.optimizer_class([parameter], lr=1.0, **self.kwargs)

    def step(self, state, theta, gradient):
        import torch
        parameter, optimizer = state
        with torch.no_grad():
            parameter.copy_(torch.as_tensor(theta, dtype=torch.float64))
        parameter.grad = torch.as_tensor(gradient, dtype=torch.float64).clone()
        optimizer.step()
        return theta - parameter.detach().numpy().copy(), state
