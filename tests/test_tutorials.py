"""Every tutorial runs as a script, in its own process, and asserts the claim it teaches.

A tutorial that stops teaching the truth fails here.  Each runs with its
exercises unanswered, so the checker must reject the stub and accept the
solution it then reveals.
"""
import os
import subprocess
import sys

import pytest

from memless import MemlessError, teaching

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TUTORIALS = os.path.join(ROOT, "tutorials")
SCRIPTS = sorted(f for f in os.listdir(TUTORIALS) if f[:2].isdigit() and f.endswith(".py"))
TIME_LIMIT = 240          # seconds per tutorial; they take 1-25 s on a 2-core machine


def test_there_are_six_tutorials():
    assert len(SCRIPTS) >= 6


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_tutorial_runs_and_its_claims_hold(script, tmp_path):
    env = dict(os.environ, PYTHONHASHSEED="0", MPLBACKEND="Agg")
    result = subprocess.run([sys.executable, os.path.join(TUTORIALS, script)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=TIME_LIMIT)
    assert result.returncode == 0, f"{script} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr
    if "teaching.check(" in open(os.path.join(TUTORIALS, script)).read():
        assert "✗" in result.stdout and "✓" in result.stdout     # the stub is rejected, the solution accepted


@pytest.mark.parametrize("script", SCRIPTS)
def test_tutorial_is_a_jupytext_percent_script(script):
    text = open(os.path.join(TUTORIALS, script)).read()
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
