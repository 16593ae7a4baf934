"""Any stateful step as a MemoryOptimizer, without rewriting it: a plain Python step function
(:class:`StepFunction`), a torch.optim optimizer class with its keyword arguments
(:class:`TorchOptimizer`), or an optax GradientTransformation (:class:`OptaxTransformation`).

F^(n) is the replay of the step from its initial state over the gradients at the history
points.  Eq. (12) needs its derivative along the history direction.  Through the gradient
inputs that derivative is a Hessian-vector product of the loss (exact, from the loss);
through the optimizer's own arithmetic it is a difference quotient of the replay -- central
differences at relative steps delta, delta/2 and delta/4 (delta = 1e-3) with two Richardson
extrapolations (error O(delta^6)), so no autodiff runs through the optimizer.
``optimizer.derivative_error`` holds the estimated error of the derivatives taken in the
last memless call (for a limit: at its last replay length), relative to the largest of
them: max |R2 - R1| / 15 over max |D|, R1 and R2 the once-extrapolated values -- the usual
Richardson estimate of R2's error, an estimate, not a bound (the value returned is
extrapolated once more).  Above 1e-6, and far above the differences'
rounding, a :class:`~memless.DerivativeWarning` says the replay is not smooth.

The limit n -> infinity (``n=None``) is one such derivative along the stationary history
direction: as n grows, v_k = sum_{s=n-k..n-1} F^(s) tends to k F for every fixed k, so the
history point k steps back moves by k F and its gradient by k H F -- one Hessian-vector product
in all.  The replay length N doubles from ``limit_n`` until M settles (relative change below
1e-9, ``tol`` or ten times the differences' estimated error, whichever is largest;
``max_limit_n`` at most): memory with decay beta needs N of several times 1/(1-beta)
(thousands of steps at beta = 0.99; tens of thousands at 0.999).

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

import warnings
from typing import Any, Callable, Optional

import autograd.numpy as anp
import numpy as np
from autograd.extend import defjvp, primitive

from .._autodiff import jvp
from ..core import MemoryOptimizer
from ..errors import DerivativeWarning, MemlessError

#: the relative step of the central differences (Richardson-extrapolated twice: error O(delta^6))
DELTA = 1e-3
#: the relative change of M between replays of N and 2N steps below which the limit has settled
LIMIT_SETTLE = 1e-9
#: the estimated relative error of a difference quotient above which a DerivativeWarning is issued
DERIVATIVE_WARN = 1e-6
#: ... when it is also this many times the differences' rounding error (a smooth replay whose
#: derivative is tiny has a large relative error made only of rounding)
NOISE = 1e4


class BlackBox(MemoryOptimizer):
    """Base of the black-box adapters: subclasses implement :meth:`start` and :meth:`step`
    (and, to run several replays in one call, :meth:`start_many` and :meth:`step_many`)."""

    #: the shortest replay the limit starts from (it doubles until M settles)
    limit_n: int = 200
    #: the longest replay the limit takes
    max_limit_n: int = 1 << 17

    def __init__(self, **values: Any):
        super().__init__(**values)
        # shared with the copies every analysis binds to a loss's layout, so the user's object
        # reports the error of the derivatives taken since the last public call bound it
        self._diagnostics = {"error": 0.0, "scale": 0.0}

    @property
    def derivative_error(self) -> float:
        """The estimated error of the replay's derivatives since the last memless call on this
        optimizer (for a limit: those at the last replay length N), relative to the largest of
        them: max |R2 - R1| / 15 over max |D| (see the module)."""
        record = self._diagnostics
        return record["error"] / record["scale"] if record["scale"] else 0.0

    def _record(self, estimate, error: float, floor: float) -> None:
        record = self._diagnostics
        record["error"] = max(record["error"], error)
        record["scale"] = max(record["scale"], float(np.max(np.abs(estimate))))
        relative = self.derivative_error
        if relative > DERIVATIVE_WARN and error > NOISE * floor:
            warnings.warn(f"{self.label}: the replay's difference quotients disagree by {relative:.1e} (relative), "
                          f"{error / floor:.0e} times their rounding: the optimizer is not smooth at the scale of "
                          "the differences (low precision inside, or a branch), so the correction is not reliable",
                          DerivativeWarning, stacklevel=3)

    def bind(self, layout) -> "BlackBox":
        """As :meth:`MemoryOptimizer.bind`; every memless call binds once, which starts a new error record."""
        self._diagnostics.update(error=0.0, scale=0.0)
        return super().bind(layout)

    # -- what a subclass writes -------------------------------------------------

    def start(self, theta) -> Any:
        """The optimizer's state before its first step at parameters ``theta``."""
        raise NotImplementedError

    def step(self, state, theta, gradient) -> tuple:
        """(direction, new state): theta_next = theta - h * direction."""
        raise NotImplementedError

    def start_many(self, thetas) -> Any:
        """The states of several independent replays (default: one :meth:`start` each)."""
        return [self.start(theta) for theta in thetas]

    def step_many(self, states, thetas, gradients) -> tuple:
        """(directions, new states) of one step of each replay (default: one :meth:`step` each)."""
        out = [self.step(state, theta, g) for state, theta, g in zip(states, thetas, gradients)]
        return [d for d, _ in out], [state for _, state in out]

    # -- the replay ------------------------------------------------------------------

    def lockstep(self, steps: int, inputs: Callable) -> list:
        """F after ``steps`` steps of several replays run side by side; ``inputs(s)`` lists the
        (theta, gradient) each replay steps at on step s = 0, ..., steps - 1."""
        pairs = inputs(0)
        states = self.start_many([np.array(theta, dtype=float) for theta, _ in pairs])
        directions = None
        for s in range(steps):
            pairs = pairs if s == 0 else inputs(s)
            directions, states = self.step_many(states, [np.asarray(t, dtype=float) for t, _ in pairs],
                                                [np.asarray(g, dtype=float) for _, g in pairs])
        return [np.asarray(d, dtype=float) for d in directions]

    def replay(self, thetas, gradients) -> np.ndarray:
        """F^(n) after steps at thetas[n], ..., thetas[0] (newest first) with those gradients."""
        n = len(thetas) - 1
        return self.lockstep(n + 1, lambda s: [(thetas[n - s], gradients[n - s])])[0]

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
        return f"declared by the user: the black box's memory is taken to decay (its limit replays up to " \
               f"{self.max_limit_n} steps)"

    # -- the limit: the stationary history direction, one HVP ----------------------

    def _stationary(self, theta, g, n, ts=(0.0,), F=None, HF=None) -> list:
        """F^(n) at the constant history theta, for each t in ``ts`` with the point k steps back
        moved by t k F and its gradient by t k HF (streamed: no history is stored)."""
        def inputs(s):
            k = n - s
            if not k or F is None:
                return [(theta, g)] * len(ts)
            return [(theta + (t * k) * F, g + (t * k) * HF) for t in ts]
        return self.lockstep(n + 1, inputs)

    def limit_direction(self, theta, gradient):
        """F = lim F^(n) at the constant history: the replay doubled from limit_n until it settles."""
        g = np.asarray(gradient(theta), dtype=float)
        n, F = int(self.limit_n), None
        while True:
            new = self._stationary(theta, g, n)[0]
            if n >= self.max_limit_n or (
                    F is not None and np.max(np.abs(new - F)) <= 1e-13 * max(np.max(np.abs(new)), 1e-300)):
                return new
            F, n = new, 2 * n

    def limit_correction(self, theta, gradient, lr, tol, max_history):
        """M(theta) = h lim_N d/dt F^(N)[history theta + t k F, gradients g + t k H F]: one HVP and
        seven replays of N steps (run in lockstep) per N, N doubling from ``limit_n`` until M settles.
        Returns (M, N, settled, the relative change of M from N/2 to N)."""
        g = np.asarray(gradient.value if hasattr(gradient, "value") else gradient(theta), dtype=float)
        settle, longest = max(tol, LIMIT_SETTLE), min(int(self.max_limit_n), int(max_history))
        n, previous = int(self.limit_n), None
        while True:
            F = self._stationary(theta, g, n)[0]
            HF = np.asarray(jvp(gradient, theta, F)[1], dtype=float)
            # the step moves the newest limit_n points by up to delta relative to theta, whatever n:
            # older points move more, but their weight in F^(n) has decayed
            scale = max(float(np.max(np.abs(theta))), 1.0) / max(self.limit_n * float(np.max(np.abs(F))), 1e-300)
            derivative, error, floor = _richardson(
                lambda ts, n=n, F=F, HF=HF: self._stationary(theta, g, n, ts, F, HF), DELTA * scale)
            self._diagnostics.update(error=0.0, scale=0.0)         # each N's derivative stands alone
            self._record(derivative, error, floor)
            M = lr * derivative
            change = (np.inf if previous is None
                      else float(np.max(np.abs(M - previous))) / max(float(np.max(np.abs(M))), 1e-300))
            enough = max(settle, 10 * self.derivative_error)       # no closer than the differences allow
            if change <= enough or n >= longest:
                return M, n, change <= enough, change
            previous, n = M, min(2 * n, longest)

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
    moves = [np.asarray(jvp(replay.gradient, theta, t)[1], dtype=float) if np.any(t) else np.zeros_like(t)
             for theta, t in zip(stack, tangent)]
    scale = max(float(np.max(np.abs(stack))), 1.0) / max(float(np.max(np.abs(tangent))), 1e-300)
    n = len(stack) - 1

    def at(ts):
        return replay.optimizer.lockstep(
            n + 1, lambda s: [(stack[n - s] + t * tangent[n - s], gradients[n - s] + t * moves[n - s]) for t in ts])

    estimate, error, floor = _richardson(at, DELTA * scale)
    replay.optimizer._record(estimate, error, floor)
    return estimate


