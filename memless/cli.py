"""``python -m memless``: report, compare, modified, list, list-losses.

Every usage error prints one line, ``memless: error: ...``, and exits with 2.
"""
import argparse
import json
import sys
import warnings

from .errors import MemlessError

USAGE_ERROR = 2


def parse_value(text: str):
    """A --set value: bool, int, float or string -- parsed, never evaluated."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_settings(items) -> dict:
    settings = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise MemlessError(f"--set takes KEY=VALUE (e.g. --set beta2=0.99), got {item!r}")
        settings[key.strip()] = parse_value(value)
    return settings


def _console(args):
    from rich.console import Console
    return Console(no_color=getattr(args, "no_color", False), highlight=False)


def _analyze_all(args, names, settings):
    """Run the analyses with a progress bar on stderr (shown only on a terminal)."""
    from rich.console import Console
    from rich.progress import Progress

    from .analysis import analyze
    from .checks import check_lr
    from .losses import get_loss
    from .registry import get_optimizer

    # fail fast, before any progress bar, on every bad input
    optimizers = [get_optimizer(name, **settings) for name in names]
    check_lr(args.lr)
    get_loss(args.loss)
    bar = Progress(console=Console(stderr=True), transient=True)
    analyses = []
    with bar:
        for optimizer in optimizers:
            task = bar.add_task(f"analyzing {optimizer.label}", total=None)

            def follow(done, total, label, task=task):
                bar.update(task, completed=done, total=total)

            analyses.append(analyze(optimizer, loss=args.loss, lr=args.lr, progress=follow))
    return analyses


def cmd_report(args):
    from .analysis import to_json
    from .report import render

    (analysis,) = _analyze_all(args, [args.name], parse_settings(args.set))
    if args.json:
        print(to_json(analysis))
    else:
        _console(args).print(render(analysis))
    return 0


def cmd_compare(args):
    from .analysis import to_json
    from .report import render_comparison

    analyses = _analyze_all(args, args.names, {})
    if args.json:
        print(to_json(analyses))
    else:
        _console(args).print(render_comparison(analyses))
    return 0


def cmd_modified(args):
    from .checks import check_lr
    from .losses import get_loss
    from .modified import summarize
    from .registry import get_optimizer
    from .report import render_modified

    optimizer = get_optimizer(args.name, **parse_settings(args.set))
    check_lr(args.lr)
    get_loss(args.loss)
    summary = summarize(optimizer, loss=args.loss, lr=args.lr)
    if args.json:
        print(summary.to_json())
    else:
        _console(args).print(render_modified(summary))
    return 0


def cmd_list(args):
    from rich.table import Table
    from rich.text import Text
    from .registry import entries

    rows = []
    for name, entry in sorted(entries().items()):
        rows.append({
            "name": name,
            "source": "built-in" if entry.builtin else f"{entry.distribution} {entry.version}",
            "distribution": entry.distribution, "version": entry.version, "target": entry.target,
            "status": "broken" if entry.broken else "ok", "error": entry.error,
            "hyperparameters": {} if entry.broken else entry.hyperparameters,
            "description": "" if entry.broken else entry.description,
        })
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    table = Table(title="memless optimizers (entry-point group memless.optimizers)")
    for column in ("name", "from", "hyperparameters (defaults)", "what it is"):
        table.add_column(column, overflow="fold")
    for row in rows:
        if row["status"] == "broken":
            table.add_row(row["name"], row["source"], "", Text(f"BROKEN: {row['error']}", style="red"))
            continue
        params = ", ".join(f"{k}={v}" for k, v in row["hyperparameters"].items()) or "-"
        table.add_row(row["name"], row["source"], params, row["description"])
    _console(args).print(table)
    return 0


def cmd_list_losses(args):
    from .losses import REFERENCE_LOSSES

    for name, ref in REFERENCE_LOSSES.items():
        print(f"{name:12s} {ref.description}")
    return 0


def _common(parser):
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate h (default 1e-3)")
    parser.add_argument("--loss", default="bilinear", help="reference loss (default bilinear; see 'list-losses')")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--no-color", action="store_true", help="plain text")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m memless",
        description="How memory in an optimizer implicitly modifies the loss (Cattaneo & Shigida 2025).")
    sub = parser.add_subparsers(dest="command", required=True)
    report = sub.add_parser("report", help="what an optimizer's memory does to the loss")
    report.add_argument("name", help="a registered optimizer (see 'list')")
    report.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a hyperparameter")
    _common(report)
    report.set_defaults(run=cmd_report)
    modified = sub.add_parser("modified", help="the modified equation and implicit loss of an optimizer")
    modified.add_argument("name", help="a registered optimizer (see 'list')")
    modified.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a hyperparameter")
    _common(modified)
    modified.set_defaults(run=cmd_modified)
    compare = sub.add_parser("compare", help="several optimizers side by side")
    compare.add_argument("names", nargs="+", metavar="NAME", help="registered optimizers, with their defaults")
    _common(compare)
    compare.set_defaults(run=cmd_compare)
    listing = sub.add_parser("list", help="registered optimizers")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.add_argument("--no-color", action="store_true")
    listing.set_defaults(run=cmd_list)
    losses = sub.add_parser("list-losses", help="reference losses")
    losses.set_defaults(run=cmd_list_losses)
    return parser


def _discover_plugins():
    """Load the registry now, turning each skipped plugin's warning into one stderr line."""
    from .registry import PluginWarning, entries

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PluginWarning)
        entries()
    for warning in caught:
        if issubclass(warning.category, PluginWarning):
            print(f"memless: warning: {str(warning.message).removeprefix('memless: ')}", file=sys.stderr)
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _discover_plugins()
        return args.run(args)
    except MemlessError as exc:
        print(f"memless: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
