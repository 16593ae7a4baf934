"""``python -m memless``: report, compare, modified, list, list-losses.

Every usage error prints one line, ``memless: error: ...``, on stderr and exits with 2
(with ``--json``, a JSON object ``{"error": ...}`` on stdout too).  Ctrl-C exits with
130 and a closed pipe (``list --json | head``) with 141, quietly.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import time
import warnings
from typing import Any, Dict, List

from .checks import shown
from .errors import DivergenceError, MemlessError

USAGE_ERROR = 2
INTERRUPTED = 130
BROKEN_PIPE = 141

_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")

# ----------------------------------------------------------------------------
# Parsing --set
# ----------------------------------------------------------------------------


#: the longest --set value parsed as a number (Python refuses int() of more than 4300 digits)
MAX_NUMBER = 100


def parse_value(text: str):
    """A --set value: true/false, an integer, a decimal number, or else a string -- parsed by
    plain ASCII patterns (no '1_000', no non-ASCII digits, no 'inf'), never evaluated."""
    stripped = text.strip()
    if stripped.lower() in ("true", "false"):
        return stripped.lower() == "true"
    if _INT.fullmatch(stripped) or _FLOAT.fullmatch(stripped):
        if len(stripped) > MAX_NUMBER:
            raise MemlessError(f"--set: a number of {len(stripped)} characters ({shown(stripped, 24)}); at most "
                               f"{MAX_NUMBER} are allowed")
        return int(stripped) if _INT.fullmatch(stripped) else float(stripped)
    return text


def parse_settings(items) -> dict:
    """``["beta2=0.99", ...]`` -> ``{"beta2": 0.99, ...}``."""
    settings = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise MemlessError(f"--set takes KEY=VALUE (e.g. --set beta2=0.99), got {shown(item)}")
        settings[key.strip()] = parse_value(value)
    return settings


def parse_targeted_settings(items, names) -> list:
    """For compare: ``--set NAME.KEY=VALUE`` (every entry named NAME) or ``--set N.KEY=VALUE``
    (the N-th entry, from 1); returns one settings dict per entry."""
    per_entry: List[Dict[str, Any]] = [{} for _ in names]
    for item in items or []:
        target, dot, rest = item.partition(".")
        key, sep, value = rest.partition("=")
        if not dot or not sep or not key.strip() or not target.strip():
            raise MemlessError(f"compare --set takes NAME.KEY=VALUE or N.KEY=VALUE (e.g. --set adamw.beta2=0.99 or "
                               f"--set 2.beta2=0.99), got {shown(item)}")
        target = target.strip()
        if _INT.fullmatch(target) and len(target) <= 6:
            index = int(target)
            if not 1 <= index <= len(names):
                raise MemlessError(f"--set {shown(item)}: entry {index} does not exist; there are {len(names)}")
            chosen = [index - 1]
        else:
            chosen = [i for i, name in enumerate(names) if name == target]
            if not chosen:
                raise MemlessError(f"--set {shown(item)}: {shown(target)} is not among the compared names "
                                   f"({shown(', '.join(names))})")
        for i in chosen:
            per_entry[i][key.strip()] = parse_value(value)
    return per_entry


# ----------------------------------------------------------------------------
# Commands
# ----------------------------------------------------------------------------


def _console(args):
    from rich.console import Console
    return Console(no_color=getattr(args, "no_color", False), highlight=False)


def _analysis_options(args) -> dict:
    if getattr(args, "fast", False):
        return {"points": 4, "steps": 100, "evidence_losses": ()}
    return {}


def _analyze_all(args, optimizers):
    """Run the analyses with progress on stderr: a bar on a terminal, one line per optimizer
    otherwise (none with --quiet).  A diverging optimizer becomes an entry naming it."""
    from rich.console import Console
    from rich.progress import Progress

    from .studies.analysis import analyze

    err = Console(stderr=True)
    quiet = getattr(args, "quiet", False)
    results: List[Any] = []
    bar = Progress(console=err, transient=True) if err.is_terminal and not quiet else None
    if bar is not None:
        bar.start()
    try:
        for optimizer in optimizers:
            start = time.perf_counter()
            follow = None
            if bar is not None:
                task = bar.add_task(f"analyzing {optimizer.label}", total=None)

                def follow(done, total, label, task=task):
                    bar.update(task, completed=done, total=total)
            try:
                results.append(analyze(optimizer, loss=args.loss, lr=args.lr, progress=follow,
                                       **_analysis_options(args)))
            except DivergenceError as exc:
                results.append(exc)
            if bar is None and not quiet:
                print(f"memless: analyzed {optimizer.label} in {time.perf_counter() - start:.1f} s",
                      file=sys.stderr, flush=True)
    finally:
        if bar is not None:
            bar.stop()
    return results


def _check_common(args):
    from .checks import check_lr
    from .losses import get_loss
    check_lr(args.lr)
    if args.loss is not None:
        get_loss(args.loss)


def cmd_report(args):
    from .optimizers.registry import get_optimizer
    from .show.report import render
    from .studies.analysis import to_json

    optimizer = get_optimizer(args.name, **parse_settings(args.set))
    _check_common(args)
    plot = _plot_module(args)
    (analysis,) = _analyze_all(args, [optimizer])
    if isinstance(analysis, DivergenceError):
        raise analysis
    if plot is not None:
        _save(plot.report_figure(analysis, optimizer), args.plot)
    if args.json:
        print(to_json(analysis))
    else:
        _console(args).print(render(analysis))
    return 0


def cmd_compare(args):
    from .optimizers.registry import get_optimizer
    from .show.report import render_comparison
    from .studies.analysis import to_json

    settings = parse_targeted_settings(args.set, args.names)
    optimizers = [get_optimizer(name, **hp) for name, hp in zip(args.names, settings)]
    _check_common(args)
    plot = _plot_module(args)
    results = _analyze_all(args, optimizers)
    failures = {i: str(r) for i, r in enumerate(results) if isinstance(r, DivergenceError)}
    if plot is not None:
        _save(plot.comparison_figure(results), args.plot)
    if args.json:
        rows = [json.loads(to_json(r)) if i not in failures else {"optimizer": optimizers[i].label,
                                                                    "error": failures[i]}
                for i, r in enumerate(results)]
        print(json.dumps(rows, indent=2))
    else:
        _console(args).print(render_comparison(results, optimizers))
    return 0


def _plot_module(args):
    """memless.plot if --plot was given (checked before any work), else None."""
    if getattr(args, "plot", None) is None:
        return None
    from .show import plot
    plot.check_path(args.plot)
    plot.pyplot()
    return plot


def _save(fig, path):
    from .show.plot import save
    save(fig, path)
    print(f"memless: wrote {shown(path, 200)}", file=sys.stderr)


@contextlib.contextmanager
def _progress(label: str, *, quiet: bool = False, lines: bool = False, describe: bool = True):
    """A progress(done, total, text) callback for one long piece of work, on stderr: a transient bar
    on a terminal (its text the latest ``text`` with ``describe``), else one line per update with
    ``lines``, else None (as with ``quiet``)."""
    from rich.console import Console
    from rich.progress import Progress

    err = Console(stderr=True)
    if quiet or not (err.is_terminal or lines):
        yield None
    elif not err.is_terminal:
        from .studies.analysis import print_progress
        yield print_progress("memless")
    else:
        bar = Progress(console=err, transient=True)
        bar.start()
        task = bar.add_task(label, total=None)
        try:
            yield lambda done, total, text: bar.update(task, completed=done, total=total,
                                                       **({"description": text} if describe else {}))
        finally:
            bar.stop()


def cmd_map(args):
    from .checks import check_lr
    from .optimizers.registry import get_optimizer

    optimizer = get_optimizer(args.name, **parse_settings(args.set))
    check_lr(args.lr)
    plot = _plot_module(args)
    from .studies.analysis import regime_map
    with _progress(f"mapping {optimizer.label}", describe=False) as follow:   # Ctrl-C stops it (exit 130)
        result = regime_map(optimizer, args.loss or "bilinear", x=args.x, y=args.y, grid=args.grid, lr=args.lr,
                            steps=args.steps, progress=follow)
    if plot is not None:
        _save(result.figure(), args.plot)
    if args.json:
        data = {"optimizer": result.optimizer, "loss": result.loss, "x": result.x, "y": result.y,
                "xs": result.xs.tolist(), "ys": result.ys.tolist(), "steps": result.steps,
                "order": result.order.tolist(), "order_uncorrected": result.order_uncorrected.tolist(),
                "strength": result.strength.tolist()}
        from ._json import strict
        print(json.dumps(strict(data), indent=2))
    else:
        from .show.report import render_regime_map
        _console(args).print(render_regime_map(result))
    return 0


def cmd_modified(args):
    from .optimizers.registry import get_optimizer
    from .show.report import render_modified
    from .studies.modified import summarize

    optimizer = get_optimizer(args.name, **parse_settings(args.set))
    _check_common(args)
    summary = summarize(optimizer, loss=args.loss, lr=args.lr)
    if args.json:
        print(summary.to_json())
    else:
        _console(args).print(render_modified(summary))
    return 0


def cmd_list(args):
    from rich.text import Text

    from .optimizers.registry import entries

    rows: List[Dict[str, Any]] = []
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
    from rich.console import Group
    from rich.padding import Padding

    def value(v):
        text = repr(v) if isinstance(v, str) else str(v)
        return text.replace(", ", ",")           # a tuple stays one token: lines break between settings only

    blocks: List[Any] = [Text("memless optimizers: the built-ins, and plugins of the entry-point group memless.optimizers\n",
                   style="bold")]
    for row in rows:
        head = Text.assemble((row["name"], "bold"), f"  ({row['source']})")
        if row["status"] == "broken":
            blocks += [head, Padding(Text(f"BROKEN: {row['error']}", style="red"), (0, 0, 1, 4))]
            continue
        params = "  ".join(f"{k}={value(v)}" for k, v in row["hyperparameters"].items()) or "no hyperparameters"
        about = row["description"][:-1] if row["description"].endswith("::") else row["description"]
        blocks += [head, Padding(Text(about), (0, 0, 0, 4)), Padding(Text(params), (0, 0, 1, 4))]
    _console(args).print(Group(*blocks))
    return 0


def cmd_experiment(args):
    from .experiments import run
    from .show.report import render_experiment

    plot = _plot_module(args)
    with _progress(f"experiment {args.name}", quiet=args.quiet, lines=True) as follow:
        result = run(args.name, quick=args.quick, seeds=args.seeds, device=args.device, data=args.data,
                     progress=follow)
    if plot is not None:
        _save(result.figure(), args.plot)
    if args.json:
        print(result.to_json())
    else:
        _console(args).print(render_experiment(result))
    return 0


def cmd_list_losses(args):
    from .losses import REFERENCE_LOSSES

    if args.json:
        print(json.dumps([{"name": name, "description": ref.description, "start": ref.start.tolist()}
                          for name, ref in REFERENCE_LOSSES.items()], indent=2))
        return 0
    for name, ref in REFERENCE_LOSSES.items():
        print(f"{name:12s} {ref.description}")
    return 0


# ----------------------------------------------------------------------------
# The parser and main
# ----------------------------------------------------------------------------


def _common(parser, analysis=True, cached=True):
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate h (default 1e-3)")
    parser.add_argument("--loss", default=None,
                        help="reference loss (default bilinear; factorization for optimizers on matrices; "
                             "see 'list-losses')")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--no-color", action="store_true", help="plain text")
    if cached:                       # report, compare, modified: the studies the cache keeps
        parser.add_argument("--no-cache", action="store_true",
                            help="compute the order studies again instead of reusing those kept in "
                                 "$MEMLESS_CACHE_DIR (default ~/.cache/memless; MEMLESS_NO_CACHE=1 also turns it off)")
    if analysis:
        parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
        parser.add_argument("--fast", action="store_true",
                            help="less work: 4 points, 100 steps, no evidence on the other reference losses")



class _Parser(argparse.ArgumentParser):
    """argparse with memless's one-line usage errors (exit 2), for the parser and every sub-command."""

    def error(self, message):
        message = " ".join(message.split())
        print(f"memless: error: {message[:300]} (see '{self.prog} --help')", file=sys.stderr)
        sys.exit(USAGE_ERROR)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(
        prog="python -m memless",
        description="How memory in an optimizer implicitly modifies the loss (Cattaneo & Shigida 2025).")
    parser.add_argument("--version", action="version", version=f"memless {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    report = sub.add_parser("report", help="what an optimizer's memory does to the loss")
    report.add_argument("name", help="a registered optimizer (see 'list')")
    report.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a hyperparameter")
    _common(report)
    report.set_defaults(run=cmd_report)
    modified = sub.add_parser("modified", help="the modified equation and implicit loss of an optimizer")
    modified.add_argument("name", help="a registered optimizer (see 'list')")
    modified.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a hyperparameter")
    _common(modified, analysis=False)
    modified.set_defaults(run=cmd_modified)
    compare = sub.add_parser("compare", help="several optimizers side by side")
    compare.add_argument("names", nargs="+", metavar="NAME", help="registered optimizers (a name may repeat)")
    compare.add_argument("--set", action="append", metavar="NAME.KEY=VALUE",
                         help="override a hyperparameter of every entry NAME, or of entry N (from 1): N.KEY=VALUE")
    _common(compare)
    compare.set_defaults(run=cmd_compare)
    for sub_parser in (report, compare):
        sub_parser.add_argument("--plot", metavar="FILE", help="also write the figure (.png, .svg or .pdf; "
                                                               "needs matplotlib: pip install memless[plot])")
    regime = sub.add_parser("map", help="regime map: the measured order and memory's sign over two settings")
    regime.add_argument("name", help="a registered optimizer (see 'list')")
    regime.add_argument("--x", default="lr", help="the horizontal setting: lr or a hyperparameter (default lr)")
    regime.add_argument("--y", default="beta2", help="the vertical setting (default beta2)")
    regime.add_argument("--grid", type=int, default=12, help="cells per axis (default 12)")
    regime.add_argument("--steps", type=int, default=20, help="steps per cell at its lr (default 20)")
    regime.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a hyperparameter")
    regime.add_argument("--plot", metavar="FILE", help="write the map (.png, .svg or .pdf)")
    _common(regime, analysis=False, cached=False)
    regime.set_defaults(run=cmd_map)
    experiment = sub.add_parser("experiment", help="the papers' experiments at CPU scale (PyTorch; see "
                                                   "memless.experiments)")
    experiment.add_argument("name", help="adam-rho, adam-beta, order-on-a-model, lion-vs-adamw or "
                                                 "cancel-memory")
    experiment.add_argument("--quick", action="store_true", help="a short run (under a minute)")
    experiment.add_argument("--seeds", type=int, default=3, help="seeds per setting (default 3)")
    experiment.add_argument("--device", default="cpu", help="torch device for training (default cpu)")
    experiment.add_argument("--data", default=None,
                            help="digits, mnist1d, a .npz with x, y, x_test, y_test, or a folder with train/<class>/ "
                                 "and test/<class>/ images (default: the experiment's)")
    experiment.add_argument("--json", action="store_true", help="print JSON")
    experiment.add_argument("--plot", metavar="FILE", help="also write the figure (.png, .svg or .pdf; needs "
                                                           "matplotlib: pip install memless[plot])")
    experiment.add_argument("--quiet", action="store_true", help="no progress on stderr")
    experiment.add_argument("--no-color", action="store_true")
    experiment.set_defaults(run=cmd_experiment)
    listing = sub.add_parser("list", help="registered optimizers")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.add_argument("--no-color", action="store_true")
    listing.set_defaults(run=cmd_list)
    losses = sub.add_parser("list-losses", help="reference losses")
    losses.add_argument("--json", action="store_true", help="print JSON")
    losses.set_defaults(run=cmd_list_losses)
    return parser


#: commands that read the optimizer registry (the others never import a plugin)
NEEDS_PLUGINS = ("report", "compare", "modified", "map", "list")
#: seconds a plugin's code may run in one call (import, construction, direction) in the CLI
#: (the environment variable MEMLESS_PLUGIN_SECONDS overrides it)
PLUGIN_SECONDS = 60.0


def _discover_plugins():
    """Load the registry now, turning each skipped plugin's warning into one stderr line."""
    from .optimizers.registry import PluginWarning, entries

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PluginWarning)
        entries()
    for warning in caught:
        if issubclass(warning.category, PluginWarning):
            message = str(warning.message)
            message = message[len("memless: "):] if message.startswith("memless: ") else message
            print(f"memless: warning: {message}", file=sys.stderr)
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)