def _richardson(at, delta):
    """(d/dt at(t) at t = 0, its estimated error, the rounding error of the differences), ``at``
    taking a list of t: central differences at delta, delta/2, delta/4 (six replays in one
    lockstep run), extrapolated twice (error O(delta^6)).  The error estimate is the usual one
    for the once-extrapolated value at delta/2, max |R2 - R1| / 15."""
    steps = (delta, delta / 2, delta / 4)
    values = at([t for h in steps for t in (h, -h)])
    D = [(values[2 * i] - values[2 * i + 1]) / (2 * h) for i, h in enumerate(steps)]
    R1, R2 = (4 * D[1] - D[0]) / 3, (4 * D[2] - D[1]) / 3
    estimate = (16 * R2 - R1) / 15
    floor = np.finfo(float).eps * max(float(np.max(np.abs(v))) for v in values) / steps[-1]
    return estimate, float(np.max(np.abs(R2 - R1))) / 15, max(floor, 1e-300)


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


class BatchedBlackBox(BlackBox):
    """A black box whose subclasses implement :meth:`start_many` and :meth:`step_many` (several
    replays in one call); one replay is a batch of one."""

    def start(self, theta):
        return self.start_many([theta])

    def step(self, state, theta, gradient):
        directions, state = self.step_many(state, [theta], [gradient])
        return directions[0], state

    def split(self, vectors) -> list:
        """The replays' flat vectors as one array per parameter of the layout (one without a
        layout), the replays stacked along a new first axis."""
        stacked = np.stack([np.asarray(v, dtype=float) for v in vectors])
        if self.layout is None:
            return [stacked]
        return [stacked[:, cut].reshape((len(stacked),) + shape) for _, cut, shape in self.layout]

    @staticmethod
    def join(arrays, count: int) -> np.ndarray:
        """The inverse of :meth:`split`: the ``count`` replays' flat vectors, as rows."""
        return np.concatenate([np.asarray(a, dtype=float).reshape(count, -1) for a in arrays], axis=1)


