"""What an optimizer's memory does to the loss: measure it (:func:`analyze`),
draw it (:func:`render`), serialize it (:func:`to_json`).

The effect of each memory channel is measured, not looked up: along the
optimizer's own trajectory on a reference loss, the sign of
``<grad N(theta), M_l(theta)>`` where N is the optimizer's sharpness proxy
(``||grad L||^2`` for GD-type methods, ``||grad L||_{1,eps}`` for adaptive ones).
The memoryless step ``-h (F + M)`` changes N by ``-h <grad N, M>`` through the
correction, so a positive sign means memory pushes N down -- it acts like a
penalty on N added to the loss: **regularizing**; negative: **anti-regularizing**.
"""
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

import autograd.numpy as anp
import numpy as np
from autograd import grad as _grad

from .core import MomentumOptimizer
from .errors import DivergenceError
from .engine import history_correction, memory_sum, momentum_terms
from .losses import get_loss
from .problem import check_lr, objective
from .trajectory import _streaming, _history, order_study

EFFECTS = ("regularizing", "anti-regularizing", "none")
NEGLIGIBLE = 1e-6        # |strength| below this is reported as no effect
FIRST_ORDER_LIMIT = 0.1  # memory number h beta/(1-beta) above this: outside the theory's range


@dataclass
class ChannelEffect:
    name: str
    decay: float
    coefficient: Optional[float]      #: b beta/(1-beta)^2, the weight of the channel in M
    memory_number: Optional[float]    #: h beta/(1-beta): must be small for the first-order theory
    effect: str
    strength: float                   #: mean <grad N, M_l> / mean |<grad N, F>|, signed
    size: float                       #: mean |M_l| / |F|
    formula: str = ""


@dataclass
class Analysis:
    optimizer: str
    hyperparameters: Dict
    update_rule: str
    reference: str
    loss: str
    lr: float
    sharpness: str
    channels: List[ChannelEffect]
    net_effect: str
    net_strength: float
    verdict: str
    modified_loss: str
    order: Dict
    memory_ratio: float
    caveats: List[str] = field(default_factory=list)


def _sharpness(obj, kind, eps):
    """N(theta): ||grad L||^2 ("l2") or ||grad L||_{1,eps} ("l1")."""
    if kind == "l1":
        return lambda t: anp.sum(anp.sqrt(obj.gradient(t) ** 2 + eps))
    return lambda t: anp.sum(obj.gradient(t) ** 2)


def _terms(optimizer, obj, theta, lr):
    if isinstance(optimizer, MomentumOptimizer):
        return momentum_terms(optimizer, obj, theta, lr, None)
    return {"memory": history_correction(optimizer, obj, theta, lr, None)[0]}


def _direction(optimizer, obj, theta):
    if isinstance(optimizer, MomentumOptimizer):
        return np.asarray(optimizer.limit_direction(theta, obj.frozen(theta)), dtype=float)
    return np.asarray(optimizer.memoryless_direction(theta, obj.frozen(theta), 10_000), dtype=float)


def stages(points=12):
    """How many times :func:`analyze` calls its ``tick`` (for a progress bar)."""
    return 1 + points + 3


def memory_length(optimizer):
    """1/(1 - beta) for the slowest-decaying channel: how many steps the memory spans."""
    if isinstance(optimizer, MomentumOptimizer):
        decays = [ch.decay for ch in optimizer.channels() if ch.decay > 0]
        return 1.0 / (1.0 - max(decays)) if decays else 1.0
    return float(optimizer.window or 10)


