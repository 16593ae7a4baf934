"""Modified equations and implicit losses (Section 5.1).

The memoryless iteration ``theta <- theta - h [F(theta) + M(theta)]`` is tracked to
O(h^2) on a fixed horizon by the ODE (backward error analysis)::

    theta' = G1(theta) + h G2(theta),   G1 = -F,   G2 = -(M/h + 1/2 dG1 . G1)

and to O(h) by the plain flow ``theta' = G1``.  Where ``F + M = P grad Ltilde``
the memory has implicitly replaced the loss L by Ltilde.

>>> import memless, numpy as np
>>> eq = memless.modified_equation(memless.get_optimizer("heavy-ball", beta=0.5),
...                                lambda t: (t ** 4).sum() / 4, lr=0.01)
>>> theta = np.array([1.0, 2.0])
>>> g, Hg = theta ** 3, 3 * theta ** 2 * theta ** 3        # grad L and H grad L
>>> np.allclose(eq.rhs(0.0, theta), -g / 0.5 - 0.01 * 1.5 / (2 * 0.5 ** 3) * Hg)
True
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import numpy as np

from .._json import strict
from .._views import Viewable
from ..checks import check_budget, check_flag, check_lr, check_n, check_positive, check_theta, shown
from ..contract.optimizer import MemoryOptimizer, require_optimizer
from ..engine.corrections import correction
from ..engine.objective import LossLike, objective, problem, resolve_loss
from ..errors import DivergenceError, LossError, MemlessError, OptimizerError
from ..numerics.autodiff import jvp
from . import cache, meanings

# ----------------------------------------------------------------------------
# The direction F and the modified equation
# ----------------------------------------------------------------------------


def direction(optimizer: MemoryOptimizer, gradient: Callable, theta, n: Optional[int] = None):
    """F^(n)(theta) at the constant history; ``n=None``: the limit F(theta)."""
    if n is None:
        return optimizer.limit_direction(theta, gradient)
    return optimizer.memoryless_direction(theta, gradient, n)


@dataclass
class ModifiedEquation(Viewable):
    """theta' = G1 + h G2 for one optimizer, loss and learning rate (Section 5.1).

    ``rhs(t, theta)`` and ``flow(t, theta)`` have the signature
    :func:`scipy.integrate.solve_ivp` expects; :meth:`solve` integrates either.
    """

    optimizer: MemoryOptimizer
    loss: Callable = field(repr=False)
    lr: float
    n: Optional[int] = None

    def _parts(self, theta, second_order=True):
        """(F, M, dF . F) at theta (the last two only with ``second_order``)."""
        theta = check_theta(theta)
        obj = objective(self.loss, theta)
        F = np.asarray(direction(self.optimizer, obj.frozen(theta), theta, self.n), dtype=float)
        if not second_order:
            return F, None, None
        _, dF_F = jvp(lambda x: direction(self.optimizer, obj.gradient, x, self.n), theta, F)
        M = correction(self.optimizer, obj, theta, self.lr, self.n)
        return F, M, np.asarray(dF_F, dtype=float)

    def G1(self, theta) -> np.ndarray:
        """-F(theta)."""
        return -self._parts(theta, second_order=False)[0]

    def G2(self, theta) -> np.ndarray:
        """-(M/h + 1/2 dG1 . G1) = -(M/h + 1/2 dF . F)."""
        _, M, dF_F = self._parts(theta)
        return -(M / self.lr + 0.5 * dF_F)

    def rhs(self, t: float, theta) -> np.ndarray:
        """G1 + h G2: tracks the memoryless iteration with error O(h^2)."""
        F, M, dF_F = self._parts(theta)
        return -F - M - 0.5 * self.lr * dF_F

    def flow(self, t: float, theta) -> np.ndarray:
        """G1 alone: the plain flow theta' = -F, error O(h)."""
        return self.G1(theta)

    def iterate(self, theta, steps: int, *, corrected: bool = True) -> np.ndarray:
        """The memoryless iteration this equation models, theta <- theta - h [F + M], (steps + 1, d).

        With ``n=None`` both F and M are the limits (a momentum optimizer's F^(n)
        without bias correction differs from F by beta^n: see
        :func:`memless.trajectory` for the step-indexed iteration).
        """
        theta = check_theta(theta)
        steps = check_n(steps, allow_none=False, name="steps")
        corrected = check_flag(corrected, "corrected")
        check_budget(f"iterate(steps={steps})", steps=steps, corrections=steps if corrected else 0,
                     nbytes=(steps + 1) * theta.size * 8)
        path = [theta]
        for k in range(steps):
            try:
                F, M, _ = self._parts(theta, second_order=False) if not corrected else self._parts_first(theta)
            except LossError as exc:
                raise DivergenceError(f"the memoryless iteration left the region where the loss is finite at "
                                      f"step {k} (lr={self.lr:g}); use a smaller lr") from exc
            theta = theta - self.lr * (F if M is None else F + M)
            if not np.all(np.isfinite(theta)) or np.max(np.abs(theta)) > 1e100:
                raise DivergenceError(f"the memoryless iteration diverged at step {k + 1} (lr={self.lr:g}); "
                                      "use a smaller lr")
            path.append(theta)
        return np.array(path)

    def _parts_first(self, theta):
        obj = objective(self.loss, theta)
        F = np.asarray(direction(self.optimizer, obj.frozen(theta), theta, self.n), dtype=float)
        return F, correction(self.optimizer, obj, theta, self.lr, self.n), None

    def solve(self, theta, steps: int, *, corrected: bool = True, rtol: float = 1e-11,
              atol: float = 1e-13) -> np.ndarray:
        """theta(k h) for k = 0..steps, shape (steps + 1, d), by :func:`scipy.integrate.solve_ivp` (DOP853)."""
        theta = check_theta(theta)
        steps = check_n(steps, allow_none=False, name="steps")
        corrected = check_flag(corrected, "corrected")
        rtol, atol = check_positive(rtol, "rtol"), check_positive(atol, "atol")
        budget = SOLVE_EVALUATIONS_PER_STEP * steps + 1000
        check_budget(f"solve(steps={steps})", corrections=budget if corrected else 0,
                     steps=0 if corrected else budget, nbytes=(steps + 1) * theta.size * 8)
        from scipy.integrate import solve_ivp  # imported here: it is slow to import
        times = self.lr * np.arange(steps + 1)
        right = self.rhs if corrected else self.flow
        count = [0]

        def fun(t, y):
            count[0] += 1
            if count[0] > budget:
                raise _Stiff()
            return right(t, y)

        try:
            with np.errstate(all="ignore"):
                solution = solve_ivp(fun, (0.0, times[-1]), theta, method="DOP853", t_eval=times,
                                     rtol=rtol, atol=atol)
        except _Stiff:
            raise MemlessError(f"the modified equation at lr={self.lr:g} needed more than {budget} evaluations "
                               f"({SOLVE_EVALUATIONS_PER_STEP} per step of h) to integrate {steps} steps: it is "
                               "stiff there, far outside the first-order range; use a smaller lr, or iterate()") from None
        except LossError as exc:
            raise DivergenceError(f"the modified equation's solution left the region where the loss is finite "
                                  f"(lr={self.lr:g}): {exc}") from exc
        if not solution.success or solution.y.shape[1] != steps + 1:
            raise MemlessError(f"the modified equation could not be integrated to t={times[-1]:g}: "
                               f"{solution.message}")
        return solution.y.T