#: torch.optim classes whose step acts on each number separately: replays stack along a new axis
ELEMENTWISE_TORCH = frozenset({"SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adamax", "NAdam", "RAdam", "Rprop",
                               "ASGD", "Adadelta"})


class TorchOptimizer(BatchedBlackBox):
    """A torch.optim optimizer class and its keyword arguments (``lr`` is memless's h: the
    class runs at lr = 1 and F is the change it makes, which is h times F for the optimizers
    whose step is linear in lr -- all of torch.optim's).  Without a layout the parameter is one
    float64 vector; on a loss with a layout (a framework model, a structured loss) each named
    array is its own float64 parameter, as in the model, so torch.optim.Muon sees the matrices.
    The replays a difference quotient needs run in one optimizer: stacked along a new first
    axis of each parameter when the optimizer acts elementwise (``elementwise``; by default
    True for torch.optim's elementwise classes, :data:`ELEMENTWISE_TORCH`), else as parameter
    groups."""

    def __init__(self, optimizer_class, name: str = "", limit_n: int = 200, elementwise: Optional[bool] = None,
                 **kwargs):
        try:
            import torch  # noqa: F401
        except ImportError:
            raise MemlessError("TorchOptimizer needs PyTorch: pip install memless[torch]") from None
        if "lr" in kwargs:
            raise MemlessError("TorchOptimizer: leave lr out; memless's lr is the step size h")
        if not callable(optimizer_class):
            raise MemlessError(f"TorchOptimizer needs a torch.optim optimizer class, got {optimizer_class!r}")
        super().__init__()
        self.optimizer_class, self.kwargs = optimizer_class, dict(kwargs)
        self.name = name or f"torch.{getattr(optimizer_class, '__name__', 'optimizer')}"
        self.limit_n = int(limit_n)
        if elementwise is None:
            elementwise = (getattr(optimizer_class, "__name__", None) in ELEMENTWISE_TORCH
                           and str(getattr(optimizer_class, "__module__", "")).startswith("torch.optim"))
        self.elementwise = bool(elementwise)

    def _pieces(self, theta):
        return [theta] if self.layout is None else list(self.layout.unflatten(theta).values())

    def start_many(self, thetas):
        import torch
        pieces = [self.split(thetas)] if self.elementwise else [self._pieces(theta) for theta in thetas]
        groups = [[torch.nn.Parameter(torch.tensor(np.array(piece), dtype=torch.float64)) for piece in group]
                  for group in pieces]
        try:
            optimizer = self.optimizer_class([{"params": group} for group in groups], lr=1.0, **self.kwargs)
        except Exception as exc:
            raise MemlessError(f"{self.name}: the optimizer refused the parameters: {type(exc).__name__}: "
                               f"{exc}") from exc
        return groups, optimizer, len(thetas)

    def step_many(self, state, thetas, gradients):
        import torch
        groups, optimizer, count = state
        if self.elementwise:
            parameters = groups[0]
            values, grads = self.split(thetas), self.split(gradients)
        else:
            parameters = [p for group in groups for p in group]
            values = [piece for theta in thetas for piece in self._pieces(theta)]
            grads = [piece for g in gradients for piece in self._pieces(g)]
        with torch.no_grad():
            for parameter, value, g in zip(parameters, values, grads):
                parameter.copy_(torch.as_tensor(value))
                parameter.grad = torch.as_tensor(g).clone()
        optimizer.step()
        if self.elementwise:
            after = self.join([p.detach().numpy() for p in parameters], count)
        else:
            after = np.concatenate([self.join([p.detach().numpy() for p in group], 1) for group in groups])
        return list(np.stack(thetas) - after), state


