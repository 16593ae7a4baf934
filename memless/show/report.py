"""The terminal report: rich renderables built from :mod:`memless.studies.analysis` and
:mod:`memless.studies.modified` results.  Build here, print elsewhere (the CLI)::

    from rich.console import Console
    Console().print(render(analyze(memless.get_optimizer("lion"))))

Every rich import is inside these functions, so computing never loads rich.
"""
from __future__ import annotations

import math
from typing import Any, List, Optional

from ..studies.analysis import ROUNDING, Analysis, Effect

_STYLE = {Effect.REGULARIZING: "green", Effect.ANTI_REGULARIZING: "red", Effect.NONE: "dim", Effect.DEPENDS: "yellow",
          Effect.OUTSIDE: "magenta", Effect.UNRELIABLE: "magenta"}


def _style(effect) -> str:
    return _STYLE[Effect(effect)]


_SIGN = {1: "+", -1: "-", 0: "0", None: "?"}


def render(analysis: Analysis):
    """A rich renderable of one analysis (print it with a rich Console)."""
    from rich.console import Group

    if analysis.net_effect == Effect.OUTSIDE:
        return Group(_header(analysis), _verdict_panel(analysis), _profile_table(analysis), _glossary())
    parts = [_header(analysis), _channels(analysis), _legend(analysis), _verdict_panel(analysis),
             _order_table(analysis)]
    if analysis.caveats:
        from rich.panel import Panel
        parts.append(Panel("\n".join(f"- {c}" for c in analysis.caveats),
                           title="caution: what limits this verdict",
                           border_style="yellow"))
    return Group(*parts, _glossary())


#: where the report's words are defined (the documentation's glossary page)
GLOSSARY = "docs/pages/glossary.md"


def _glossary():
    from rich.text import Text
    return Text(f"words (sharpness proxy, tamed, strength, ...): the glossary of memless's documentation, "
                f"{GLOSSARY}", style="dim")


def _header(analysis):
    from rich.text import Text

    hp = ", ".join(f"{k}={v}" for k, v in analysis.hyperparameters.items()) or "none"
    return Text.assemble((analysis.optimizer, "bold"), f"  ({analysis.reference})\n" if analysis.reference else "\n",
                         f"update: {analysis.update_rule}\n" if analysis.update_rule else "",
                         f"hyperparameters: {hp}\n",
                         f"loss: {analysis.loss}, lr h = {analysis.lr:g}, sharpness proxy N = {analysis.sharpness}")


def _below_rounding(value: float, effect=None) -> bool:
    """A strength at rounding beside a stated effect (its sign is the declared one; its size is not measurable)."""
    return math.isfinite(value) and abs(value) <= ROUNDING and effect not in (None, Effect.NONE)


def _strength(value: float, effect=None) -> str:
    """A strength as printed: ``~`` after it where :func:`_below_rounding`."""
    return f"{value:+.2g}" + ("~" if _below_rounding(value, effect) else "")