#: the most right-hand-side evaluations solve() spends per step of h (DOP853 takes 12 a step; a
#: smooth solution needs far fewer than one step per h): beyond it the equation is stiff there
SOLVE_EVALUATIONS_PER_STEP = 200


class _Stiff(Exception):
    """solve() ran past its evaluation budget."""


def modified_equation(optimizer: MemoryOptimizer, loss: LossLike, lr: float,
                      n: Optional[int] = None) -> ModifiedEquation:
    """The modified equation theta' = G1 + h G2 of ``optimizer`` on ``loss`` at learning rate ``lr``.

    ``loss``: a callable or a reference-loss name.  ``n=None`` (default) uses the limit F
    and M (the long-run iteration); an integer n freezes the step index.  See
    :class:`ModifiedEquation`.
    """
    optimizer, loss, _, _ = problem(optimizer, loss, need_theta=False)
    return ModifiedEquation(optimizer, loss, check_lr(lr), check_n(n))


# ----------------------------------------------------------------------------
# Implicit losses: is F + M a preconditioned gradient field?
# ----------------------------------------------------------------------------


@dataclass
class ImplicitLossCheck(Viewable):
    """What :func:`implicit_loss` found at a point."""

    optimizer: str
    loss: Optional[Callable] = field(repr=False)   #: Ltilde, or None where there is none
    formula: str
    regime: str                 #: "exact", "eps -> 0", ... or "none"
    asymmetry: float            #: |u.Jv - v.Ju| / (|u.Jv| + |v.Ju|) of w = (F + M)/P: 0 for a gradient field
    residual: float             #: |P grad Ltilde - (F + M)| / |F + M| (nan without Ltilde)
    curl_free: bool             #: asymmetry below ``tol``
    note: str = ""

    @property
    def equation(self) -> str:
        """"Ltilde = ..." with a leading condition kept in front: "as eps -> 0 (...): Ltilde = L + ..."."""
        condition, colon, rest = self.formula.partition(": ")
        if colon and rest.startswith("L"):
            return f"{condition}: Ltilde = {rest}"
        return f"Ltilde = {self.formula}"

    def summary(self) -> str:
        if self.loss is None:
            return f"{self.optimizer}: no implicit loss ({self.note}); asymmetry of (F + M)/P {self.asymmetry:.1e}"
        return (f"{self.optimizer}: {self.equation} [{self.regime}]; asymmetry {self.asymmetry:.1e}, "
                f"residual {self.residual:.1e}")