class OptaxTransformation(BatchedBlackBox):
    """An optax GradientTransformation: a factory and its keyword arguments
    (``OptaxTransformation(optax.adamw, b1=0.9, weight_decay=0.01)``, built at
    ``learning_rate=1``), or a transformation already built with learning rate 1.
    F is minus its update (params_next = params + update at lr 1 is theta - F).
    The replays a difference quotient needs run in one jitted, vmapped update, in float64.
    """

    def __init__(self, transformation, name: str = "", limit_n: int = 200, **kwargs):
        try:
            import jax  # noqa: F401

            from . import jax as _float64  # noqa: F401  (turns on float64)
        except ImportError:
            raise MemlessError("OptaxTransformation needs JAX and optax: pip install memless[jax]") from None
        if "learning_rate" in kwargs:
            raise MemlessError("OptaxTransformation: leave learning_rate out; memless's lr is the step size h")
        built = hasattr(transformation, "init") and hasattr(transformation, "update")
        if built and kwargs:
            raise MemlessError("OptaxTransformation: keyword arguments go with a factory (optax.adamw), "
                               "not with a transformation already built")
        if not built and not callable(transformation):
            raise MemlessError(f"OptaxTransformation needs an optax GradientTransformation or a factory, "
                               f"got {transformation!r}")
        super().__init__()
        try:
            self.transformation = transformation if built else transformation(learning_rate=1.0, **kwargs)
        except Exception as exc:
            raise MemlessError(f"OptaxTransformation: {getattr(transformation, '__name__', transformation)}"
                               f"(learning_rate=1.0, **{kwargs}) raised {type(exc).__name__}: {exc}") from exc
        self.kwargs = dict(kwargs)
        self.name = name or f"optax.{getattr(transformation, '__name__', 'transformation')}"
        self.limit_n = int(limit_n)
        self._compiled = None

    def _functions(self):
        if self._compiled is None:
            import jax
            tx = self.transformation
            self._compiled = (jax.jit(jax.vmap(tx.init)),
                              jax.jit(jax.vmap(lambda g, state, p: tx.update(g, state, p))))
        return self._compiled

    def _tree(self, vectors):
        """The replays as the pytree optax sees: one array, or a dict by parameter name."""
        import jax.numpy as jnp
        arrays = [jnp.asarray(a) for a in self.split(vectors)]
        return arrays[0] if self.layout is None else dict(zip(self.layout.shapes, arrays))

    def _flat(self, tree, count):
        return self.join([tree] if self.layout is None else [tree[name] for name in self.layout.shapes], count)

    def start_many(self, thetas):
        init, _ = self._functions()
        return init(self._tree(thetas))

    def step_many(self, state, thetas, gradients):
        _, update = self._functions()
        updates, state = update(self._tree(gradients), state, self._tree(thetas))
        return list(-self._flat(updates, len(thetas))), state
