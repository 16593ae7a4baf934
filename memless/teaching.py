"""Helpers for the tutorials in ``tutorials/``: check a learner's answer, optional plots.

``check(exercise, answer)`` compares the answer with an independent computation
by memless (never with a stored number) and says whether it is right, with a hint
when it is not: a shape error, a sign error and a wrong magnitude each get their own.
Solutions live in ``tutorials/solutions/`` and come only on request:
``solution(exercise)`` loads one when the environment sets ``MEMLESS_SOLUTIONS=1``, and
otherwise stops the tutorial there, so the learner gets to try first.

>>> from memless import teaching
>>> teaching.check("heavy-ball-correction", lambda beta, h, g, Hg: h * beta / (1 - beta) ** 3 * Hg, quiet=True)
True
>>> teaching.check("heavy-ball-correction", lambda beta, h, g, Hg: h * beta / (1 - beta) ** 2 * Hg, quiet=True)
False
"""
import importlib
import os
import sys
from typing import Optional

import autograd.numpy as anp
import numpy as np

from .errors import MemlessError

# ----------------------------------------------------------------------------
# Exercises: each compares the learner's answer with memless on random cases
# ----------------------------------------------------------------------------


def _test_loss(t):
    return 0.5 * (1.5 - 2.0 * t[0] * t[1]) ** 2 + 0.1 * anp.sum(anp.sin(t)) + 0.05 * anp.sum(t ** 4)


def _cases(count=4, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.uniform(0.1, 0.95), 10.0 ** rng.uniform(-4, -2), rng.uniform(-1, 1, size=2)) for _ in range(count)]


def compare(got, expected, hint: str):
    """(ok, feedback) for a numeric answer: right, or which kind of wrong -- a shape error, a sign
    error, a wrong magnitude (the right direction scaled), or a wrong direction -- with ``hint``."""
    expected = np.asarray(expected, dtype=float)
    if got is None:
        return False, f"no answer yet (got None). Hint: {hint}"
    try:
        got = np.asarray(got, dtype=float)
    except (TypeError, ValueError):
        return False, f"expected numbers of shape {expected.shape}, got {type(got).__name__}. Hint: {hint}"
    if got.shape != expected.shape:
        return False, (f"shape error: expected shape {expected.shape}, got {got.shape} -- return the same "
                       f"shape as the gradient (no extra axes, no transposes)")
    if not np.all(np.isfinite(got)):
        return False, f"your answer is not finite: {got}. Hint: {hint}"
    if np.allclose(got, expected, rtol=1e-8, atol=1e-14):
        return True, "right"
    if np.allclose(got, -expected, rtol=1e-8, atol=1e-14):
        return False, f"sign error: your answer is minus the right one. Hint: {hint}"
    norm = float(np.linalg.norm(expected))
    scale = float(got.ravel() @ expected.ravel()) / norm ** 2 if norm else 0.0
    if norm and np.allclose(got, scale * expected, rtol=1e-8, atol=1e-14):
        return False, (f"wrong magnitude: your answer points the right way but is {scale:.4g} times the right "
                       f"size. Hint: {hint}")
    return False, f"wrong direction: expected {expected}, got {got}. Hint: {hint}"


def _heavy_ball_correction(answer):
    """answer(beta, h, g, Hg) -> M for heavy-ball (Section 2)."""
    from . import correction, get_optimizer
    from .engine.objective import Objective
    from .numerics.autodiff import jvp
    obj = Objective(_test_loss)
    for beta, h, theta in _cases():
        g = obj.gradient(theta)
        Hg = jvp(obj.gradient, theta, g)[1]
        expected = correction(get_optimizer("heavy-ball", beta=beta), _test_loss, theta, lr=h)
        ok, feedback = compare(answer(beta, h, g, Hg), expected,
                               "sum_k beta^k k over k >= 1 is beta/(1-beta)^2, F = g/(1-beta), and M adds to F")
        if not ok:
            return False, f"at beta={beta:.3g}, h={h:.2g}: {feedback}"
    return True, "right: M = h beta/(1-beta)^3 H g, the engine agrees on every case"