def _channels(analysis):
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(title="Memory channels (M = sum of their terms M_l, Eq. 12)",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("channel", no_wrap=True)
    for column in ("β", "weight", "sign", "size", "strength"):     # size: mean |M_l|/|F| along the path
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("effect", no_wrap=True)
    for c in analysis.channels:
        table.add_row(c.name, _decay(c.decay), _num(c.coefficient), _SIGN[c.declared], _num(c.size),
                      _strength(c.strength, c.effect), Text(str(c.effect), style=_style(c.effect)))
    return table


def _legend(analysis):
    from rich.text import Text

    legend = ("weight = b*beta/(1-beta)^2, the channel's coefficient in its memory sum, with b its scale "
              "(m_l = b sum_k beta^k g_l, Remark 3.2; its sign is not the effect's: Phi can reverse it, as "
              "Lion's -grad K(-c) does); sign = the sign of <grad N, M_l> that the optimizer's modified loss "
              "declares (? = none declared); size = |M_l|/|F| averaged over the measured points of the path "
              "(the largest |M|/|F|, for the whole M, is given below); strength = <grad N, M_l> / |<grad N, F>| "
              "measured along the trajectory, > 0 regularizing" +
              (f"; ~ = below rounding (|strength| <= {ROUNDING:g}): the effect is the declared sign, its size is "
               "not measurable here" if any(_below_rounding(c.strength, c.effect) for c in analysis.channels)
               else ""))
    forms = [f"  {c.name}: M_l = {c.formula}" for c in analysis.channels if c.formula]
    if forms:
        legend += ("\nclosed forms (Cattaneo & Shigida 2025, Sec. 3.2 and 4; F = the limit direction, "
                   "H = the Hessian, D = g^2 + eps):\n" + "\n".join(forms))
    else:
        legend += ("\nno closed form: the optimizer states none for its terms, so M comes from the engine "
                   "(Eq. 12, by JVPs of its direction)")
    return Text(legend, style="dim")


def _verdict_panel(analysis):
    from rich.panel import Panel
    from rich.text import Text

    body = Text(analysis.verdict)
    measured = analysis.basis != "declared" and "measured" not in analysis.regime
    body.append(f"\nholds: {analysis.regime}" + (" (measured)" if measured else ""))
    if analysis.modified_loss:
        body.append(f"\nmodified loss: {analysis.modified_loss}")
    marks = []
    for e in analysis.evidence:
        mark = "below rounding" if e.agrees is None else ("agrees" if e.agrees else "DISAGREES")
        marks.append(f"{e.loss} {e.strength:+.2g} ({mark})")
    if marks:
        body.append("\nmeasured strength of M on each loss: " + ", ".join(marks))
    return Panel(body, title=f"verdict: {analysis.net_effect}", border_style=_style(analysis.net_effect))


def _profile_table(analysis):
    """The memory profile: the summands of Eq. (12) against the age k of the iterate."""
    from rich import box
    from rich.table import Table

    memory = analysis.memory
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False,
                  title=f"Memory profile at the start, n = {memory.n}: |dF^(n)/dtheta^(n-k) . v_k| and "
                        "gamma_k = that / |v_k| (geometric decay would fall like beta^k)")
    for column in ("k", "|dF/dtheta^(n-k) . v_k|", "gamma_k"):
        table.add_column(column, justify="right")
    for k, value, weight in zip(memory.ks, memory.values, memory.weights):
        table.add_row(f"{k:g}", f"{value:.3e}", f"{weight:.3e}")
    return table


def _order_table(analysis):
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    order = analysis.order
    if order.setting == "yours":
        where = f"at YOUR hyperparameters and lr, on {order.loss}"
    else:
        where = (f"NOT at your settings but at the tamed copy {order.optimizer} on {order.loss} (your lr, loss, "
                 "decays and smoothing constants do not enter it; why: below)")
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False,
                  title=f"Evidence that the correction is right (Theorem 3.3), {where}: max error of the memoryless "
                        f"iteration vs the optimizer over t = {order.horizon:g}")
    for column in ("lr", "error with M", "error without M", "error ratio"):
        table.add_column(column, justify="right")
    for lr, ec, eu in zip(order.lrs, order.errors_corrected, order.errors_uncorrected):
        ratio = f"{eu / ec:.3g} x" if ec > 0 and math.isfinite(ec) and math.isfinite(eu) else "-"
        table.add_row(f"{lr:.3g}", f"{ec:.3e}", f"{eu:.3e}", ratio)
    table.add_row("order", _order(order, "corrected"), _order(order, "uncorrected"), "want 2 / 1", style="bold")
    lines = []
    if order.setting == "tamed":
        lines.append(f"why tamed: {order.why}; the tamed copy sets each decay to 0.5 and each smoothing "
                     "constant to its declared tame value, where the theory holds within a short horizon")
    lines.append(f"largest |M|/|F| along your trajectory: {analysis.memory_ratio:.3g} (the first-order theory "
                 f"needs it small; above 0.3 the report cautions)")
    if getattr(analysis, "next_term_ratio", None) is not None:
        lines.append(f"the next term there, |M2|/|M1|: {analysis.next_term_ratio:.3g} (the second-order term against "
                     "the first, beyond the paper. Measured in the experiment next-term-radius: where it exceeds 0.3, "
                     "an order study at those settings seldom settles to orders 2 and 1; whether it settles is "
                     "predicted slightly better by |M|/|F|, so the report's rule rests on |M|/|F|)")
    return Group(table, Text("\n".join(lines)))


