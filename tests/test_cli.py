"""python -m memless: the main job, and one-line errors with exit code 2."""
import json
import os
import subprocess
import sys

import pytest

from memless.cli import main, parse_settings, parse_value


def run(*args):
    env = dict(os.environ, COLUMNS="100")
    return subprocess.run([sys.executable, "-m", "memless", *args], capture_output=True, text=True, env=env)


def test_report_lion_runs():
    result = run("report", "lion", "--no-color")
    assert result.returncode == 0, result.stderr
    assert "lion" in result.stdout and "verdict" in result.stdout
    assert "Traceback" not in result.stderr


def test_report_json_parses():
    result = run("report", "adamw", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["optimizer"] == "adamw" and data["net_effect"] == "anti-regularizing"
    assert {c["name"] for c in data["channels"]} == {"first-moment", "second-moment", "weight-decay"}


@pytest.mark.parametrize("args,message", [
    (["report", "adamax"], "unknown optimizer 'adamax'; available: adam, adamw"),
    (["report", "adamw", "--set", "beta2=1.5"], "beta2=1.5 is invalid; allowed: a number in [0, 1)"),
    (["report", "adamw", "--set", "beta2"], "--set takes KEY=VALUE"),
    (["report", "adamw", "--set", "gamma=0.1"], "unknown hyperparameter 'gamma'"),
    (["report", "adamw", "--lr", "-1"], "lr must be a finite number > 0"),
    (["report", "adamw", "--loss", "nope"], "unknown reference loss 'nope'; available: bilinear"),
])
def test_errors_are_one_line_exit_2(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and err.startswith("memless: error: ")


def test_set_values_are_parsed_not_evaluated():
    assert parse_value("0.99") == 0.99 and parse_value("3") == 3
    assert parse_value("True") is True and parse_value("false") is False
    assert parse_value("__import__('os')") == "__import__('os')"
    assert parse_settings(["k=sign", "rho1=0.5"]) == {"k": "sign", "rho1": 0.5}


@pytest.mark.slow
def test_compare_runs_and_json_is_a_list():
    result = run("compare", "adamw", "lion", "--no-color")
    assert result.returncode == 0, result.stderr
    assert "adamw" in result.stdout and "lion" in result.stdout and "\x1b[" not in result.stdout
    result = run("compare", "adamw", "lion", "--json")
    data = json.loads(result.stdout)
    assert [d["optimizer"] for d in data] == ["adamw", "lion"]
    assert data[0]["net_effect"] == "anti-regularizing" and data[1]["net_effect"] != "anti-regularizing"


def test_compare_unknown_name_fails_before_any_work(capsys):
    assert main(["compare", "adamw", "nope"]) == 2
    assert "unknown optimizer 'nope'" in capsys.readouterr().err


def test_list_and_list_losses():
    result = run("list", "--no-color")
    assert result.returncode == 0 and "built-in" in result.stdout and "heavy-ball" in result.stdout
    result = run("list-losses")
    assert result.returncode == 0 and "bilinear" in result.stdout and "logistic" in result.stdout


def test_modified_command_measures_the_orders():
    result = run("modified", "heavy-ball", "--set", "beta=0.5", "--lr", "1e-4", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert 1.7 <= data["order_ode"] <= 2.3 and 0.8 <= data["order_flow"] <= 1.2
    assert data["implicit"]["has_loss"] and data["implicit"]["curl_free"]
    assert "||grad L||^2" in data["implicit"]["formula"]


def test_modified_command_says_when_there_is_no_implicit_loss_or_no_evidence():
    from io import StringIO
    from rich.console import Console
    from memless.studies.modified import summarize
    from memless.optimizers.registry import get_optimizer
    from memless.show.report import render_modified

    console = Console(file=StringIO(), width=100, color_system=None)
    console.print(render_modified(summarize(get_optimizer("adamw"), lr=1e-3)))
    text = console.file.getvalue()
    assert "lambda (grad L . theta - L)" in text           # AdamW with decay: the paper's Section 4 form
    console = Console(file=StringIO(), width=100, color_system=None)
    console.print(render_modified(summarize(get_optimizer("lion", weight_decay=0.1), lr=1e-3)))
    assert "implicit loss: none" in console.file.getvalue()
    assert "outside the range" in text          # |h G2| ~ |G1| at AdamW's defaults: said, not hidden
    result = run("modified", "heavy-ball", "--no-color")       # diverges at its defaults: the check is tamed
    assert result.returncode == 0 and "check at the tamed: HeavyBall(beta=0.5)" in result.stdout
    assert "outside the range" in result.stdout and "Traceback" not in result.stderr


def test_modified_command_errors_are_one_line():
    result = run("modified", "adamax")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "unknown optimizer" in result.stderr


def test_map_prints_a_table_that_fits_80_columns_and_json_only_when_asked():
    """The regime map as a table (rows the y setting, columns the x setting, each cell the corrected
    order and the sign of memory's effect), 80 columns wide even at the largest grid it samples from;
    --json gives every number."""
    env = dict(os.environ, COLUMNS="80")
    args = [sys.executable, "-m", "memless", "map", "heavy-ball", "--x", "lr", "--y", "beta", "--grid", "3",
            "--steps", "10", "--no-color"]
    table = subprocess.run(args, capture_output=True, text=True, env=env)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert "rows beta, columns lr" in lines[0] and max(len(line) for line in lines) <= 80
    assert lines[1].split()[0] == "beta" and len(lines[1].split()) == 4      # the y name and three x values
    cells = [line.split()[1:] for line in lines[2:5]]
    assert all(len(row) == 3 and all(cell[-1] in "+−·" for cell in row) for row in cells)
    data = json.loads(subprocess.run(args + ["--json"], capture_output=True, text=True, env=env).stdout)
    shown = [[float(cell[:-1]) if cell[:-1] != "×" else None for cell in row] for row in cells]
    assert [[round(v, 1) if v is not None else None for v in row] for row in data["order"]] == shown
    signs = [["+" if v > 1e-12 else "−" if v < -1e-12 else "·" for v in row] for row in data["strength"]]
    assert [[cell[-1] for cell in row] for row in cells] == signs


def test_list_fits_80_columns_and_never_splits_a_setting():
    """Each optimizer: its name and origin, what it is, then its settings, wrapped between settings only."""
    from memless.optimizers.registry import entries
    out = subprocess.run([sys.executable, "-m", "memless", "list", "--no-color"], capture_output=True, text=True,
                         env=dict(os.environ, COLUMNS="80"))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    words = set(out.stdout.split())
    for name, entry in entries().items():
        if entry.broken:
            continue
        assert name in words
        for key, value in entry.hyperparameters.items():
            text = repr(value) if isinstance(value, str) else str(value)
            assert f"{key}={text.replace(', ', ',')}" in words, (name, key)


def test_compare_fits_80_columns_without_cutting_a_value():
    """Vector and matrix optimizers side by side (each row on its own loss) and changed settings, at 80
    columns: no value cut (no ellipsis, no letter lost), every line at most 80 characters."""
    env = dict(os.environ, COLUMNS="80")
    for args in (["adamw", "lion", "muon"], ["adamw", "adamw", "--set", "2.beta2=0.99", "--set", "2.eps=0.1"]):
        out = subprocess.run([sys.executable, "-m", "memless", "compare", *args, "--no-color", "--quiet"],
                             capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stderr
        assert "…" not in out.stdout and max(len(line) for line in out.stdout.splitlines()) <= 80
        words = out.stdout.split()
        assert "anti-regularizing" in words and ("tamed" in words or "yours" in words)
    assert "factorization" in subprocess.run([sys.executable, "-m", "memless", "compare", "adamw", "muon",
                                              "--no-color", "--quiet"], capture_output=True, text=True,
                                             env=env).stdout.split()