def _symmetric_part_test(field_, theta, rng, pairs=3, delta=1e-5):
    """Largest relative |u.Jv - v.Ju| of field_'s Jacobian over random pairs (central differences)."""
    worst = 0.0
    scale = max(1.0, float(np.max(np.abs(theta))))
    for _ in range(pairs):
        u, v = rng.normal(size=theta.size), rng.normal(size=theta.size)
        step = delta * scale
        Jv = (field_(theta + step * v) - field_(theta - step * v)) / (2 * step)
        Ju = (field_(theta + step * u) - field_(theta - step * u)) / (2 * step)
        a, b = float(u @ Jv), float(v @ Ju)
        denominator = abs(a) + abs(b)
        if denominator > 0:
            worst = max(worst, abs(a - b) / denominator)
    return worst


def implicit_loss(optimizer: MemoryOptimizer, loss: LossLike, theta, lr: float, *, tol: float = 1e-5,
                  seed: int = 0) -> ImplicitLossCheck:
    """The implicit loss Ltilde of ``optimizer`` (F + M = P grad Ltilde + lambda theta), checked at ``theta``.

    The optimizer declares it for the regime that holds at ``theta``
    (:func:`memless.studies.meanings.implicit_loss`); lambda is a decoupled weight decay kept
    apart from the gradient field (0 for most optimizers).  The check: w = (F + M - lambda
    theta)/P must have a symmetric Jacobian (curl-free), tested with central-difference
    Jacobian-vector products along random pairs u, v (no d x d matrix); and P grad Ltilde
    + lambda theta must equal F + M.  An optimizer that declares no implicit loss gets the
    curl test with P = 1 and ``loss=None``.

    >>> import memless, numpy as np
    >>> check = memless.implicit_loss(memless.get_optimizer("heavy-ball", beta=0.5),
    ...                               lambda t: (t ** 4).sum() / 4 + t[0] * t[1], np.array([0.5, 0.2]), lr=0.01)
    >>> check.curl_free, check.residual < 1e-12
    (True, True)
    """
    optimizer, loss, theta, _ = problem(optimizer, loss, theta)
    lr = check_lr(lr)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise MemlessError(f"seed must be an integer >= 0, got {shown(seed)}")
    tol = check_positive(tol, "tol")
    obj = objective(loss, theta)
    declared = meanings.implicit_loss(optimizer, obj.loss, lr, gradient=obj.gradient(theta))
    decay = 0.0 if declared is None else float(declared.decay)

    def step(x):
        frozen = obj.frozen(x)
        F = np.asarray(direction(optimizer, frozen, x), dtype=float)
        M = correction(optimizer, obj, x, lr)
        return F + M, frozen.value

    def preconditioner(x, g):
        if declared is None:
            return 1.0
        return np.asarray(declared.preconditioner(x, g), dtype=float)

    def w(x):
        total, g = step(x)
        return (total - decay * x) / preconditioner(x, g)

    with np.errstate(all="ignore"):
        asymmetry = _symmetric_part_test(w, theta, np.random.default_rng(seed))
        residual = float("nan")
        if declared is not None:
            total, g = step(theta)
            predicted = preconditioner(theta, g) * np.asarray(objective(declared.loss, theta).gradient(theta)) \
                + decay * theta
            residual = float(np.linalg.norm(predicted - total) / max(float(np.linalg.norm(total)), 1e-300))
    name = optimizer.label
    if declared is None:
        note = ("the optimizer declares none" if not meanings.declares_implicit_loss(optimizer)
                else "the optimizer declares none with these hyperparameters")
        return ImplicitLossCheck(name, None, "", "none", asymmetry, residual, bool(asymmetry <= tol), note)
    curl_free = bool(asymmetry <= tol)
    note = "" if curl_free else (f"(F + M - lambda theta)/P is not curl-free here (asymmetry {asymmetry:.1e}): the implicit loss holds "
                                 f"only in its regime, {declared.regime}")
    return ImplicitLossCheck(name, declared.loss, declared.formula, declared.regime, asymmetry, residual,
                             curl_free, note)