def _adamw_net_effect(answer):
    """answer(beta1, beta2) -> "regularizing" / "anti-regularizing" for AdamW (eps -> 0)."""
    for beta1, beta2 in [(0.9, 0.999), (0.99, 0.9), (0.5, 0.6), (0.95, 0.8), (0.9, 0.95)]:
        weight = beta1 / (1 - beta1) - beta2 / (1 - beta2)
        expected = "regularizing" if weight > 0 else "anti-regularizing"
        got = answer(beta1, beta2)
        if got != expected:
            return False, (f"at beta1={beta1}, beta2={beta2}: expected {expected!r}, got {got!r}. Hint: compare "
                           "the first-moment weight beta1/(1-beta1) with the second-moment weight beta2/(1-beta2)")
    return True, "right: the larger of beta1/(1-beta1) and beta2/(1-beta2) wins"


def _qhm_optimizer(answer):
    """answer: a MemoryOptimizer class for quasi-hyperbolic momentum with hyperparameters nu, beta."""
    from . import MemoryOptimizer, correction
    if not (isinstance(answer, type) and issubclass(answer, MemoryOptimizer)):
        return False, "expected a memless.MemoryOptimizer subclass (class QHM(memless.MomentumOptimizer): ...)"
    for (beta, h, theta), nu in zip(_cases(), (0.3, 0.7, 0.9, 0.5)):
        try:
            opt = answer(nu=nu, beta=beta)
        except Exception as exc:       # the learner's code: any error is feedback
            return False, f"QHM(nu={nu}, beta={beta:.3g}) raised {type(exc).__name__}: {exc}"
        from .engine.objective import Objective
        from .numerics.autodiff import jvp
        obj = Objective(_test_loss)
        g = obj.gradient(theta)
        expected = h * nu * beta / (1 - beta) * jvp(obj.gradient, theta, g)[1]
        got = correction(opt, _test_loss, theta, lr=h)
        if not np.allclose(got, expected, rtol=1e-8, atol=1e-14):
            return False, (f"at nu={nu}, beta={beta:.3g}: its correction {got} differs from h nu beta/(1-beta) H g "
                           f"= {expected}. Hint: the momentum channel is an EMA, scale b = 1 - beta")
    return True, "right: QHM's memory regularizes with weight nu beta/(1-beta)"


def _memory_numbers(answer):
    """answer(h, beta, rho) -> (first-moment, second-moment) memory numbers of Adam."""
    from . import get_optimizer
    for h, beta, rho in [(1e-3, 0.9, 0.999), (4e-3, 0.5, 0.9), (1e-2, 0.99, 0.95)]:
        adam = get_optimizer("adam", beta1=beta, beta2=rho)
        expected = [h * ch.decay / (1 - ch.decay) for ch in adam.channels() if ch.decay > 0]
        ok, feedback = compare(answer(h, beta, rho), expected, "a channel with decay b remembers about b/(1-b) past "
                               "steps; multiply by the step h; first moment first")
        if not ok:
            return False, f"at h={h}, beta={beta}, rho={rho}: {feedback}"
    return True, "right: h beta/(1-beta) and h rho/(1-rho); the second is ~1 at Figure 1's settings"