def analyze(optimizer, loss="bilinear", lr=1e-3, *, steps=200, points=12, evidence_steps=None, tick=None):
    """Measure every memory channel's effect along the optimizer's trajectory on a reference loss.

    The evidence (Theorem 3.3) runs ``evidence_steps`` steps at ``lr`` (default: 20 memory
    lengths, clipped to [100, 200] to stay fast), and half / twice as many at 2 lr / lr/2.
    ``tick(label)``, if given, is called after each of :func:`stages` stages.

    >>> import memless
    >>> from memless.report import analyze
    >>> analyze(memless.get_optimizer("heavy-ball", beta=0.5), lr=1e-3).net_effect
    'regularizing'
    """
    tick = tick or (lambda label: None)
    lr = check_lr(lr)
    reference = get_loss(loss)
    obj = objective(reference.loss, reference.start)
    with np.errstate(all="ignore"):
        if isinstance(optimizer, MomentumOptimizer):
            path = _streaming(optimizer, obj, reference.start, lr, steps)
        else:
            path = _history(optimizer, obj, reference.start, lr, steps)
    tick("trajectory")
    eps = float(getattr(optimizer, "eps", 1e-8))
    grad_N = _grad(_sharpness(obj, optimizer.sharpness, eps))

    names, along_M, sizes, along_F, ratios = None, [], [], [], []
    for theta in path[np.linspace(0, steps, points).astype(int)]:
        terms = _terms(optimizer, obj, theta, lr)
        F = _direction(optimizer, obj, theta)
        gN = np.asarray(grad_N(theta), dtype=float)
        names = list(terms)
        along_M.append([float(gN @ terms[k]) for k in names])
        normF = float(np.linalg.norm(F)) or 1.0
        sizes.append([float(np.linalg.norm(terms[k])) / normF for k in names])
        ratios.append(float(np.linalg.norm(sum(terms.values()))) / normF)
        along_F.append(abs(float(gN @ F)))
        tick("channel terms")
    scale = float(np.mean(along_F)) or 1.0
    strengths = np.mean(along_M, axis=0) / scale
    mean_sizes = np.mean(sizes, axis=0)

    decays = {ch.name: ch for ch in optimizer.channels()} if isinstance(optimizer, MomentumOptimizer) else {}
    rows = []
    for name, strength, size in zip(names, strengths, mean_sizes):
        ch = decays.get(name)
        decay = ch.decay if ch else float("nan")
        if ch is not None and ch.decay == 0:
            coefficient = memory = 0.0
        elif ch is not None:
            coefficient = float(ch.b(math.inf)) * memory_sum(ch.decay, None)
            memory = lr * ch.decay / (1 - ch.decay)
        else:
            coefficient = memory = None
        rows.append(ChannelEffect(name, decay, coefficient, memory, _effect(strength, ch),
                                  float(strength), float(size), ch.formula if ch else ""))

    net = float(np.sum(strengths))
    net_effect = _effect(net, None)
    span = memory_length(optimizer)
    if evidence_steps is None:
        evidence_steps = int(min(max(20 * span, 100), 200))
    try:
        study = order_study(optimizer, reference.loss, reference.start, horizon=evidence_steps * lr,
                            lrs=[2 * lr, lr, lr / 2], callback=lambda *result: tick("order study"))
        order = {"corrected": study.order_corrected, "uncorrected": study.order_uncorrected,
                 "lrs": study.lrs, "errors_corrected": study.errors_corrected,
                 "errors_uncorrected": study.errors_uncorrected, "horizon": study.horizon,
                 "memory_lengths": evidence_steps / span, "diverged": None}
    except DivergenceError as exc:
        nan = float("nan")
        order = {"corrected": nan, "uncorrected": nan, "lrs": [2 * lr, lr, lr / 2], "errors_corrected": [nan] * 3,
                 "errors_uncorrected": [nan] * 3, "horizon": evidence_steps * lr,
                 "memory_lengths": evidence_steps / span, "diverged": str(exc)}
    analysis = Analysis(
        optimizer=optimizer._label(), hyperparameters=optimizer.hyper, update_rule=optimizer.update_rule,
        reference=optimizer.reference, loss=reference.name, lr=lr, sharpness=optimizer.sharpness,
        channels=rows, net_effect=net_effect, net_strength=net,
        verdict=_verdict(rows, net_effect, optimizer.sharpness),
        modified_loss=getattr(optimizer, "modified_loss", ""),
        order=order,
        memory_ratio=float(max(ratios)),
    )
    analysis.caveats = _caveats(analysis)
    return analysis