def render_comparison(analyses: List, optimizers: Optional[List] = None):
    """One table, one row per analysis: the paper's AdamW-vs-Lion comparison and more.

    An entry that is an exception (an optimizer that diverged) becomes a row saying so."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    done = [a for a in analyses if isinstance(a, Analysis)]
    losses = sorted({a.loss for a in done})
    if len(losses) > 1:          # optimizers on vectors and on matrices: each on its own default loss
        where = f"losses {' / '.join(losses)} (per row), lr = {done[0].lr:g}"
    else:
        where = f"{done[0].loss} loss, lr = {done[0].lr:g}" if done else "no optimizer completed"
    table = Table(title=f"What memory does to the loss ({where})",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, padding=(0, 0),
                  caption="basis: declared by the optimizer's modified loss, or measured; |M|/|F| = largest along "
                          "the path; order = empirical order with/without M (want 2/1), at your settings or at the "
                          "tamed optimizer (decays 0.5, on curvy; on factorization for optimizers on matrices); "
                          f"* = caution: run 'report NAME'; ~ = strength below rounding (|strength| <= {ROUNDING:g})")
    table.add_column("optimizer", overflow="fold", min_width=13)   # its settings and loss on lines of their own
    table.add_column("net effect", no_wrap=True)
    table.add_column("basis", no_wrap=True)
    table.add_column("strength", justify="right", no_wrap=True)
    table.add_column("|M|/|F|", justify="right", no_wrap=True)
    table.add_column("order", justify="right", no_wrap=True)
    table.add_column("at", no_wrap=True)
    failures = []
    for i, a in enumerate(analyses):
        label = _entry_label(optimizers[i]) if optimizers else getattr(a, "optimizer", "?")
        if not isinstance(a, Analysis):
            table.add_row(label, Text("diverged", style="red"), "-", "-", "-", "-", "-")
            failures.append(str(a))
            continue
        name = label.replace(" (", "*\n(" if a.caveats else "\n(", 1) if " (" in label else \
            label + ("*" if a.caveats else "")
        name += f"\non {a.loss}" if len(losses) > 1 else ""
        if a.net_effect == Effect.OUTSIDE:
            table.add_row(name, Text(str(a.net_effect), style=_style(a.net_effect)), a.basis, "-", "-", "-", "-")
            continue
        table.add_row(name, Text(str(a.net_effect), style=_style(a.net_effect)), a.basis, _strength(a.net_strength, a.net_effect),
                      _num(a.memory_ratio), f"{_order(a.order, 'corrected')}/{_order(a.order, 'uncorrected')}",
                      "yours" if a.order.setting == "yours" else "tamed")
    if not failures:
        return table
    from rich.console import Group
    return Group(table, Text("\n".join(failures), style="red"))


def _entry_label(optimizer) -> str:
    """The registered name, with the hyperparameters that differ from the defaults (one per line)."""
    changed = [f"{hp.name}={getattr(optimizer, hp.name)}" for hp in type(optimizer).hyperparameters
               if getattr(optimizer, hp.name) != hp.default]
    return optimizer.label + (f" ({chr(10).join(changed)})" if changed else "")


def _order(order, which):
    if order.diverged:
        return "diverged"
    return "exact" if getattr(order, f"exact_{which}") else f"{getattr(order, which):.2f}"


def _decay(beta):
    """A decay at the precision it has: 0.9999 stays 0.9999 (not 1)."""
    if beta is None or (isinstance(beta, float) and math.isnan(beta)):
        return "-"
    return f"{beta:.6g}"


def _num(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.3g}"


# ----------------------------------------------------------------------------
# The modified equation and the implicit loss (``python -m memless modified``)
# ----------------------------------------------------------------------------


def render_modified(summary):  # summary: memless.studies.modified.ModifiedSummary
    """A rich renderable of a :class:`memless.studies.modified.ModifiedSummary`."""
    from rich import box
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    hp = ", ".join(f"{k}={v}" for k, v in summary.hyperparameters.items()) or "none"
    head = Text.assemble((summary.optimizer, "bold"), f"  hyperparameters: {hp}\n",
                         f"loss: {summary.loss} from {summary.theta}, lr h = {summary.lr:g}")
    equation = Text.assemble(
        ("modified equation (Section 5.1):  ", "bold"),
        "theta' = G1 + h G2,  G1 = -F,  G2 = -(M/h + 1/2 dF.F)\n",
        f"at the start: |G1| = {summary.G1_norm:.4g}, |h G2| = {summary.hG2_norm:.4g} "
        f"({summary.hG2_norm / summary.G1_norm if summary.G1_norm else float('nan'):.3g} times |G1|)\n",
        "python: memless.modified_equation(opt, loss, lr).rhs(t, theta)  -- for scipy.integrate.solve_ivp")
    implicit = summary.implicit
    if implicit.loss is None:
        body = Text(f"none: {implicit.note}\n(F + M)/P Jacobian asymmetry {implicit.asymmetry:.2g}", style="yellow")
        title = "implicit loss: none"
    else:
        status = ("curl-free here" if implicit.curl_free
                  else f"NOT curl-free here: holds only as {implicit.regime}")
        body = Text.assemble(f"{implicit.equation}\n",
                             f"regime: {implicit.regime}; check at the start: Jacobian asymmetry "
                             f"{implicit.asymmetry:.2g}, |P grad Ltilde - (F + M)|/|F + M| = {implicit.residual:.2g} "
                             f"({status})")
        title = "implicit loss"
    where = "at your settings" if summary.check_setting == "yours" else f"at the {summary.check_setting}"
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False,
                  title=f"check {where}: max distance to the memoryless iteration over t = {summary.horizon:g}")
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
    parts: List[Any] = [head, Text(""), equation, Panel(body, title=title), table,
             Text("expected orders: 2 for the modified equation, 1 for the plain flow", style="dim")]
    if summary.caveats:
        parts.append(Text("caveats:\n" + "\n".join(f"- {c}" for c in summary.caveats), style="yellow"))
    return Group(*parts)


#: short headers for the experiments' columns, and what they mean
_SHORT = {"share_above": "share", "test_accuracy": "acc", "error_corrected": "err M", "error_uncorrected": "err no M",
          "error_second": "err M+M2", "hyperparameters": "settings",
          "sharpness_h": "h lmax", "strength": "strength", "beta1": "b1", "beta2": "b2", "optimizer": "opt"}
#: the experiments' columns of words (they wrap; numbers keep their width)
_WORDS = ("data", "optimizer", "hyperparameters", "kind")
#: what each experiment column means (the footer shows the ones its table has)
_MEANING = {"excess": "excess = ||g||_{1,eps} - p sqrt(eps)", "share_above": "share = share of |g_i| > sqrt(eps)",
            "test_accuracy": "acc = test accuracy",
            "strength": "strength = <grad N, M>/|<grad N, F>| (> 0 regularizing)",
            "M/F": "M/F = |M|/|F| (the first-order range: <= 0.2)",
            "error_corrected": "err = max distance to the optimizer over the horizon, with M and without",
            "error_second": "err M+M2 = the same with the second-order term as well",
            "M2/M1": "M2/M1 = |M2|/|M1| (the next term)", "settled": "settled = the orders are 2 and 1",
            "sharpness_h": "h lmax = h lambda_max(P H) at the start (stability edge 2)",
            "grad_l1": "grad_l1 = ||g||_1", "slope": "slope = of log error against log h"}


def render_experiment(result):  # result: memless.experiments.ExperimentResult
    """An experiment's rows as a table and its claims as sentences (each decided by the rows)."""
    from rich import box
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text
    head = Text(f"{result.name}: {result.what}", style="bold")
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, padding=(0, 1), show_edge=False)
    cells = [[f"{row.get(c):.3g}" if isinstance(row.get(c), float) else str(row.get(c, "")) for c in result.columns]
             for row in result.rows]
    for i, column in enumerate(result.columns):
        words = column in _WORDS
        # a number is never cut (5.16e-05 must not read 5.16e-...): its column keeps its widest cell;
        # words (names, settings) wrap instead
        widest = max([len(_SHORT.get(column, column))] + [len(row[i]) for row in cells]) if not words else None
        table.add_column(_SHORT.get(column, column), justify="left" if words else "right", no_wrap=not words,
                         min_width=widest, overflow="fold")
    for row in cells:
        table.add_row(*row)
    claims = Text("\n".join(f"- {claim['sentence']}" for claim in result.claims))
    seeds = result.settings.get("seeds")
    run = (f"{'quick run' if result.settings.get('quick') else 'full run'}, {seeds} seed(s), device "
           f"{result.settings.get('device')}, {result.seconds:.0f} s; columns: "
           f"{'; '.join(_MEANING[c] for c in result.columns if c in _MEANING)}")
    return Group(head, table, Panel(claims, title="what the data say (decided by the rows above)"),
                 Text(run, style="dim"))


