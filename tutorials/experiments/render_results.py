"""Render the experiments' full runs (the JSON that ``--json`` printed, kept beside this script)
as RESULTS.md: per setting the mean and seed standard deviation of each column, and the
sentences the rows decided.

    .venv/bin/python tutorials/experiments/render_results.py           # rewrites RESULTS.md

The runs themselves (each command is printed in RESULTS.md):

    .venv/bin/python -m memless experiment NAME --json --plot tutorials/experiments/NAME.png \\
        > tutorials/experiments/NAME.json
"""
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
NAMES = ("adam-rho", "adam-beta", "lion-vs-adamw", "cancel-memory", "order-on-a-model", "next-term-radius")
#: the columns averaged over seeds, and the columns that name a setting
SETTINGS = {"adam-rho": ("data", "eps", "lr", "beta2"), "adam-beta": ("data", "eps", "lr", "beta1"),
            "lion-vs-adamw": ("optimizer", "lr"), "cancel-memory": ("c",), "order-on-a-model": ("optimizer", "lr"),
            "next-term-radius": ("optimizer", "hyperparameters", "lr")}
#: the kind of rows a table shows (rows without a kind are shown)
KINDS = {"lion-vs-adamw": "rung", "cancel-memory": "train"}
MEASURED = {"adam-rho": ("steps", "excess", "share_above", "test_accuracy", "M/F", "strength"),
            "adam-beta": ("steps", "excess", "share_above", "test_accuracy", "M/F", "strength"),
            "lion-vs-adamw": ("steps", "grad_l1", "test_accuracy"),
            "cancel-memory": ("steps", "loss", "excess", "test_accuracy", "M/F"),
            "order-on-a-model": ("error_corrected", "error_uncorrected", "error_second", "M/F", "M2/M1",
                                 "sharpness_h"),
            "next-term-radius": ("M/F", "M2/M1", "settled")}


def _number(value) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.4g}"


def _cell(values) -> str:
    if values and all(isinstance(v, bool) for v in values):      # a yes/no per seed: how many said yes
        return f"{sum(values)}/{len(values)}"
    values = [v for v in values if v is not None and np.isfinite(v)]
    if not values:
        return "–"
    if len(values) == 1:
        return _number(values[0])
    return f"{_number(float(np.mean(values)))} ± {_number(float(np.std(values, ddof=1)))}"


def section(result) -> str:
    name = result["name"]
    rows = [r for r in result["rows"] if r.get("kind", KINDS.get(name)) == KINDS.get(name)]
    keys = SETTINGS[name]
    measured = MEASURED[name]
    seeds = sorted({r["seed"] for r in rows if "seed" in r})
    lines = [f"## {name}", "", result["what"] + ".", "",
             f"`.venv/bin/python -m memless experiment {name} --json --plot tutorials/experiments/{name}.png` "
             f"— {len(seeds)} seeds ({', '.join(map(str, seeds))}), {result['seconds']:.0f} s on a 2-core CPU. "
             f"Each cell: the mean ± the standard deviation over seeds.", "",
             "| " + " | ".join(keys + measured) + " |", "|" + "---|" * (len(keys) + len(measured))]
    groups = []
    for row in rows:
        key = tuple(row.get(k) for k in keys)
        if key not in groups:
            groups.append(key)
    for key in groups:
        part = [r for r in rows if tuple(r.get(k) for k in keys) == key]
        cells = [str(v) if not isinstance(v, float) else f"{v:g}" for v in key]
        cells += [_cell([r.get(m) for r in part]) for m in measured]
        lines.append("| " + " | ".join(cells) + " |")
    tracking = [r for r in result["rows"] if r.get("kind") == "tracking"]
    if tracking:
        lines += ["", "| tracking check, c | " + " | ".join(f"h = {h:g}" for h in tracking[0]["lrs"]) + " | slope |",
                  "|" + "---|" * (len(tracking[0]["lrs"]) + 2)]
        for r in tracking:
            lines.append(f"| {r['c']:+g} | " + " | ".join(_number(e) for e in r["errors"]) + f" | {r['slope']:.2f} |")
    lines += ["", "What the data say (the experiment's own sentences):", ""]
    lines += [f"- {claim['sentence']}" for claim in result["claims"]]
    lines += ["", f"![{name}]({name}.png)", ""]
    return "\n".join(lines)


def render(folder=HERE) -> str:
    parts = ["# The experiments' full runs", "",
             "Made by `tutorials/experiments/render_results.py` from the JSON each run printed (kept here); "
             "the figures were written by the same runs. Every sentence was decided by the rows "
             "(`memless.experiments`), and a test recomputes each one from the kept rows.", ""]
    for name in NAMES:
        path = os.path.join(folder, f"{name}.json")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as fh:
                parts.append(section(json.load(fh)))
    return "\n".join(parts)


if __name__ == "__main__":
    text = render()
    target = os.path.join(HERE, "RESULTS.md")
    with open(target + ".tmp", "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(target + ".tmp", target)
    print("wrote", target, file=sys.stderr)
