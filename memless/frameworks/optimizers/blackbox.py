"""Any stateful step as a MemoryOptimizer, without rewriting it: a plain Python step function
(:class:`StepFunction`), a torch.optim optimizer class with its keyword arguments
(:class:`TorchOptimizer`), or an optax GradientTransformation (:class:`OptaxTransformation`).

F^(n) is the replay of the step from its initial state over the gradients at the history
points.  Eq. (12) of Cattaneo & Shigida (2025) needs its derivative along the history
direction.  Through the gradient inputs that derivative is a Hessian-vector product of the
loss (exact, from the loss); through the optimizer's own arithmetic it is taken

* **exactly, by forward mode** where the framework has it (``optimizer.derivatives ==
  "forward"``): ``jax.jvp`` of the optax update, and ``torch.autograd.forward_ad`` through
  the torch.optim classes listed in :data:`FORWARD_TORCH` (each checked against the built-ins
  and against differences in the tests);
* otherwise by **central differences** of the replay (``"differences"``) at relative steps
  delta, delta/2 and delta/4 with two Richardson extrapolations (error O(delta^6)).  The step
  is chosen per component from the scale of that component's inputs (theta_i, g_i) when the
  step acts elementwise, and refined (delta = 1e-3, 1e-4, 1e-5) until the extrapolations agree.
  ``optimizer.derivative_error`` holds the estimated error of the derivatives of the last
  memless call relative to the largest of them (max |R2 - R1| / 15 over max |D|, R1 and R2 the
  once-extrapolated values: the usual Richardson estimate, not a bound); above 1e-6, and far
  above the differences' rounding, a :class:`~memless.DerivativeWarning` says the replay is
  not smooth.  With forward mode it is 0.

The limit n -> infinity (``n=None``) is one derivative along the stationary history
direction: as n grows, v_k = sum_{s=n-k..n-1} F^(s) tends to k F for every fixed k, so the
history point k steps back moves by k F and its gradient by k H F -- one Hessian-vector
product in all:

    S_p(N) = sum_{k=0..N} k^p dF^(N)/dtheta^(N-k) . (F, H F),   M = h lim_N S_1(N).

In forward mode one replay gives S_p at every N (the weights k^p = (N - s)^p expand in
powers of the step index s: three tangent streams s^0, s^1, s^2 run side by side); with
differences each N is replayed anew.  N doubles from ``limit_n`` until S_1 changes by less
than 1e-9 (or ``tol``) of itself over a doubling *and* the derivatives' estimated error is
below that too; otherwise the limit is reported not converged (``CorrectionInfo.converged``)
with a warning that says how far off it may be.  S_2 measures Assumption 3.1 (the history
weights' second moment sum_k k^2 gamma_k bounded in n) along that direction: a black box
declares nothing about its memory, so it is measured, and memory whose S_2 has not settled
within 10 % by ``max_limit_n`` steps (torch.optim.Adagrad: it grows like N^2) is outside the
theory -- the limit is refused with the numbers.

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

import contextlib
import hashlib
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import autograd.numpy as anp
import numpy as np
from autograd.extend import defjvp, primitive

from ...contract.optimizer import MemoryOptimizer
from ...errors import DerivativeWarning, MemlessError, OptimizerError
from ...numerics.autodiff import jvp

#: the relative step of the central differences (Richardson-extrapolated twice: error O(delta^6))
DELTA = 1e-3
#: the relative steps the differences try, in turn, until their Richardson estimates agree
DELTAS = (DELTA, 1e-4, 1e-5)
#: a difference quotient whose estimated relative error is below this is not refined further
DIFFERENCE_TARGET = 1e-11
#: a difference quotient this far off (relative) is not refined: the replay is not smooth there
ROUGH = 1e-2
#: the relative change of M between replays of N and 2N steps below which the limit has settled
LIMIT_SETTLE = 1e-9
#: S_2's relative change over a doubling of N at or below which memory is measured to decay
DECAY_SETTLE = 0.1
#: the estimated relative error of a difference quotient above which a DerivativeWarning is issued
DERIVATIVE_WARN = 1e-6
#: ... when it is also this many times the differences' rounding error (a smooth replay whose
#: derivative is tiny has a large relative error made only of rounding)
NOISE = 1e4
#: two replays of the same steps may differ by this much (relative) and still be one function
REPEAT_TOLERANCE = 1e-12
#: how a black box differentiates its replay
DERIVATIVES = ("auto", "forward", "differences")


def _relative_change(new, old) -> float:
    scale = float(np.max(np.abs(new))) if np.size(new) else 0.0
    change = float(np.max(np.abs(new - old))) if np.size(new) else 0.0
    if change == 0.0:
        return 0.0
    return change / scale if scale > 0 else np.inf


def _doublings(start: int, longest: int) -> List[int]:
    """start, 2 start, 4 start, ... up to ``longest`` (which always ends the list)."""
    out, n = [], max(1, int(start))
    while n < longest:
        out.append(n)
        n *= 2
    return out + [int(longest)]


@dataclass
class StationarySums:
    """The derivatives of the replay along the stationary history direction at its last length N.

    ``S1`` = sum_k k dF^(N)/dtheta^(N-k) . (F, HF) (the limit correction is h S1); ``S2`` the
    same with weights k^2 (Assumption 3.1's second moment, along this direction); ``change1``,
    ``change2``: their relative changes from N/2 to N; ``error``: the derivatives' estimated
    relative error (0 in forward mode)."""

    n: int
    S1: np.ndarray
    S2: np.ndarray
    change1: float
    change2: float
    error: float
    settle: float

    @property
    def settled(self) -> bool:
        """S1 changed by at most ``settle`` over the last doubling, and its error is below that too."""
        return self.change1 <= self.settle and self.error <= self.settle

    @property
    def decays(self) -> bool:
        return self.change2 <= DECAY_SETTLE

    def reason(self) -> str:
        half = max(self.n // 2, 1)
        if self.decays:
            return (f"measured along the stationary history direction: sum_k k^2 dF/dtheta^(N-k).(F, HF) changed by "
                    f"{self.change2:.1e} of itself from N={half} to N={self.n} steps (Assumption 3.1 needs it bounded "
                    f"in N; settled within {DECAY_SETTLE:.0%})")
        return (f"measured along the stationary history direction: sum_k k^2 dF/dtheta^(N-k).(F, HF) still changed by "
                f"{self.change2:.0%} of itself from N={half} to N={self.n} steps, the longest replay (Assumption 3.1 "
                f"needs it bounded in N; settled would be within {DECAY_SETTLE:.0%})")


class BlackBox(MemoryOptimizer):
    """Base of the black-box adapters: subclasses implement :meth:`start` and :meth:`step`
    (and, to run several replays in one call, :meth:`start_many` and :meth:`step_many`; for
    exact derivatives, :meth:`start_many_tangent`, :meth:`step_many_tangent` and
    :meth:`forward_support`)."""

    #: the shortest replay the limit starts from (it doubles until M settles)
    limit_n: int = 200
    #: the longest replay the limit and the memory measurement take
    max_limit_n: int = 1 << 16
    #: True when the step acts on each number separately: differences then step per component
    elementwise: bool = False

    def __init__(self, derivatives: str = "auto", **values: Any):
        super().__init__(**values)
        if derivatives not in DERIVATIVES:
            raise MemlessError(f"derivatives must be one of {', '.join(DERIVATIVES)}; got {str(derivatives)[:40]!r}")
        self._derivatives = derivatives
        # shared with the copies every analysis binds to a loss's layout, so the user's object
        # reports the error of the derivatives taken since the last public call bound it
        self._diagnostics: Dict[str, Any] = {"error": 0.0, "scale": 0.0, "checked": False, "stationary": None}

    def _check_derivatives(self) -> None:
        """Called by subclasses once their attributes are set: 'forward' needs forward support."""
        if self._derivatives == "forward" and self.forward_support() is None:
            raise MemlessError(f"{self.label}: derivatives='forward' needs a step that carries forward-mode "
                               "tangents; this one does not: use 'differences' (or 'auto')")

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

    def forward_support(self) -> Optional[str]:
        """"verified" (forward mode is exact and tested: the default), "possible" (it runs, unverified:
        only on request) or None (differences only)."""
        return None

    def forward_mode(self):
        """The context a forward-mode replay runs in (torch's dual level)."""
        return contextlib.nullcontext()

    def start_many_tangent(self, thetas, theta_dots) -> Any:
        """Forward mode: the replays' states, with their tangents."""
        raise NotImplementedError

    def step_many_tangent(self, states, thetas, theta_dots, gradients, gradient_dots) -> tuple:
        """Forward mode: (directions, their tangents, new states) of one step of each replay."""
        raise NotImplementedError

    @property
    def derivatives(self) -> str:
        """How the replay is differentiated: "forward" (exact) or "differences"."""
        if self._derivatives == "auto":
            return "forward" if self.forward_support() == "verified" else "differences"
        return self._derivatives

    # -- diagnostics --------------------------------------------------------------------

    @property
    def derivative_error(self) -> float:
        """The estimated error of the replay's derivatives since the last memless call on this
        optimizer (for a limit: those at the last replay length N), relative to the largest of
        them: max |R2 - R1| / 15 over max |D| (see the module); 0 in forward mode."""
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

    def bind(self, layout) -> "MemoryOptimizer":
        """As :meth:`MemoryOptimizer.bind`; every memless call binds once, which starts a new error record."""
        self._diagnostics.update(error=0.0, scale=0.0, checked=False)
        return super().bind(layout)

    def _check_shapes(self, directions, pairs) -> None:
        for direction, (theta, _) in zip(directions, pairs):
            size = np.size(direction)
            if size != np.size(theta):
                raise OptimizerError(f"{self.label}: its step returned a direction of {size} numbers (shape "
                                     f"{np.shape(direction)}); the parameters have {np.size(theta)}")

    def _check_repeatable(self, theta, g) -> None:
        """Two replays of the same three steps must agree: F^(n) is a function of the history only."""
        record = self._diagnostics
        if record["checked"]:
            return
        record["checked"] = True
        theta, g = np.asarray(theta, dtype=float), np.asarray(g, dtype=float)
        pairs = [(theta, g), (theta + 1e-3 * g, 0.5 * g), (theta, g)]
        first, second = (self.lockstep(3, lambda s: [pairs[s]])[0] for _ in range(2))
        change = _relative_change(second, first)
        if not change <= REPEAT_TOLERANCE:
            raise OptimizerError(
                f"{self.label}: two replays of the same three steps from the same start gave directions that differ "
                f"by {change:.1e} (relative): the step is not a function of (gradients, parameters, state) -- hidden "
                "state (a call counter, a global, randomness) makes F^(n) and its derivative meaningless; keep all "
                "state in the state the step returns")

    # -- the replay ------------------------------------------------------------------

    def lockstep(self, steps: int, inputs: Callable, at: Optional[Callable] = None, marks: Any = None) -> list:
        """F after ``steps`` steps of several replays run side by side; ``inputs(s)`` lists the
        (theta, gradient) each replay steps at on step s = 0, ..., steps - 1.  ``at(T, directions)``,
        if given, is called after step T for each T in ``marks`` (every step if None); a true
        result stops the replays there."""
        pairs = inputs(0)
        states = self.start_many([np.array(theta, dtype=float) for theta, _ in pairs])
        directions: Any = None
        for s in range(steps):
            pairs = pairs if s == 0 else inputs(s)
            directions, states = self.step_many(states, [np.asarray(t, dtype=float) for t, _ in pairs],
                                                [np.asarray(g, dtype=float) for _, g in pairs])
            if s == 0:
                self._check_shapes(directions, pairs)
            if at is not None and (marks is None or s + 1 in marks) and at(s + 1, directions):
                break
        return [np.asarray(d, dtype=float) for d in directions]

    def tangent_lockstep(self, steps: int, inputs: Callable, at: Optional[Callable] = None,
                         marks: Any = None) -> tuple:
        """Forward mode: (F, its tangent) after ``steps`` steps of several replays; ``inputs(s)``
        lists (theta, theta tangent, gradient, gradient tangent) for each replay;
        ``at(T, directions, tangents)`` and ``marks`` as in :meth:`lockstep`."""
        with self.forward_mode():
            rows = inputs(0)
            states = self.start_many_tangent([np.array(r[0], dtype=float) for r in rows],
                                             [np.array(r[1], dtype=float) for r in rows])
            directions: Any = None
            dots: Any = None
            for s in range(steps):
                rows = rows if s == 0 else inputs(s)
                thetas, theta_dots, grads, grad_dots = ([np.asarray(r[i], dtype=float) for r in rows]
                                                        for i in range(4))
                directions, dots, states = self.step_many_tangent(states, thetas, theta_dots, grads, grad_dots)
                if at is not None and (marks is None or s + 1 in marks) and at(s + 1, directions, dots):
                    break
            return ([np.asarray(d, dtype=float) for d in directions], [np.asarray(d, dtype=float) for d in dots])

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
        """Nothing is declared: :meth:`measured_decay` measures it."""
        return None

    # -- derivatives of the replay -------------------------------------------------------

    def derivative(self, steps: int, inputs: Callable, tangents: Callable) -> List[np.ndarray]:
        """d/dt F after ``steps`` steps at the history ``inputs(s) = (theta, gradient)`` moved by t
        times each of the tangent streams ``tangents(s) = [(theta_dot, gradient_dot), ...]``: one
        derivative per stream, by forward mode or by differences (see the module)."""
        if self.derivatives == "forward":
            def rows(s):
                theta, g = inputs(s)
                return [(theta, dt, g, dg) for dt, dg in tangents(s)]

            return self.tangent_lockstep(steps, rows)[1]
        return self._differences(steps, inputs, tangents)

    def _differences(self, steps, inputs, tangents, newest: Optional[int] = None,
                     judged: Optional[Sequence[int]] = None) -> List[np.ndarray]:
        """Central differences per tangent stream, the step per component (elementwise) or global,
        refined over :data:`DELTAS` until the Richardson estimates agree.  The steps are sized by
        the largest tangent over the ``newest`` last steps (all by default): older history may move
        more, where its weight has decayed.  ``judged``: the streams whose error decides the
        refinement and is recorded (all by default)."""
        streams = len(tangents(0))
        judged = list(range(streams)) if judged is None else list(judged)
        first_sized = 0 if newest is None else max(steps - int(newest), 0)
        reach: List[Any] = [None] * (2 + 2 * streams)        # max |theta_i|, |g_i|, then each stream's two tangents
        for s in range(steps):
            theta, g = inputs(s)
            parts = [theta, g] + ([x for pair in tangents(s) for x in pair] if s >= first_sized else [])
            for i, x in enumerate(parts):
                a = np.abs(np.asarray(x, dtype=float))
                reach[i] = a if reach[i] is None else np.maximum(reach[i], a)
        theta_scale = np.maximum(reach[0], 1e-3 * max(float(np.max(reach[0])), 1.0))
        g_scale = np.maximum(reach[1], max(1e-8 * float(np.max(reach[1])), 1e-300))
        scales = []
        for j in range(streams):
            dtheta, dg = reach[2 + 2 * j], reach[3 + 2 * j]
            theta_j, g_j = theta_scale, g_scale
            if not self.elementwise:
                theta_j, g_j = float(np.max(theta_scale)), float(np.max(g_scale))
                dtheta, dg = float(np.max(dtheta)), float(np.max(dg))
            with np.errstate(divide="ignore", invalid="ignore"):
                c = np.minimum(np.where(dtheta > 0, theta_j / np.where(dtheta > 0, dtheta, 1), np.inf),
                               np.where(dg > 0, g_j / np.where(dg > 0, dg, 1), np.inf))
            scales.append(np.where(np.isfinite(c), c, 1.0))
        chosen: Optional[List[List[Any]]] = None
        for delta in DELTAS:
            ts = [t for h in (delta, delta / 2, delta / 4) for t in (h, -h)]

            def rows(s, ts=ts):
                theta, g = inputs(s)
                out: List[Any] = []
                for (dt, dg), c in zip(tangents(s), scales):
                    out.extend((theta + (t * c) * dt, g + (t * c) * dg) for t in ts)
                return out

            values = self.lockstep(steps, rows)
            result = [list(_richardson(values[6 * j: 6 * j + 6], delta, c)) for j, c in enumerate(scales)]
            if chosen is not None:
                # a finer step must agree with the coarser one within the coarser one's error: where
                # it does not, the replay is not smooth at these scales (a kink, low precision inside)
                jump = max(float(np.max(np.abs(result[j][0] - chosen[j][0]))) for j in judged)
                if jump > 10 * max(chosen[j][1] for j in judged) + NOISE * max(chosen[j][2] for j in judged):
                    for j in judged:
                        chosen[j][1] = max(chosen[j][1], jump)
                    break
            size = max(float(np.max(np.abs(result[j][0]))) for j in judged)
            error = max(result[j][1] for j in judged)
            previous = None if chosen is None else max(chosen[j][1] for j in judged)
            if previous is None or error < previous:
                chosen = result
            if (size == 0 or error <= DIFFERENCE_TARGET * size or error >= ROUGH * size
                    or error <= NOISE * max(result[j][2] for j in judged)):
                break          # converged, rounding-limited, or not converging (a smaller step cures no kink)
        assert chosen is not None           # DELTAS is not empty: the loop ran
        for j in judged:
            self._record(*chosen[j])
        return [r[0] for r in chosen]

    # -- the limit: the stationary history direction, one HVP ----------------------

    def limit_direction(self, theta, gradient):
        """F = lim F^(n) at the constant history: one replay, read at N = limit_n, 2 limit_n, ... until
        it changes by at most 1e-13 of itself over a doubling (or ``max_limit_n``)."""
        g = np.asarray(gradient.value if hasattr(gradient, "value") else gradient(theta), dtype=float)
        checkpoints = _doublings(self.limit_n, self.max_limit_n)
        wanted, seen = set(checkpoints), {}

        def at(T, directions):
            N = T - 1
            seen[N] = np.asarray(directions[0], dtype=float).copy()
            earlier = [m for m in seen if m < N]
            return bool(earlier) and _relative_change(seen[N], seen[max(earlier)]) <= 1e-13

        out = self.lockstep(checkpoints[-1] + 1, lambda s: [(theta, g)], at=at, marks={n + 1 for n in wanted})
        return out[0]

    def stationary_sums(self, theta, gradient, settle: float = LIMIT_SETTLE,
                        longest: Optional[int] = None) -> StationarySums:
        """S_1 and S_2 (see :class:`StationarySums`) at N doubling from ``limit_n`` until S_1 settles
        within ``settle`` and S_2 within :data:`DECAY_SETTLE`, or N reaches ``longest``
        (``max_limit_n``).  The last result is kept: the memory measurement and the limit share it."""
        g = np.asarray(gradient.value if hasattr(gradient, "value") else gradient(theta), dtype=float)
        theta = np.asarray(theta, dtype=float)
        longest = int(self.max_limit_n if longest is None else min(longest, self.max_limit_n))
        key = (hashlib.sha1(theta.tobytes() + g.tobytes()).hexdigest(), settle, longest, self.derivatives,
               repr(self.layout))
        cached = self._diagnostics.get("stationary")
        if cached is not None and cached[0] == key:
            return cached[1]
        self._check_repeatable(theta, g)
        F = np.asarray(self.limit_direction(theta, gradient), dtype=float)
        HF = np.asarray(jvp(gradient, theta, F)[1], dtype=float)
        checkpoints = _doublings(self.limit_n, longest)
        history: dict = {}

        def settled(N, S1, S2, error):
            history[N] = (S1, S2)
            earlier = [m for m in history if m < N]
            if not earlier:
                return None
            S1_old, S2_old = history[max(earlier)]
            result = StationarySums(N, S1, S2, _relative_change(S1, S1_old), _relative_change(S2, S2_old), error,
                                    settle)
            return result

        result = None
        if self.derivatives == "forward":
            wanted = set(checkpoints)
            found = {}

            def at(T, directions, dots):
                N = T - 1
                A, B, C = dots
                out = settled(N, N * A - B, (N * N) * A - (2 * N) * B + C, 0.0)
                found["result"] = out
                return out is not None and out.settled and out.decays

            self.tangent_lockstep(
                checkpoints[-1] + 1,
                lambda s: [(theta, F, g, HF), (theta, s * F, g, s * HF), (theta, (s * s) * F, g, (s * s) * HF)],
                at=at, marks={n + 1 for n in wanted})
            result = found.get("result")
        else:
            for N in checkpoints:
                self._diagnostics.update(error=0.0, scale=0.0)     # each N's derivative stands alone
                S1, S2 = self._differences(
                    N + 1, lambda s: (theta, g),
                    lambda s, N=N: [((N - s) * F, (N - s) * HF), ((N - s) ** 2 * F, (N - s) ** 2 * HF)],
                    newest=self.limit_n, judged=(0,))
                result = settled(N, S1, S2, self.derivative_error)
                if result is not None and result.settled and result.decays:
                    break
        if result is None:           # a single checkpoint: nothing to compare with
            S1, S2 = history[checkpoints[-1]]
            result = StationarySums(checkpoints[-1], S1, S2, np.inf, np.inf, self.derivative_error, settle)
        self._diagnostics["stationary"] = (key, result)
        return result

    def measured_decay(self, theta, gradient) -> Tuple[bool, str]:
        """(decays, reason): Assumption 3.1 measured by S_2 along the stationary direction."""
        result = self.stationary_sums(theta, gradient)
        return result.decays, result.reason()

    def limit_correction(self, theta, gradient, lr, tol, max_history):
        """M(theta) = h lim_N S_1(N) (see the module): (M, N, settled, the relative change of M
        from N/2 to N).  Settled means that change and the derivatives' estimated error are both
        below ``tol`` (at least 1e-9); otherwise a warning says how far off M may be."""
        settle = max(tol, LIMIT_SETTLE)
        result = self.stationary_sums(theta, gradient, settle, max_history)
        if not result.decays:
            raise MemlessError(f"{self.label}: the limit correction does not exist: memory does not decay "
                               f"({result.reason()}); outside the theory, only M^(n) at a finite n is defined")
        if result.error > settle:
            warnings.warn(f"{self.label}: the limit correction's difference quotients have an estimated error of "
                          f"{result.error:.1e} of |M|, above the tolerance {settle:.0e}: M may be off by about that "
                          "much (not converged)", DerivativeWarning, stacklevel=4)
        return lr * result.S1, result.n, result.settled, max(result.change1, result.error)

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
    """Gradients move by H v_k (the loss's HVP); the optimizer's arithmetic by forward mode or differences."""
    box = replay.optimizer
    tangent = np.asarray(tangent, dtype=float)
    stack = np.asarray(stack, dtype=float)
    gradients = [np.asarray(replay.gradient(theta), dtype=float) for theta in stack]
    box._check_repeatable(stack[0], gradients[0])
    moves = [np.asarray(jvp(replay.gradient, theta, t)[1], dtype=float) if np.any(t) else np.zeros_like(t)
             for theta, t in zip(stack, tangent)]
    n = len(stack) - 1
    return box.derivative(n + 1, lambda s: (stack[n - s], gradients[n - s]),
                          lambda s: [(tangent[n - s], moves[n - s])])[0]


def _richardson(values, delta, c):
    """(the derivative, its estimated error, the rounding error of the differences) from the six
    replays at t = +-delta, +-delta/2, +-delta/4 along the direction scaled by ``c`` (a number,
    or one per component): central differences extrapolated twice (error O(delta^6)).  The error
    estimate is the usual one for the once-extrapolated value at delta/2, max |R2 - R1| / 15."""
    steps = (delta, delta / 2, delta / 4)
    D = [(values[2 * i] - values[2 * i + 1]) / (2 * h * c) for i, h in enumerate(steps)]
    R1, R2 = (4 * D[1] - D[0]) / 3, (4 * D[2] - D[1]) / 3
    estimate = (16 * R2 - R1) / 15
    size = np.max(np.abs(np.stack(values)), axis=0)
    floor = float(np.max(np.finfo(float).eps * size / (steps[-1] * np.asarray(c, dtype=float))))
    return estimate, float(np.max(np.abs(R2 - R1))) / 15, max(floor, 1e-300)


defjvp(_replayed, _replayed_jvp, None)


# ----------------------------------------------------------------------------
# Adapters
# ----------------------------------------------------------------------------


class StepFunction(BlackBox):
    """A plain Python step ``step(grads, params, state) -> (direction, state)`` with
    ``init(params) -> state`` (NumPy in, NumPy out; theta_next = theta - h direction).
    Its derivatives are differences; ``elementwise=True`` declares that each output number
    depends only on the same number of the inputs (then each component gets its own step)."""

    def __init__(self, step: Callable, init: Callable, name: str = "step-function", limit_n: int = 200,
                 elementwise: bool = False):
        if not callable(step) or not callable(init):
            raise MemlessError("StepFunction needs callables step(grads, params, state) and init(params)")
        super().__init__(derivatives="differences")
        self.step_function, self.init_function, self.name, self.limit_n = step, init, name, _count(limit_n, "limit_n")
        self.elementwise = bool(elementwise)

    def start(self, theta):
        return self.init_function(theta)

    def step(self, state, theta, gradient):
        direction, state = self.step_function(gradient, theta, state)
        return direction, state


def _count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= int(value) <= 1 << 20:
        raise MemlessError(f"{name} must be an integer in 1..{1 << 20}, got {str(value)[:40]!r}")
    return int(value)


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
#: torch.optim classes whose step carries torch.autograd.forward_ad tangents exactly (each checked
#: against central differences and, where memless has one, the built-in, in tests/test_blackbox.py),
#: with the keyword arguments forward mode runs them with (a user's own value wins).  SGD's first
#: momentum step clones a detached gradient, so memless starts its buffer at zero instead (the same
#: numbers when dampening = 0; with dampening, differences).  RAdam's foreach path gives NaN tangents
#: in its first five (unrectified) steps.  Adafactor drops tangents; Muon casts
#: to bfloat16; LBFGS needs a closure: differences (or not at all).
FORWARD_TORCH = {"SGD": {"foreach": True}, "Adam": {"foreach": True}, "AdamW": {"foreach": True},
                 "RMSprop": {"foreach": True}, "Adagrad": {"foreach": True}, "Adamax": {"foreach": True},
                 "NAdam": {"foreach": True}, "RAdam": {"foreach": False}, "Adadelta": {"foreach": True},
                 "ASGD": {"foreach": False}, "Rprop": {"foreach": False}}


class TorchOptimizer(BatchedBlackBox):
    """A torch.optim optimizer class and its keyword arguments (``lr`` is memless's h: the
    class runs at lr = 1 and F is the change it makes, which is h times F for the optimizers
    whose step is linear in lr -- all of torch.optim's).  Without a layout the parameter is one
    float64 vector; on a loss with a layout (a framework model, a structured loss) each named
    array is its own float64 parameter, as in the model, so torch.optim.Muon sees the matrices.
    The replays run in one optimizer: stacked along a new first axis of each parameter when the
    optimizer acts elementwise (``elementwise``; by default True for torch.optim's elementwise
    classes, :data:`ELEMENTWISE_TORCH`), else as parameter groups.

    ``derivatives="auto"`` (default) differentiates the step exactly with
    ``torch.autograd.forward_ad`` for the classes in :data:`FORWARD_TORCH`, by differences
    otherwise; ``"forward"`` forces forward mode on any class (unverified: a step that detaches
    a tensor loses its tangent silently), ``"differences"`` forces differences.
    """

    def __init__(self, optimizer_class, name: str = "", limit_n: int = 200, elementwise: Optional[bool] = None,
                 derivatives: str = "auto", **kwargs):
        try:
            import torch  # noqa: F401
        except ImportError:
            raise MemlessError("TorchOptimizer needs PyTorch: pip install memless[torch]") from None
        if "lr" in kwargs:
            raise MemlessError("TorchOptimizer: leave lr out; memless's lr is the step size h")
        if not callable(optimizer_class):
            raise MemlessError(f"TorchOptimizer needs a torch.optim optimizer class, got {optimizer_class!r}")
        super().__init__(derivatives=derivatives)
        self.optimizer_class, self.kwargs = optimizer_class, dict(kwargs)
        self.name = name or f"torch.{getattr(optimizer_class, '__name__', 'optimizer')}"
        self.limit_n = _count(limit_n, "limit_n")
        own = str(getattr(optimizer_class, "__module__", "")).startswith("torch.optim")
        self._class_name = getattr(optimizer_class, "__name__", None) if own else None
        if elementwise is None:
            elementwise = self._class_name in ELEMENTWISE_TORCH
        self.elementwise = bool(elementwise)
        self._check_derivatives()

    def forward_support(self) -> Optional[str]:
        name = self._class_name
        if name == "SGD" and self.kwargs.get("momentum", 0) and self.kwargs.get("dampening", 0):
            return "possible"
        return "verified" if name in FORWARD_TORCH else "possible"

    @contextlib.contextmanager
    def forward_mode(self):
        """torch's dual level; torch's own DeprecationWarning about ``torch.jit.script``, raised when its
        forward-mode decompositions first load, is not the user's business and is silenced here."""
        import torch.autograd.forward_ad as fwAD
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=DeprecationWarning)
            with fwAD.dual_level():
                yield

    def _pieces(self, theta):
        return [theta] if self.layout is None else list(self.layout.unflatten(theta).values())

    def _build(self, thetas, forward: bool):
        import torch
        pieces = [self.split(thetas)] if self.elementwise else [self._pieces(theta) for theta in thetas]
        groups = [[torch.tensor(np.array(piece), dtype=torch.float64) for piece in group] for group in pieces]
        kwargs = dict(FORWARD_TORCH.get(self._class_name or "", {}), **self.kwargs) if forward else self.kwargs
        try:
            optimizer = self.optimizer_class([{"params": group} for group in groups], lr=1.0, **kwargs)
        except Exception as exc:
            raise MemlessError(f"{self.name}: the optimizer refused the parameters: {type(exc).__name__}: "
                               f"{exc}") from exc
        if forward and self._class_name == "SGD" and kwargs.get("momentum", 0):
            for group in groups:                 # see FORWARD_TORCH: 0 * mu + g is g exactly
                for p in group:
                    optimizer.state[p]["momentum_buffer"] = torch.zeros_like(p)
        return groups, optimizer, len(thetas)

    def start_many(self, thetas):
        return self._build(thetas, forward=False)

    def start_many_tangent(self, thetas, theta_dots):
        return self._build(thetas, forward=True)

    def _layouts(self, groups, thetas, gradients):
        if self.elementwise:
            return groups[0], self.split(thetas), self.split(gradients)
        return ([p for group in groups for p in group], [piece for theta in thetas for piece in self._pieces(theta)],
                [piece for g in gradients for piece in self._pieces(g)])

    def _after(self, groups, arrays, count):
        if self.elementwise:
            return self.join(arrays, count)
        rows, start = [], 0
        for group in groups:
            rows.append(self.join(arrays[start:start + len(group)], 1))
            start += len(group)
        return np.concatenate(rows)

    def step_many(self, state, thetas, gradients):
        import torch
        groups, optimizer, count = state
        parameters, values, grads = self._layouts(groups, thetas, gradients)
        with torch.no_grad():
            for parameter, value, g in zip(parameters, values, grads):
                parameter.copy_(torch.as_tensor(value))
                parameter.grad = torch.as_tensor(g).clone()
        optimizer.step()
        after = self._after(groups, [p.detach().numpy() for p in parameters], count)
        return list(np.stack(thetas) - after), state

    def step_many_tangent(self, state, thetas, theta_dots, gradients, gradient_dots):
        import torch
        import torch.autograd.forward_ad as fwAD
        groups, optimizer, count = state
        parameters, values, grads = self._layouts(groups, thetas, gradients)
        _, value_dots, grad_dots = self._layouts(groups, theta_dots, gradient_dots)
        with torch.no_grad():
            for parameter, value, dot, g, g_dot in zip(parameters, values, value_dots, grads, grad_dots):
                parameter.copy_(fwAD.make_dual(torch.as_tensor(value), torch.as_tensor(dot)))
                parameter.grad = fwAD.make_dual(torch.as_tensor(g).clone(), torch.as_tensor(g_dot).clone())
        optimizer.step()
        primals, tangents = [], []
        for parameter in parameters:
            unpacked = fwAD.unpack_dual(parameter)
            if unpacked.tangent is None:
                raise OptimizerError(f"{self.name}: its step dropped the forward-mode tangent (a detach inside): "
                                     "use TorchOptimizer(..., derivatives='differences')")
            primals.append(unpacked.primal.detach().numpy())
            tangents.append(unpacked.tangent.detach().numpy())
        after = self._after(groups, primals, count)
        after_dot = self._after(groups, tangents, count)
        return list(np.stack(thetas) - after), list(np.stack(theta_dots) - after_dot), state


class OptaxTransformation(BatchedBlackBox):
    """An optax GradientTransformation: a factory and its keyword arguments
    (``OptaxTransformation(optax.adamw, b1=0.9, weight_decay=0.01)``, built at
    ``learning_rate=1``), or a transformation already built with learning rate 1.
    F is minus its update (params_next = params + update at lr 1 is theta - F).
    The replays run in one jitted, vmapped update, in float64; derivatives are exact
    (``jax.jvp`` of the update: ``derivatives="forward"``, the default).
    """

    elementwise = False
    #: the most steps one jitted scan runs
    BLOCK = 200

    def __init__(self, transformation, name: str = "", limit_n: int = 200, derivatives: str = "auto", **kwargs):
        try:
            import jax  # noqa: F401

            from ..losses import jax as _float64  # noqa: F401  (turns on float64)
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
        super().__init__(derivatives=derivatives)
        try:
            self.transformation = transformation if built else transformation(learning_rate=1.0, **kwargs)
        except Exception as exc:
            raise MemlessError(f"OptaxTransformation: {getattr(transformation, '__name__', transformation)}"
                               f"(learning_rate=1.0, **{kwargs}) raised {type(exc).__name__}: {exc}") from exc
        self.kwargs = dict(kwargs)
        self.name = name or f"optax.{getattr(transformation, '__name__', 'transformation')}"
        self.limit_n = _count(limit_n, "limit_n")
        self._compiled: Any = None
        self._scanned: Any = None
        self._check_derivatives()

    def forward_support(self) -> Optional[str]:
        return "verified"

    def _vmapped(self):
        """The transformation's init and update over a leading replay axis."""
        import jax
        tx = self.transformation
        return jax.vmap(tx.init), jax.vmap(lambda g, state, p: tx.update(g, state, p))

    def _functions(self):
        if self._compiled is None:
            import jax
            init, update = self._vmapped()
            self._compiled = (jax.jit(init), jax.jit(update),
                              jax.jit(lambda p, p_dot: jax.jvp(init, (p,), (p_dot,))),
                              jax.jit(lambda g, g_dot, state, state_dot, p, p_dot:
                                      jax.jvp(update, (g, state, p), (g_dot, state_dot, p_dot))))
        return self._compiled

    def _tree(self, vectors):
        """The replays as the pytree optax sees: one array, or a dict by parameter name."""
        import jax.numpy as jnp
        arrays = [jnp.asarray(a) for a in self.split(vectors)]
        return arrays[0] if self.layout is None else dict(zip(self.layout.shapes, arrays))

    def _flat(self, tree, count):
        return self.join([tree] if self.layout is None else [tree[name] for name in self.layout.shapes], count)

    def _scans(self):
        """Jitted lax.scan runs of BLOCK steps: (state, last updates) -> the same after the block,
        primal and forward mode."""
        if self._scanned is None:
            import jax
            _, update = self._vmapped()

            def primal(carry, x):
                updates, state = update(x[0], carry[0], x[1])
                return (state, updates), None

            def tangent(carry, x):
                (updates, state), (update_dots, state_dot) = jax.jvp(update, (x[0], carry[0], x[2]),
                                                                     (x[1], carry[1], x[3]))
                return (state, state_dot, updates, update_dots), None

            self._scanned = (jax.jit(lambda carry, xs: jax.lax.scan(primal, carry, xs)[0]),
                             jax.jit(lambda carry, xs: jax.lax.scan(tangent, carry, xs)[0]))
        return self._scanned

    def _block_trees(self, inputs, start, length, parts):
        """Steps start .. start + length - 1 of ``inputs`` as pytrees with leading axes (step, replay)."""
        import jax
        rows = [inputs(s) for s in range(start, start + length)]
        count = len(rows[0])
        return [jax.tree.map(lambda leaf: leaf.reshape((length, count) + leaf.shape[1:]),
                             self._tree([np.asarray(r[i], dtype=float) for row in rows for r in row]))
                for i in parts]

    def _run_blocks(self, steps, inputs, at, marks, tangent):
        """The replays in scanned blocks of up to BLOCK steps, stopping at each mark for ``at``."""
        rows = inputs(0)
        count, size = len(rows), int(np.size(rows[0][0]))
        block = max(1, min(self.BLOCK, (1 << 22) // max(count * size * 4, 1)))
        thetas = [np.array(r[0], dtype=float) for r in rows]
        zeros = self._tree([np.zeros_like(t) for t in thetas])
        carry: Tuple[Any, ...]
        parts: Tuple[int, ...]
        if tangent:
            state = self.start_many_tangent(thetas, [np.array(r[1], dtype=float) for r in rows])
            carry = (state[0], state[1], zeros, zeros)
            parts = (2, 3, 0, 1)               # gradient, its tangent, theta, its tangent
        else:
            carry = (self.start_many(thetas), zeros)
            parts = (1, 0)
        run = self._scans()[1 if tangent else 0]
        stops = sorted({int(m) for m in (marks or ()) if 1 <= m <= steps} | {int(steps)})
        done = 0
        for stop in stops:
            while done < stop:
                length = min(block, stop - done)
                carry = run(carry, tuple(self._block_trees(inputs, done, length, parts)))
                done += length
            directions = list(-self._flat(carry[-2 if tangent else 1], count))
            dots = list(-self._flat(carry[3], count)) if tangent else None
            if at is not None and (at(stop, directions, dots) if tangent else at(stop, directions)):
                break
        return (directions, dots) if tangent else directions

    def lockstep(self, steps, inputs, at=None, marks=None):
        if (at is not None and marks is None) or steps < self.BLOCK:
            return super().lockstep(steps, inputs, at, marks)
        return self._run_blocks(steps, inputs, at, marks, tangent=False)

    def tangent_lockstep(self, steps, inputs, at=None, marks=None):
        if (at is not None and marks is None) or steps < self.BLOCK:
            return super().tangent_lockstep(steps, inputs, at, marks)
        return self._run_blocks(steps, inputs, at, marks, tangent=True)

    def start_many(self, thetas):
        return self._functions()[0](self._tree(thetas))

    def step_many(self, state, thetas, gradients):
        updates, state = self._functions()[1](self._tree(gradients), state, self._tree(thetas))
        return list(-self._flat(updates, len(thetas))), state

    def start_many_tangent(self, thetas, theta_dots):
        return self._functions()[2](self._tree(thetas), self._tree(theta_dots))

    def step_many_tangent(self, state, thetas, theta_dots, gradients, gradient_dots):
        state, state_dot = state
        (updates, state), (update_dots, state_dot) = self._functions()[3](
            self._tree(gradients), self._tree(gradient_dots), state, state_dot, self._tree(thetas),
            self._tree(theta_dots))
        count = len(thetas)
        return list(-self._flat(updates, count)), list(-self._flat(update_dots, count)), (state, state_dot)