def _muon_memory_weight(answer):
    """answer(mu, nesterov) -> w in Muon's limit correction M = h w r d polar(G)[H F]."""
    from . import correction, get_optimizer
    from .engine.objective import Objective
    from .losses import REFERENCE_LOSSES
    from .numerics.autodiff import jvp
    from .numerics.linalg import polar_derivative
    reference = REFERENCE_LOSSES["factorization"]
    layout, theta, h = reference.loss.layout, reference.start, 1e-3
    obj = Objective(reference.loss)
    for mu, nesterov in [(0.95, True), (0.9, False), (0.5, True), (0.8, False)]:
        muon = get_optimizer("muon", momentum=mu, nesterov=nesterov, orthogonalize="polar", weight_decay=0.0,
                             adjust_lr_fn="none").bind(layout)
        F = muon.limit_direction(theta, obj.gradient)
        HF = jvp(obj.gradient, theta, F)[1]
        unit = h * layout.map(lambda name, G, E: polar_derivative(G, E), obj.gradient(theta), HF)
        expected = correction(muon, reference.loss, theta, lr=h)
        try:
            got = answer(mu, nesterov)
            ok = got is not None and np.allclose(float(got) * unit, expected, rtol=1e-8, atol=1e-14)
        except Exception as exc:       # the learner's code: any error is feedback
            return False, f"answer({mu}, {nesterov}) raised {type(exc).__name__}: {exc}"
        if not ok:
            true = float(expected @ unit / (unit @ unit))
            return False, (f"at mu={mu}, nesterov={nesterov}: the engine's M is {true:.6g} h d polar(G)[H F], "
                           f"you gave {got!r}. Hint: Muon is Lion-K with rho1 = mu^2 (nesterov; mu without) "
                           "and rho2 = mu, and Lion-K's weight is rho1/(1-rho2)")
    return True, "right: w = mu^2/(1-mu) with nesterov, mu/(1-mu) without; the engine agrees on every case"


def _heavy_ball_second_order(answer):
    """answer(beta, h, HHg, Tgg) -> M2 for heavy-ball (the term after Eq. 12)."""
    from . import get_optimizer
    from .engine.objective import Objective, problem
    from .engine.second_order import second_order_correction
    from .numerics.autodiff import jvp
    obj = Objective(_test_loss)
    for beta, h, theta in _cases():
        g = obj.gradient(theta)
        Hg = jvp(obj.gradient, theta, g)[1]
        HHg = jvp(obj.gradient, theta, Hg)[1]
        Tgg = jvp(lambda x, g=g: jvp(obj.gradient, x, g)[1], theta, g)[1]
        setup = problem(get_optimizer("heavy-ball", beta=beta), _test_loss, theta)
        expected = second_order_correction(setup.optimizer, obj, theta, h)
        ok, feedback = compare(answer(beta, h, HHg, Tgg), expected,
                               "M2 = h A[M1] + h^2 B[J F] + h^2 C[F] with weights sum k beta^k = beta/(1-beta)^2, "
                               "sum k(k+1)/2 beta^k = beta/(1-beta)^3, sum k^2 beta^k = beta(1+beta)/(1-beta)^3; "
                               "F = g/(1-beta), J = H/(1-beta)")
        if not ok:
            return False, f"at beta={beta:.3g}, h={h:.2g}: {feedback}"
    return True, "right: M2 = h^2 beta(1+beta)/(1-beta)^5 (H^2 g + T[g,g]/2), the engine agrees on every case"


EXERCISES = {
    "heavy-ball-second-order": _heavy_ball_second_order,
    "muon-memory-weight": _muon_memory_weight,
    "memory-numbers": _memory_numbers,
    "heavy-ball-correction": _heavy_ball_correction,
    "adamw-net-effect": _adamw_net_effect,
    "qhm-optimizer": _qhm_optimizer,
}


#: where each exercise's solution lives: (module in tutorials/solutions, name)
SOLUTIONS = {
    "heavy-ball-correction": ("s01_memory_as_modified_loss", "my_correction"),
    "adamw-net-effect": ("s02_lion_vs_adamw", "net_effect"),
    "memory-numbers": ("s03_figure1_and_where_theory_holds", "memory_numbers"),
    "qhm-optimizer": ("s05_write_your_own_optimizer", "QHM"),
    "muon-memory-weight": ("s06_muon", "muon_memory_weight"),
    "heavy-ball-second-order": ("s07_the_next_term", "second_order_correction"),
}


def solutions_requested() -> bool:
    """True when the environment asks for the solutions (``MEMLESS_SOLUTIONS=1``)."""
    return os.environ.get("MEMLESS_SOLUTIONS", "") == "1"


