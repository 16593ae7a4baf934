"""How results show themselves in Jupyter: ``_repr_html_`` tables styled like the terminal
report, and ``_repr_png_`` figures where matplotlib is installed.  Private: the result
classes call these lazily, so computing never imports rich or matplotlib."""
from __future__ import annotations

import html
import io
from typing import Callable, Optional, Sequence


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
