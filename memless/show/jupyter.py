"""How results show themselves in Jupyter: HTML tables styled like the terminal report, and
PNG figures where matplotlib is installed.  This is the presentation layer: it registers one view
per result class and format with :mod:`memless._views`, which the result classes ask; they never
import this module.  rich and matplotlib are imported only when a view is drawn."""
from __future__ import annotations

import html
import io
from typing import Callable, Optional, Sequence

from .._views import register
from ..engine.corrections import CorrectionInfo, MemoryProfile
from ..studies.analysis import Analysis, RegimeMap
from ..studies.modified import ImplicitLossCheck, ModifiedEquation, ModifiedSummary
from ..studies.trajectories import OrderStudy


def rich_html(renderable, width: int = 100) -> str:
    """A rich renderable (the terminal report) as self-contained HTML."""
    from rich.console import Console

    console = Console(record=True, file=io.StringIO(), width=width, color_system="truecolor")
    console.print(renderable)
    return console.export_html(inline_styles=True, code_format="<pre style=\"font-size: 12px\">{code}</pre>")


def table(title: str, header: Sequence[str], rows: Sequence[Sequence], notes: Sequence[str] = ()) -> str:
    """A small HTML table with a title and notes."""
    cells = "".join(f"<th style=\"text-align:right\">{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td style=\"text-align:right\">{html.escape(_fmt(v))}</td>" for v in row)
                   + "</tr>" for row in rows)
    extra = "".join(f"<div style=\"font-size: 90%\">{html.escape(n)}</div>" for n in notes)
    return (f"<div><b>{html.escape(title)}</b><table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody>"
            f"</table>{extra}</div>")


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def png(make_figure: Callable) -> Optional[bytes]:
    """PNG bytes of ``make_figure()``, or None without matplotlib (Jupyter then shows the HTML)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return None
    from .plot import pyplot
    plt = pyplot()
    fig = make_figure()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


# ----------------------------------------------------------------------------
# The views of each result class
# ----------------------------------------------------------------------------


@register(CorrectionInfo, "html")
def _correction_info(info) -> str:
    return table("How the correction was computed", ("n", "method", "terms", "truncated", "tail", "converged"),
                 [("limit" if info.n is None else info.n, info.method, info.terms, info.truncated, info.tail,
                   info.converged)])


@register(MemoryProfile, "html")
def _memory_profile_table(profile) -> str:
    return table(f"Memory profile at n = {profile.n}: {'decays' if profile.decays else 'does not decay'}",
                 ("k", "|dF/dtheta^(n-k) . v_k|", "gamma_k"),
                 list(zip(profile.ks.astype(int).tolist(), profile.values.tolist(), profile.weights.tolist())),
                 [profile.reason])


@register(MemoryProfile, "png")
def _memory_profile_png(profile):
    from .plot import memory_profile
    return png(lambda: memory_profile(profile))


@register(Analysis, "html")
def _analysis_html(analysis) -> str:
    from .report import render
    return rich_html(render(analysis))


@register(Analysis, "png")
def _analysis_png(analysis):
    if not analysis.channels:
        return None
    from .plot import channels
    return png(lambda: channels(analysis))


@register(RegimeMap, "figure")
def _regime_figure(result, ax=None):
    from .plot import regime_figure
    return regime_figure(result, ax=ax)


@register(ModifiedEquation, "html")
def _modified_equation(equation) -> str:
    label = getattr(equation.optimizer, "label", str(equation.optimizer))
    return table(f"Modified equation of {label} (Section 5.1)", ("equation", "lr h", "n"),
                 [("theta' = G1 + h G2,  G1 = -F,  G2 = -(M/h + (dG1) G1 / 2)", equation.lr,
                   "limit" if equation.n is None else equation.n)])


@register(ImplicitLossCheck, "html")
def _implicit_loss(check) -> str:
    return table(f"Implicit loss of {check.optimizer}", ("implicit loss", "regime", "asymmetry", "residual",
                                                         "curl-free"),
                 [(check.formula if check.loss is not None else "none", check.regime, check.asymmetry,
                   check.residual, check.curl_free)], [check.note] if check.note else [])


@register(ModifiedSummary, "html")
def _modified_summary(summary) -> str:
    from .report import render_modified
    return rich_html(render_modified(summary))


@register(OrderStudy, "html")
def _order_study_table(study) -> str:
    rows = [(lr, n, ec, eu, r) for lr, n, ec, eu, r in zip(study.lrs, study.steps, study.errors_corrected,
                                                        study.errors_uncorrected, study.memory_ratios)]
    return table(f"Order study over t = {study.horizon:g} (Theorem 3.3)",
                 ("lr", "steps", "error with M", "error without M", "|M|/|F|"), rows,
                 [f"order: corrected {study.order_corrected:.2f} (want 2), uncorrected "
                  f"{study.order_uncorrected:.2f} (want 1)"])


@register(OrderStudy, "png")
def _order_study_png(study):
    from .plot import order
    return png(lambda: order(study))