def _effect(strength, channel):
    if channel is not None and channel.decay == 0:
        return "none"
    if not np.isfinite(strength) or abs(strength) < NEGLIGIBLE:
        return "none"
    return "regularizing" if strength > 0 else "anti-regularizing"


def _proxy(sharpness):
    return "||grad L||_{1,eps}" if sharpness == "l1" else "||grad L||^2"


def _describe(row):
    if not np.isfinite(row.decay):          # a generic optimizer: the whole correction in one row
        return f"{row.name} (the whole correction of direction())"
    weight = f", weight b*beta/(1-beta)^2 = {row.coefficient:.4g}" if row.coefficient else ""
    return f"{row.name} (beta = {row.decay:g}{weight})"


def _verdict(rows, net_effect, sharpness):
    active = sorted((r for r in rows if r.effect != "none"), key=lambda r: -abs(r.strength))
    quiet = [r for r in rows if r.decay and r.decay > 0 and r.effect == "none"]
    proxy = _proxy(sharpness)
    if not active:
        why = (f" ({', '.join(r.name for r in quiet)}: the memory term is below {NEGLIGIBLE:g} of the step, "
               "e.g. O(eps) for a smooth sign, exactly 0 for sign)" if quiet else " (no channel has memory)")
        return f"Memory does not measurably change {proxy}{why}: no anti-regularization."
    lead, others = active[0], active[1:]
    if net_effect == "none":
        return f"The channels cancel: {', '.join(_describe(r) for r in active)}."
    does = "penalizes" if net_effect == "regularizing" else "rewards large"
    head = f"Memory {'regularizes' if net_effect == 'regularizing' else 'anti-regularizes'}: it {does} {proxy}."
    against = [r for r in others if r.effect != lead.effect]
    if against:
        return (f"{head} {_describe(lead)} outweighs {', '.join(_describe(r) for r in against)} "
                f"(strengths {lead.strength:+.3g} vs {', '.join(f'{r.strength:+.3g}' for r in against)}).")
    return f"{head} Driven by {', '.join(_describe(r) for r in active)}."


def _caveats(analysis):
    caveats = []
    big = [c for c in analysis.channels if c.memory_number is not None and c.memory_number > FIRST_ORDER_LIMIT]
    for c in big:
        caveats.append(f"channel {c.name}: memory number h*beta/(1-beta) = {c.memory_number:.3g} > "
                       f"{FIRST_ORDER_LIMIT}: lr is beyond the range where the first-order correction holds")
    if analysis.memory_ratio > 0.3:
        caveats.append(f"|M|/|F| reaches {analysis.memory_ratio:.3g} along the trajectory: the correction is "
                       "not small, so the corrected iteration need not track the optimizer")
    evidence = analysis.order
    if evidence["diverged"]:
        caveats.append(f"no evidence: {evidence['diverged']}")
        return caveats
    order = evidence["corrected"]
    if not _exact(evidence, "corrected") and not (np.isfinite(order) and order > 1.5):
        why = ""
        if evidence["memory_lengths"] < 20:
            why = (f"; the horizon spans only {evidence['memory_lengths']:.3g} memory lengths 1/(1-beta), "
                   "so the order may also be pre-asymptotic")
        caveats.append(f"the corrected memoryless iteration shows order {order:.2f}, not 2, on this loss at "
                       f"this lr{why}: treat the verdict as qualitative")
    return caveats


def _exact(order, which):
    errors = order[f"errors_{which}"]
    return all(np.isfinite(errors)) and max(errors) < 1e-12


# ----------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------

_STYLE = {"regularizing": "green", "anti-regularizing": "red", "none": "dim"}


