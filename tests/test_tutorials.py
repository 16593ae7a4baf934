"""Every tutorial runs as a script, in its own process, and asserts the claim it teaches.

A tutorial that stops teaching the truth fails here.  Each runs with its exercises
unanswered twice: as a learner gets it (the checker rejects the stub and the tutorial
stops there, loading no solution), and with ``MEMLESS_SOLUTIONS=1`` (the stored
solution is loaded, accepted, and every later claim holds).
"""
import os
import pathlib
import subprocess
import sys

import pytest

from memless import MemlessError, teaching

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TUTORIALS = os.path.join(ROOT, "tutorials")
SCRIPTS = sorted(f for f in os.listdir(TUTORIALS) if f[:2].isdigit() and f.endswith(".py"))
# a hang guard, not a speed test: tutorials take 1-71 s on a 2-core machine; a busy machine may take many times
# that, so the guard is generous (speed belongs in the benchmark)
TIME_LIMIT = 1800


def test_there_are_six_tutorials():
    assert len(SCRIPTS) >= 6


def _has_exercise(script):
    return "teaching.check(" in open(os.path.join(TUTORIALS, script)).read()


@pytest.mark.slow
@pytest.mark.parametrize("script", [s for s in SCRIPTS if _has_exercise(s)])
def test_a_blank_exercise_stops_the_tutorial_without_revealing_the_solution(script, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MEMLESS_SOLUTIONS"}
    env.update(PYTHONHASHSEED="0", MPLBACKEND="Agg", MEMLESS_FIGURES=str(tmp_path / "figures"))
    result = subprocess.run([sys.executable, os.path.join(TUTORIALS, script)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=TIME_LIMIT)
    assert result.returncode != 0 and "✗" in result.stdout and "✓" not in result.stdout
    assert "not solved yet" in result.stderr and "MEMLESS_SOLUTIONS=1" in result.stderr
    assert "Loading the solution" not in result.stdout and "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_tutorial_runs_and_its_claims_hold(script, tmp_path):
    env = dict(os.environ, PYTHONHASHSEED="0", MPLBACKEND="Agg", MEMLESS_SOLUTIONS="1",
               MEMLESS_FIGURES=str(tmp_path / "figures"))
    result = subprocess.run([sys.executable, os.path.join(TUTORIALS, script)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=TIME_LIMIT)
    assert result.returncode == 0, f"{script} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    saved = [line.split(": ", 1)[1] for line in result.stdout.splitlines() if line.startswith("figure saved: ")]
    assert all(path.startswith(str(tmp_path / "figures")) and os.path.exists(path) for path in saved)
    assert "Traceback" not in result.stderr
    if _has_exercise(script):
        assert "✗" in result.stdout and "✓" in result.stdout     # the stub is rejected, the solution accepted
        assert "Loading the solution (MEMLESS_SOLUTIONS=1)" in result.stdout


@pytest.mark.parametrize("script", SCRIPTS)
def test_tutorial_is_a_jupytext_percent_script(script):
    text = pathlib.Path(os.path.join(TUTORIALS, script)).read_text(encoding="utf-8")
    assert text.startswith("# %% [markdown]")
    assert text.count("# %%") >= 5


def test_checker_rejects_wrong_and_broken_answers(capsys):
    assert not teaching.check("heavy-ball-correction", lambda beta, h, g, Hg: h * beta * Hg)
    assert "Hint" in capsys.readouterr().out
    assert not teaching.check("heavy-ball-correction", lambda beta, h, g, Hg: 1 / 0)
    assert "ZeroDivisionError" in capsys.readouterr().out
    assert not teaching.check("adamw-net-effect", lambda b1, b2: "anti-regularizing", quiet=True)
    assert not teaching.check("qhm-optimizer", object, quiet=True)
    with pytest.raises(MemlessError, match="unknown exercise 'nope'; available: .*heavy-ball-correction"):
        teaching.check("nope", None)


def test_plots_are_optional(capsys):
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert teaching.pyplot() is None
        assert "pip install memless[plot]" in capsys.readouterr().out
    else:
        assert teaching.pyplot() is not None


def test_checker_tells_sign_shape_and_magnitude_errors_apart(capsys):
    """Sign-flipped, transposed and scaled answers each get their own diagnosis and hint."""
    def right(beta, h, g, Hg):
        return h * beta / (1 - beta) ** 3 * Hg

    answers = {
        "sign error": lambda beta, h, g, Hg: -right(beta, h, g, Hg),
        "shape error": lambda beta, h, g, Hg: right(beta, h, g, Hg)[None, :],          # shape (1, 2)
        "wrong magnitude": lambda beta, h, g, Hg: h * beta / (1 - beta) ** 2 * Hg,     # off by 1/(1-beta)
        "wrong direction": lambda beta, h, g, Hg: h * g,
    }
    seen = {}
    for kind, answer in answers.items():
        assert not teaching.check("heavy-ball-correction", answer)
        out = capsys.readouterr().out
        assert kind in out, out
        seen[kind] = out
    assert "Hint" in seen["sign error"] and "times the right size" in seen["wrong magnitude"]
    assert "expected shape (2,), got (1, 2)" in seen["shape error"]
    assert teaching.check("heavy-ball-correction", right, quiet=True)
    assert not teaching.check("memory-numbers", lambda h, b, r: [h * r / (1 - r), h * b / (1 - b)], quiet=True)


def test_solutions_come_only_on_request(monkeypatch):
    monkeypatch.delenv("MEMLESS_SOLUTIONS", raising=False)
    with pytest.raises(SystemExit, match="not solved yet.*MEMLESS_SOLUTIONS=1"):
        teaching.solution("adamw-net-effect")
    monkeypatch.setenv("MEMLESS_SOLUTIONS", "1")
    monkeypatch.syspath_prepend(TUTORIALS)
    assert teaching.solution("adamw-net-effect")(0.9, 0.999) == "anti-regularizing"
    with pytest.raises(MemlessError, match="unknown exercise"):
        teaching.solution("nope")


@pytest.mark.slow
def test_the_digits_experiment_runs_with_the_probe_in_its_training_loop(tmp_path):
    """tutorials/adam_on_digits.py --quick (two settings, loss threshold 0.5): the table is printed
    and each row's numbers are the run's own: the probe measured in the loop, the norm is at
    least its floor p sqrt(eps), and the verdict is memless's structure at that gradient."""
    pytest.importorskip("torch", reason="PyTorch is not installed (pip install memless[torch])")
    pytest.importorskip("sklearn", reason="scikit-learn is not installed (pip install memless[digits])")
    import json
    import importlib.util
    out, picture = tmp_path / "digits.json", tmp_path / "digits.png"
    drawn = importlib.util.find_spec("matplotlib") is not None
    result = subprocess.run([sys.executable, os.path.join(TUTORIALS, "adam_on_digits.py"), "--quick", "--json",
                             str(out)] + (["--plot", str(picture)] if drawn else []), cwd=tmp_path,
                            env=dict(os.environ, MPLBACKEND="Agg"), capture_output=True, text=True, timeout=TIME_LIMIT)
    assert result.returncode == 0, result.stderr[-3000:]
    if drawn:
        assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = json.loads(out.read_text())
    assert len(rows) == 2 and "| rho | 0.9 | 0.99 |" in result.stdout
    for row in rows:
        assert row["measurements"] == len(range(0, row["steps"], 20)) == len(row["log"]) >= 2
        strengths = [entry["strength"] for entry in row["log"]]
        assert (strengths[0], strengths[-1]) == (row["strength_first"], row["strength_last"])
        assert sorted(strengths)[(len(strengths) - 1) // 2] <= row["strength_median"] <= sorted(strengths)[len(strengths) // 2]
        assert row["norm"] >= row["floor"] and row["excess"] == pytest.approx(row["norm"] - row["floor"])
        assert row["predicted"] in ("regularizing", "anti-regularizing", "depends on the loss", "measured only")
    # a larger rho gives a more anti-regularizing memory term, as the probe logs it
    assert rows[1]["strength_median"] < rows[0]["strength_median"]


def test_in_a_notebook_an_unsolved_exercise_stops_with_one_line_and_solutions_load_with_one_call(monkeypatch,
                                                                                                  capsys):
    import types
    monkeypatch.delenv("MEMLESS_SOLUTIONS", raising=False)
    fake = types.ModuleType("IPython")
    fake.get_ipython = lambda: object()                                     # as inside a Jupyter kernel
    monkeypatch.setitem(sys.modules, "IPython", fake)
    with pytest.raises(teaching.NotSolved) as caught:
        teaching.solution("heavy-ball-correction")
    assert caught.value._render_traceback_() == [str(caught.value)]
    assert "memless.teaching.show_solutions()" in str(caught.value) and "\n" not in str(caught.value)
    monkeypatch.syspath_prepend(TUTORIALS)
    teaching.show_solutions()
    assert "run the exercise's cell again" in capsys.readouterr().out
    answer = teaching.solution("heavy-ball-correction")
    assert teaching.check("heavy-ball-correction", answer, quiet=True)
    teaching.show_solutions(False)
    monkeypatch.delitem(sys.modules, "IPython")
    with pytest.raises(SystemExit, match="MEMLESS_SOLUTIONS=1"):
        teaching.solution("heavy-ball-correction")