def _needs_plugins(args) -> bool:
    """Whether the command reads a plugin: 'list', or a name that is not a built-in (a plugin can
    never take a built-in's name, so built-ins need no discovery)."""
    if args.command not in NEEDS_PLUGINS:
        return False
    if args.command == "list":
        return True
    from .optimizers import BUILTIN
    names = getattr(args, "names", None) or [getattr(args, "name", None)]
    return any(name not in BUILTIN for name in names)


def _plugin_seconds() -> float:
    """PLUGIN_SECONDS, or the environment's MEMLESS_PLUGIN_SECONDS (a number > 0)."""
    text = os.environ.get("MEMLESS_PLUGIN_SECONDS", "").strip()
    if not text:
        return PLUGIN_SECONDS
    try:
        value = float(text[:40])
    except ValueError:
        value = float("nan")
    if not 0 < value <= 1e6:
        raise MemlessError(f"MEMLESS_PLUGIN_SECONDS must be a number of seconds in (0, 1e6], got {shown(text, 40)}")
    return value


class _AsciiStream:
    """stdout for a terminal or pipe whose encoding cannot show memless's few non-ASCII characters:
    they are written as ASCII names (beta, ok, x), anything else as '?'."""

    NAMES = str.maketrans({"β": "beta", "✓": "ok", "✗": "x", "‖": "||", "ε": "eps", "√": "sqrt", "≤": "<=",
                           "≥": ">=", "×": "x", "−": "-", "→": "->"})

    def __init__(self, stream):
        self.stream, self.encoding = stream, "ascii"

    def write(self, text):
        text = text.translate(self.NAMES)
        return self.stream.write(text.encode(self.stream.encoding or "ascii", "replace").decode(
            self.stream.encoding or "ascii"))

    def __getattr__(self, name):
        return getattr(self.stream, name)