class NotSolved(Exception):
    """An exercise not solved yet, in a notebook: the cell stops with this one line, no traceback."""

    def _render_traceback_(self):        # IPython shows this instead of a traceback
        return [str(self)]


def show_solutions(on: bool = True) -> None:
    """Load the stored solutions from here on (in a notebook: then run the exercise's cell again);
    the same as starting with ``MEMLESS_SOLUTIONS=1``."""
    os.environ["MEMLESS_SOLUTIONS"] = "1" if on else ""
    print("solutions will be loaded: run the exercise's cell again" if on else "solutions will not be loaded")


def _in_notebook() -> bool:
    ipython = sys.modules.get("IPython")
    return ipython is not None and getattr(ipython, "get_ipython", lambda: None)() is not None


def solution(exercise: str):
    """The solution of ``exercise``, checked, if ``MEMLESS_SOLUTIONS=1`` (or after :func:`show_solutions`);
    otherwise stop here with a line saying how to go on -- the tutorial's next cells need a right answer
    (SystemExit in a script; in a notebook :class:`NotSolved`, shown as that line alone)."""
    try:
        module, name = SOLUTIONS[exercise]
    except KeyError:
        raise MemlessError(f"unknown exercise {exercise!r}; available: {', '.join(SOLUTIONS)}") from None
    if not solutions_requested():
        if _in_notebook():
            raise NotSolved(f"Exercise {exercise!r} is not solved yet: fix your answer above and run the cell "
                            "again, or run memless.teaching.show_solutions() to load "
                            f"tutorials/solutions/{module}.py")
        raise SystemExit(f"Exercise {exercise!r} is not solved yet: fix your answer above and run again, or run "
                         f"with MEMLESS_SOLUTIONS=1 to load tutorials/solutions/{module}.py")
    print(f"Loading the solution (MEMLESS_SOLUTIONS=1): tutorials/solutions/{module}.py")
    value = getattr(importlib.import_module(f"solutions.{module}"), name)
    if not check(exercise, value):
        raise MemlessError(f"the stored solution of {exercise!r} fails its check")
    return value


def check(exercise: str, answer, *, quiet: bool = False) -> bool:
    """True if ``answer`` solves ``exercise`` (see :data:`EXERCISES`); prints why, unless ``quiet``."""
    try:
        checker = EXERCISES[exercise]
    except KeyError:
        raise MemlessError(f"unknown exercise {exercise!r}; available: {', '.join(EXERCISES)}") from None
    try:
        ok, message = checker(answer)
    except MemlessError:
        raise
    except Exception as exc:           # the learner's code: any error is feedback, not a crash
        ok, message = False, f"your answer raised {type(exc).__name__}: {exc}"
    if not quiet:
        print(f"{'✓' if ok else '✗'} {exercise}: {message}")
    return ok


# ----------------------------------------------------------------------------
# Optional plots (pip install memless[plot])
# ----------------------------------------------------------------------------


def pyplot():  # -> matplotlib.pyplot or None
    """matplotlib.pyplot with a non-interactive backend, or None when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        print("(matplotlib is not installed: figures are skipped; pip install memless[plot])")
        return None
    if "MPLBACKEND" not in os.environ:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def figures_folder() -> str:
    """Where the tutorials' figures go: ``$MEMLESS_FIGURES``, else ``figures/`` beside the running
    tutorial (``tutorials/figures``), else ``figures/`` in the current folder (a notebook)."""
    if os.environ.get("MEMLESS_FIGURES"):
        return os.environ["MEMLESS_FIGURES"]
    import __main__
    script = getattr(__main__, "__file__", None)
    return os.path.join(os.path.dirname(os.path.abspath(script)), "figures") if script else "figures"


def savefig(fig, name: str, folder: Optional[str] = None) -> str:
    """Save ``fig`` as ``name.png`` in ``folder`` (default :func:`figures_folder`), atomically, and say where."""
    from .show.plot import save
    folder = figures_folder() if folder is None else folder
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{name}.png")
    save(fig, path, dpi=110, bbox_inches="tight")
    print(f"figure saved: {path}")
    return path