#: the width a regime map's table fits in
MAP_WIDTH = 80


def _compact(value: float) -> str:
    """A value in at most 2 significant digits, exponent unpadded: 0.05, 0.13, 5.5e-5."""
    text = f"{value:.2g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


def render_regime_map(result):  # result: memless.studies.analysis.RegimeMap
    """The regime map as a table that fits MAP_WIDTH columns: one row per y value, one column per x
    value (sampled evenly where they do not all fit; --json has them all); each cell the corrected
    order and the sign of memory's effect at the start."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from ..studies.analysis import ROUNDING

    def mark(strength):
        if not math.isfinite(strength) or abs(strength) <= ROUNDING:
            return "·"
        return "+" if strength > 0 else "−"

    def order(value):
        if not math.isfinite(value):
            return "×"
        return f"{value:.1f}" if abs(value) < 9.95 else f"{value:.0f}"

    cells = [[order(result.order[i, j]) + mark(result.strength[i, j]) for j in range(len(result.xs))]
             for i in range(len(result.ys))]
    heads = [_compact(x) for x in result.xs]
    rows = [_compact(y) for y in result.ys]
    label = max(len(result.y), *(len(r) for r in rows))
    width = 1 + max(max(len(h) for h in heads), max(len(c) for row in cells for c in row))
    fits = max(1, min(len(heads), (MAP_WIDTH - label) // width))
    shown = sorted({round(k * (len(heads) - 1) / max(fits - 1, 1)) for k in range(fits)}) if fits < len(heads) \
        else list(range(len(heads)))
    table = Table(box=None, pad_edge=False, padding=(0, 0, 0, 0), show_edge=False)
    table.add_column(result.y, justify="right", no_wrap=True, min_width=label)
    for j in shown:
        table.add_column(heads[j], justify="right", no_wrap=True, min_width=width)
    for i, row in enumerate(cells):
        table.add_row(rows[i], *[row[j] for j in shown])
    parts: List[Any] = [Text(f"{result.optimizer} on {result.loss}: rows {result.y}, columns {result.x}"), table]
    if len(shown) < len(heads):
        parts.append(Text(f"({len(shown)} of the {len(heads)} values of {result.x} are shown; --json has all)"))
    parts.append(Text(f"each cell: the corrected order from {result.steps} steps at its lr and {2 * result.steps} at "
                      "half of it (about 2 where the first-order theory holds; × where it diverged or is undefined), "
                      "then + where memory regularizes at the start (<grad N, M> > 0), − where it anti-regularizes, "
                      "· where its effect is below rounding. --json gives every number; --plot draws it."))
    return Group(*parts, *result.notes)