def _prepare_streams():
    """stdout must exist and take memless's characters; COLUMNS, if set, must be a usable width."""
    if sys.stdout is None:
        raise MemlessError("standard output is closed: give memless somewhere to write (a terminal, a file, a pipe)")
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "β✓✗".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        sys.stdout = _AsciiStream(sys.stdout)
    columns = os.environ.get("COLUMNS")
    if columns is not None and not (columns.strip().isascii() and columns.strip().isdigit()
                                    and 40 <= int(columns.strip()[:6]) <= 10_000):
        os.environ["COLUMNS"] = "100"          # rich would print nothing at COLUMNS=0


def _silence_stdout():
    """After a failed or closed stdout: keep Python from complaining about it at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.__stdout__.fileno())  # type: ignore[union-attr]  # AttributeError caught
    except (OSError, AttributeError, ValueError):
        pass


def _say_error(args, exc) -> None:
    print(f"memless: error: {exc}", file=sys.stderr)
    if getattr(args, "json", False) and sys.stdout is not None:
        try:
            print(json.dumps({"error": str(exc), "type": type(exc).__name__}))
            sys.stdout.flush()
        except (BrokenPipeError, OSError):
            _silence_stdout()


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .optimizers import registry
    from .studies import cache
    previous = registry.CALL_SECONDS, registry.CONTAIN_OUTPUT, cache.DIRECTORY
    try:
        registry.CALL_SECONDS, registry.CONTAIN_OUTPUT = _plugin_seconds(), True
        cache.DIRECTORY = None if getattr(args, "no_cache", False) else cache.default_directory()
        _prepare_streams()
        if _needs_plugins(args):
            _discover_plugins()
        code = args.run(args)
        sys.stdout.flush()
        return code
    except MemlessError as exc:
        _say_error(args, exc)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print("memless: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:
        # the reader went away (e.g. `| head`): say nothing more, and keep Python from complaining at exit
        _silence_stdout()
        return BROKEN_PIPE
    except OSError as exc:
        # stdout (or a file) could not be written: a full disk, /dev/full
        _silence_stdout()
        print(f"memless: error: cannot write the output: {exc.strerror or exc}", file=sys.stderr)
        return USAGE_ERROR
    finally:
        registry.CALL_SECONDS, registry.CONTAIN_OUTPUT, cache.DIRECTORY = previous