# ----------------------------------------------------------------------------
# A summary for reports and the CLI
# ----------------------------------------------------------------------------


@dataclass
class ModifiedSummary(Viewable):
    """What ``python -m memless modified NAME`` shows: the ODE, the implicit loss, and their check."""

    optimizer: str
    hyperparameters: dict
    loss: str
    lr: float
    theta: list
    G1_norm: float               #: |G1| = |F| at the start
    hG2_norm: float              #: |h G2| at the start: the size of the memory's modification
    implicit: ImplicitLossCheck
    lrs: list = field(default_factory=list)
    errors_ode: list = field(default_factory=list)       #: max |ODE - memoryless iteration| per lr
    errors_flow: list = field(default_factory=list)      #: max |plain flow - memoryless iteration| per lr
    order_ode: float = float("nan")
    order_flow: float = float("nan")
    horizon: float = 0.0
    caveats: list = field(default_factory=list)
    #: where the check ran: "yours", or "tamed: ..." with the reason
    check_setting: str = ""

    def to_dict(self) -> dict:
        data = asdict(self)
        data["implicit"].pop("loss", None)
        data["implicit"]["has_loss"] = self.implicit.loss is not None
        return strict(data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def summarize(optimizer: MemoryOptimizer, loss: Optional[LossLike] = None, lr: float = 1e-3, *, theta=None,
              steps: int = 40) -> ModifiedSummary:
    """Modified equation and implicit loss of ``optimizer`` on a loss, with a measured check.

    The check integrates the ODE and the plain flow for ``steps`` steps at ``2 lr`` and
    ``lr`` (same horizon) and fits their orders against the memoryless iteration -- at the
    user's settings where |h G2| <= 0.3 |G1| and nothing diverges, otherwise at the tamed
    optimizer (:meth:`MemoryOptimizer.tamed`) on the ``curvy`` reference loss at lr 0.02
    and 0.01, where the first-order picture holds; ``check_setting`` says which, and why.
    """
    require_optimizer(optimizer)
    lr = check_lr(lr)
    steps = check_n(steps, allow_none=False, name="steps")
    if steps < 2:
        raise MemlessError(f"steps must be at least 2 (the check compares two learning rates), got {steps}")
    check_budget(f"modified with steps={steps}", steps=4 * steps,
                 corrections=(2 + SOLVE_EVALUATIONS_PER_STEP) * 2 * steps)
    optimizer, loss_fn, theta, loss_name = problem(optimizer, meanings.reference_losses(optimizer)[0] if loss is None else loss,
                                                   theta)
    eq = modified_equation(optimizer, loss_fn, lr)
    F, M, dF_F = eq._parts(theta)
    hG2 = -(M + 0.5 * lr * dF_F)
    if not (np.all(np.isfinite(F)) and np.all(np.isfinite(hG2))):
        which = "its direction F" if not np.all(np.isfinite(F)) else "its correction (h G2)"
        raise OptimizerError(f"{optimizer.label}: {which} is not finite at theta={shown(theta)}, where the loss "
                             "and its gradient are finite: the optimizer's own code returns NaN or inf there")
    implicit = implicit_loss(optimizer, loss_fn, theta, lr)
    summary = ModifiedSummary(optimizer.label, dict(optimizer.hyper), loss_name, lr, theta.tolist(),
                              float(np.linalg.norm(F)), float(np.linalg.norm(hG2)), implicit)
    ratio = summary.hG2_norm / summary.G1_norm if summary.G1_norm else 0.0
    why = ""
    if ratio <= 0.3:
        _check(summary, optimizer, loss_fn, theta, (2 * lr, lr), steps)
        settled = all(np.isfinite(summary.errors_ode)) and (
            max(summary.errors_ode) < 1e-12 or (abs(summary.order_ode - 2) <= 0.3 and abs(summary.order_flow - 1) <= 0.3))
        if settled:
            summary.check_setting = "yours"
        else:
            why = (f"at your settings the check gave orders {summary.order_ode:.2f}/{summary.order_flow:.2f}"
                   if all(np.isfinite(summary.errors_ode)) else "at your settings the iteration diverged")
    else:
        why = (f"|h G2| is {ratio:.3g} times |G1| at the start: h is outside the range where the first-order "
               "modified equation holds")
        summary.caveats.append(why + f"; at these hyperparameters expect it below lr ~ {lr * 0.3 / ratio:.2g}")
    if summary.check_setting != "yours":
        evidence = meanings.evidence_loss(optimizer)
        f, start, _ = resolve_loss(evidence)
        summary.lrs, summary.errors_ode, summary.errors_flow = [], [], []
        tamed = optimizer.tamed()
        _check(summary, tamed, f, start, (0.02, 0.01), steps)
        summary.check_setting = f"tamed: {tamed!r} on {evidence} ({why})"
    if not implicit.curl_free and implicit.loss is not None:
        summary.caveats.append(implicit.note)
    return summary


#: the fields of a ModifiedSummary that its check fills, and their kinds (kept between command-line runs)
CHECK_SCHEMA = {"lrs": "numbers", "errors_ode": "numbers", "errors_flow": "numbers", "horizon": "number",
                "order_ode": "number", "order_flow": "number", "caveats": "strs"}


def _check(summary, optimizer, loss_fn, theta, lrs, steps):
    """Fill the summary's check: errors of the ODE and of the plain flow against the memoryless iteration
    (kept on a reference loss where :data:`memless.studies.cache.DIRECTORY` is set, and reused)."""
    stored = cache.on_reference_loss(optimizer, loss_fn, theta,
                                     f"modified check|{list(map(float, lrs))!r}|{int(steps)}")
    kept = cache.load(stored, CHECK_SCHEMA, lambda v: len(v["lrs"]) == len(v["errors_ode"]) == len(v["errors_flow"])
                      == len(lrs))
    before = len(summary.caveats)
    if kept is not None:
        summary.lrs += kept["lrs"]
        summary.errors_ode += kept["errors_ode"]
        summary.errors_flow += kept["errors_flow"]
        summary.caveats += kept["caveats"]
        summary.horizon, summary.order_ode, summary.order_flow = kept["horizon"], kept["order_ode"], kept["order_flow"]
        return
    _compute_check(summary, optimizer, loss_fn, theta, lrs, steps)
    cache.store(stored, {"lrs": summary.lrs[-len(lrs):], "errors_ode": summary.errors_ode[-len(lrs):],
                         "errors_flow": summary.errors_flow[-len(lrs):], "caveats": summary.caveats[before:],
                         "horizon": summary.horizon, "order_ode": summary.order_ode,
                         "order_flow": summary.order_flow})


def _compute_check(summary, optimizer, loss_fn, theta, lrs, steps):
    from .trajectories import fitted_order

    summary.horizon = steps * lrs[-1]
    for h, n in zip(lrs, (steps // 2, steps)):
        e = modified_equation(optimizer, loss_fn, h)
        summary.lrs.append(h)
        try:
            iterates = e.iterate(theta, n)
            ode = e.solve(theta, n, rtol=1e-10, atol=1e-12)
            flow = e.solve(theta, n, corrected=False, rtol=1e-10, atol=1e-12)
        except MemlessError as exc:      # diverged, or left the region where the loss is finite
            summary.errors_ode.append(float("nan"))
            summary.errors_flow.append(float("nan"))
            summary.caveats.append(f"{optimizer.label}: {exc}")
            continue
        summary.errors_ode.append(float(np.max(np.abs(ode - iterates))))
        summary.errors_flow.append(float(np.max(np.abs(flow - iterates))))
    summary.order_ode = fitted_order(summary.lrs, summary.errors_ode)
    summary.order_flow = fitted_order(summary.lrs, summary.errors_flow)