def render(analysis):
    """A rich renderable of one analysis (print it with a rich Console)."""
    from rich import box
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    hp = ", ".join(f"{k}={v}" for k, v in analysis.hyperparameters.items()) or "none"
    head = Text.assemble((analysis.optimizer, "bold"), f"  ({analysis.reference})\n" if analysis.reference else "\n",
                         f"update: {analysis.update_rule}\n" if analysis.update_rule else "",
                         f"hyperparameters: {hp}\n",
                         f"reference loss: {analysis.loss}, lr h = {analysis.lr:g}, "
                         f"sharpness proxy N = {_proxy(analysis.sharpness)}")

    table = Table(title="Memory channels: M = sum of the channel terms M_l (Eq. 12, Section 3.2)",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("channel", no_wrap=True)
    for column in ("β", "weight", "memory #", "size", "strength"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("effect", no_wrap=True)
    for c in analysis.channels:
        table.add_row(c.name, _num(c.decay), _num(c.coefficient), _num(c.memory_number), _num(c.size),
                      f"{c.strength:+.2g}", Text(c.effect, style=_STYLE[c.effect]))
    legend = ("weight = b*beta/(1-beta)^2, the channel's coefficient in M; memory # = h*beta/(1-beta), small "
              "where the theory holds; size = |M_l|/|F|, the term relative to the step; strength = "
              "<grad N, M_l> / |<grad N, F>| along the trajectory, > 0 regularizing")
    forms = [f"  {c.name}: M_l = {c.formula}" for c in analysis.channels if c.formula]
    closed = Text(legend + ("\nclosed forms (MATH.md Sec. 4):\n" + "\n".join(forms) if forms else ""), style="dim")

    verdict = Text(analysis.verdict)
    if analysis.modified_loss:
        verdict.append(f"\nmodified loss: {analysis.modified_loss}")
    verdict_panel = Panel(verdict, title=f"verdict: {analysis.net_effect}", border_style=_STYLE[analysis.net_effect])

    order = analysis.order
    evidence = Table(box=box.SIMPLE_HEAD, pad_edge=False, title=f"Evidence (Theorem 3.3): max error of the memoryless iteration vs the optimizer "
                           f"over the horizon t = {order['horizon']:g}")
    for column in ("lr", "error with M", "error without M"):
        evidence.add_column(column, justify="right")
    for lr, ec, eu in zip(order["lrs"], order["errors_corrected"], order["errors_uncorrected"]):
        evidence.add_row(f"{lr:g}", f"{ec:.3e}", f"{eu:.3e}")
    evidence.add_row("order", _order(order, "corrected"), _order(order, "uncorrected"), style="bold")
    ratio = Text(f"largest |M|/|F| along the trajectory: {analysis.memory_ratio:.3g}  "
                 f"(the first-order theory needs it small)")

    parts = [head, table, closed, verdict_panel, evidence, ratio]
    if analysis.caveats:
        parts.append(Panel("\n".join(f"- {c}" for c in analysis.caveats), title="caution: outside the theory's range",
                           border_style="yellow"))
    return Group(*parts)


def render_comparison(analyses):
    """One table, one row per analysis: the paper's AdamW-vs-Lion comparison and more."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"What memory does to the loss ({analyses[0].loss} loss, lr = {analyses[0].lr:g})",
                  box=box.SIMPLE_HEAD, pad_edge=False,
                  caption="memory # = max h*beta/(1-beta); order = empirical order with/without M; "
                          "* = outside the theory's range: run 'report NAME'")
    table.add_column("optimizer", no_wrap=True)
    table.add_column("net effect", no_wrap=True)
    table.add_column("strength", justify="right", no_wrap=True)
    table.add_column("memory #", justify="right", no_wrap=True)
    table.add_column("|M|/|F|", justify="right", no_wrap=True)
    table.add_column("order", justify="right", no_wrap=True)

    for a in analyses:
        numbers = [c.memory_number for c in a.channels if c.memory_number is not None]
        name = a.optimizer + ("*" if a.caveats else "")
        table.add_row(name, Text(a.net_effect, style=_STYLE[a.net_effect]), f"{a.net_strength:+.2g}",
                      _num(max(numbers) if numbers else None), _num(a.memory_ratio),
                      f"{_order(a.order, 'corrected')}/{_order(a.order, 'uncorrected')}")
    return table


def _order(order, which):
    if order["diverged"]:
        return "diverged"
    return "exact" if _exact(order, which) else f"{order[which]:.2f}"


def _num(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.3g}"


def to_json(analysis):
    """The analysis (or a list of them) as a JSON string."""
    def clean(x):
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list):
            return [clean(v) for v in x]
        return x
    if isinstance(analysis, list):
        return json.dumps([clean(asdict(a)) for a in analysis], indent=2)
    return json.dumps(clean(asdict(analysis)), indent=2)


# ----------------------------------------------------------------------------
# The modified equation and the implicit loss (``python -m memless modified``)
# ----------------------------------------------------------------------------


def render_modified(summary):
    """A rich renderable of a :class:`memless.modified.ModifiedSummary`."""
    from rich import box
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    hp = ", ".join(f"{k}={v}" for k, v in summary.hyperparameters.items()) or "none"
    head = Text.assemble((summary.optimizer, "bold"), f"  hyperparameters: {hp}\n",
                         f"reference loss: {summary.loss} from {summary.theta}, lr h = {summary.lr:g}")
    equation = Text.assemble(
        ("modified equation (Section 5.1):  ", "bold"),
        "theta' = G1 + h G2,  G1 = -F,  G2 = -(M/h + 1/2 dF.F)\n",
        f"at the start: |G1| = {summary.G1_norm:.4g}, |h G2| = {summary.hG2_norm:.4g} "
        f"({summary.hG2_norm / summary.G1_norm if summary.G1_norm else float('nan'):.3g} of |G1|)\n",
        "python: memless.modified_equation(opt, loss, lr).rhs(t, theta)  -- for scipy.integrate.solve_ivp")
    implicit = summary.implicit
    if implicit.loss is None:
        body = Text(f"none: {implicit.note}\n(F + M)/P Jacobian asymmetry {implicit.asymmetry:.2g}", style="yellow")
        title = "implicit loss: none"
    else:
        status = ("curl-free here" if implicit.curl_free
                  else f"NOT curl-free here: holds only as {implicit.regime}")
        body = Text.assemble(f"Ltilde = {implicit.formula}\n",
                             f"regime: {implicit.regime}; check at the start: Jacobian asymmetry "
                             f"{implicit.asymmetry:.2g}, |P grad Ltilde - (F + M)|/|F + M| = {implicit.residual:.2g} "
                             f"({status})")
        title = "implicit loss"
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False,
                  title=f"check: max distance to the memoryless iteration over t = {summary.horizon:g}")
    for column in ("lr", "modified equation", "plain flow"):
        table.add_column(column, justify="right")
    for h, a, b in zip(summary.lrs, summary.errors_ode, summary.errors_flow):
        table.add_row(f"{h:g}", "diverged" if math.isnan(a) else f"{a:.3e}", "diverged" if math.isnan(b) else f"{b:.3e}")

    def order(errors, value):
        if any(math.isnan(e) for e in errors):
            return "-"
        return "exact" if max(errors) < 1e-12 else f"{value:.2f}"

    table.add_row("order", order(summary.errors_ode, summary.order_ode),
                  order(summary.errors_flow, summary.order_flow), style="bold")
    parts = [head, Text(""), equation, Panel(body, title=title), table,
             Text("expected orders: 2 for the modified equation, 1 for the plain flow", style="dim")]
    if summary.caveats:
        parts.append(Text("caveats:\n" + "\n".join(f"- {c}" for c in summary.caveats), style="yellow"))
    return Group(*parts)


def modified_to_json(summary):
    data = asdict(summary)
    data["implicit"].pop("loss", None)
    data["implicit"]["has_loss"] = summary.implicit.loss is not None
    return json.dumps(data, indent=2, default=float)
