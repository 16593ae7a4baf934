"""Bad input, by category, through the API and the CLI: a one-line memless error naming what is
wrong and what is allowed (exit 2 on the CLI, a JSON error object with --json), never a traceback.

Categories: plugins that misbehave at run time; divergence diagnosed as divergence; sizes and
ladders refused before work; types; and a hypothesis test feeding random hostile values to every
argument of the public functions.
"""
import json
import os
import tempfile
import subprocess
import sys

import autograd.numpy as anp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import memless
from memless.engine.corrections import memory_profile
from memless import minibatch
from memless.studies.analysis import analyze
from memless.cli import main, parse_value
from memless.losses import curvy
from memless.studies.modified import summarize

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "plugins")


def _load_fixtures():
    """The fixture module, loaded from its file: not through sys.path, where the registry would
    also discover the fixture distributions for every later test."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("fixture_plugins_direct",
                                                  os.path.join(FIXTURES, "fixture_plugins.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fp = _load_fixtures()

T0 = np.array([0.3, 0.5, -0.4])


def cli(*args):
    env = dict(os.environ, COLUMNS="120", PYTHONPATH=FIXTURES + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "memless", *args], capture_output=True, text=True, env=env)


def one_memless_line(stderr):
    lines = [line for line in stderr.splitlines() if line.startswith("memless: error: ")]
    return len(lines) == 1 and "Traceback" not in stderr


# -- plugins that misbehave at run time ------------------------------------------------------

MISBEHAVING = [
    (fp.ReturnsScalar(), "returns-scalar", r"direction\(\) returned shape \(\) at step 0"),
    (fp.WrongLength(), "wrong-length", r"direction\(\) returned shape \(\d+,\) at step 0; it must return theta.s shape"),
    (fp.Raises(), "raises", r"direction\(\) raised RuntimeError at step 0: boom"),
    (fp.ReturnsNaN(), "returns-nan", r"direction\(\) returned a non-finite value at step 0 where the iterate and the "
                                     r"loss gradient are finite"),
]


@pytest.mark.parametrize("optimizer,name,message", MISBEHAVING, ids=[m[1] for m in MISBEHAVING])
def test_misbehaving_optimizer_is_named_through_the_api(optimizer, name, message):
    for call in (lambda: memless.trajectory(optimizer, curvy, T0, lr=0.01, steps=3),
                 lambda: memless.trajectory(optimizer, curvy, T0, lr=0.01, steps=3, memoryless=True),
                 lambda: analyze(optimizer, "curvy", points=2, steps=5)):
        with pytest.raises(memless.OptimizerError, match=message) as exc:
            call()
        assert str(exc.value).startswith(f"{type(optimizer).__name__}: ")


@pytest.mark.parametrize("name,message", [(m[1], m[2]) for m in MISBEHAVING], ids=[m[1] for m in MISBEHAVING])
def test_misbehaving_plugin_is_named_through_the_cli(name, message):
    import re
    result = cli("report", name, "--json", "--quiet")
    assert result.returncode == 2 and one_memless_line(result.stderr), result.stderr
    assert re.search(f"{name}: .*{message}", result.stderr)
    assert "error" in json.loads(result.stdout)


def test_correction_of_an_optimizer_written_with_plain_numpy_is_named():
    class PlainNumpy(memless.MemoryOptimizer):
        window = 2

        def direction(self, history, gradient):
            return np.tanh(np.asarray(gradient(history[0]), dtype=float) + np.asarray(gradient(history[1]),
                                                                                      dtype=float))
    with pytest.raises(memless.OptimizerError, match="PlainNumpy: differentiating its direction raised .* autograd"):
        memless.correction(PlainNumpy(), curvy, T0, lr=0.01, n=3)


# -- divergence, named, in every command ---------------------------------------------------

def test_divergence_names_the_optimizer_everywhere():
    opt = memless.get_optimizer("heavy-ball")
    with pytest.raises(memless.DivergenceError, match=r"heavy-ball diverged at step \d+ \(lr=10\)"):
        memless.trajectory(opt, "rosenbrock", None, lr=10.0, steps=50)
    result = cli("report", "heavy-ball", "--lr", "5", "--loss", "rosenbrock", "--quiet")
    assert result.returncode == 2 and one_memless_line(result.stderr)
    assert "heavy-ball diverged at step" in result.stderr
    result = cli("compare", "heavy-ball", "lion", "--lr", "5", "--loss", "rosenbrock", "--json", "--quiet", "--fast")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert "heavy-ball diverged" in rows[0]["error"] and rows[1]["optimizer"] == "lion" and "error" not in rows[1]


def test_modified_survives_a_diverging_iteration_and_says_so():
    summary = summarize(memless.get_optimizer("nesterov"), "bilinear", lr=1e-3)
    assert summary.check_setting.startswith("tamed") and abs(summary.order_ode - 2) < 0.3
    assert any("outside the range" in c for c in summary.caveats)


# -- sizes and ladders -----------------------------------------------------------------------

@pytest.mark.parametrize("call,message", [
    (lambda: memless.trajectory(memless.get_optimizer("adam"), curvy, T0, lr=0.1, steps=10 ** 9),
     "steps=1000000000: 1e\\+09 optimizer steps is more than memless.checks.MAX_STEPS"),
    (lambda: memless.trajectory(memless.get_optimizer("adam"), curvy, T0, lr=0.1, steps=10 ** 12),
     "MAX_STEPS"),
    (lambda: memless.trajectory(memless.get_optimizer("adam"), lambda t: (t ** 2).sum(), np.ones(10 ** 4), lr=0.1,
                                steps=10 ** 6), "74.5 GiB of arrays is more than memless.checks.MAX_BYTES"),
    (lambda: memless.order_study(memless.get_optimizer("adam"), curvy, T0, horizon=1.0, lrs=[1e-9, 2e-9]),
     "horizon/min\\(lrs\\)=1000000000: 1e\\+09 optimizer steps is more than"),
    (lambda: memless.order_study(memless.get_optimizer("adam"), curvy, T0, horizon=0.001, lrs=[0.01, 0.005]),
     "horizon=0.001 is shorter than one step of the largest lr"),
    (lambda: memless.order_study(memless.get_optimizer("adam"), curvy, T0, horizon=1.0, lrs=[0.01, 0.01]),
     "lrs must hold at least two learning rates, all different"),
    (lambda: memless.order_study(memless.get_optimizer("adam"), curvy, T0, horizon=1.0, lrs=[0.01]),
     "at least two learning rates"),
    (lambda: memless.order_study(memless.get_optimizer("adam"), curvy, T0, horizon=1.0, lrs=5),
     "lrs must be a list of learning rates"),
])
def test_sizes_and_ladders_are_refused_before_work(call, message):
    with pytest.raises(memless.MemlessError, match=message):
        call()


# -- types -----------------------------------------------------------------------------------

@pytest.mark.parametrize("call,message", [
    (lambda: memless.correction(memless.get_optimizer("adam"), curvy, T0 + 1j, lr=0.01), "theta must be real"),
    (lambda: minibatch.batch_order(3, 5, seed="x"), "seed must be an integer >= 0 or None"),
    (lambda: minibatch.batch_order(3, 5, seed=1.5), "seed must be an integer >= 0 or None"),
    (lambda: memless.implicit_loss(memless.get_optimizer("adam"), curvy, T0, lr=0.01, seed="0"),
     "seed must be an integer >= 0"),
    (lambda: minibatch.minibatch_trajectory(memless.get_optimizer("adam"), [], T0, lr=0.01, steps=3),
     "losses must be a non-empty list"),
    (lambda: minibatch.permutation_monte_carlo(memless.get_optimizer("adam"), [curvy], T0, lr=0.01, seed=[1]),
     "seed must be an integer >= 0 or None"),
    (lambda: minibatch.C3(1.0), r"beta must be a number in \[0, 1\)"),
    (lambda: minibatch.C4(-0.1), r"beta must be a number in \[0, 1\)"),
    (lambda: minibatch.C3(float("nan")), r"beta must be a number in \[0, 1\)"),
    (lambda: minibatch.kappa(0.9, 1, 0), "m must be an integer >= 2"),
    (lambda: minibatch.kappa(0.9, 3, 3), "position must be an integer in 0..2"),
    (lambda: memless.get_optimizer("adam", beta1=True), "beta1=True is invalid"),
    (lambda: memless.get_optimizer(3), "optimizer name must be a string, got 3"),
    (lambda: memless.correction(memless.get_optimizer("adam"), curvy, T0, lr=0.01, tol=-1), "tol must be"),
    (lambda: memless.get_optimizer("muon", ns_coefficients=(1.0, 2.0)), "ns_coefficients=.* is invalid; allowed: 3"),
    (lambda: memless.get_optimizer("muon", ns_steps=0), r"ns_steps=0 is invalid; allowed: an integer in \[1, 99\]"),
    (lambda: memless.get_optimizer("muon", adjust_lr_fn="sqrt"), "adjust_lr_fn='sqrt' is invalid"),
    (lambda: memless.get_optimizer("lion", k="spectral"), "k='spectral' is invalid"),
    (lambda: memless.correction(memless.get_optimizer("adam"), curvy, {"W": [[1.0, 2.0]]}, lr=0.01),
     r"loss\(params\) raised KeyError: 0 \(params: Layout\(W=\(1, 2\)\), a dict of arrays\)"),
    (lambda: memless.structured(curvy, [1.0, 2.0]), "params must be a dict of named arrays"),
])
def test_types_get_one_line_errors(call, message):
    with pytest.raises(memless.MemlessError, match=message) as exc:
        call()
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("text,value", [
    ("0.99", 0.99), ("3", 3), ("-2e-3", -2e-3), (" 1e-8 ", 1e-8), ("True", True),
    ("1_000", "1_000"), ("٣", "٣"), ("inf", "inf"), ("nan", "nan"), ("0x10", "0x10"), ("1e", "1e"),
])
def test_set_values_follow_plain_ascii_numbers(text, value):
    assert parse_value(text) == value


@pytest.mark.parametrize("setting", ["beta2=1_000", "beta2=٣", "beta2=inf", "beta2=nan", "beta2=0x10"])
def test_set_numbers_a_person_would_misread_are_rejected(setting, capsys):
    assert main(["report", "adamw", "--set", setting, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "beta2=" in err and "allowed: a number in [0, 1)" in err


# -- the hypothesis test: random hostile values to every argument -------------------------------

HOSTILE = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 40), st.just(10 ** 12),
    st.floats(allow_nan=True, allow_infinity=True), st.complex_numbers(max_magnitude=1e3), st.text(max_size=5),
    st.lists(st.floats(-5, 5), max_size=4), st.just(np.zeros((2, 2))), st.just(np.zeros(0)), st.just(np.array(1.0)),
    st.just({"a": 1}), st.just(lambda t: "not a number"), st.just(lambda t: t), st.just(object()),
)


def _quadratic(t):
    return anp.sum(t ** 2) + t[0] * t[1]


def _of_matrix(p):
    return anp.sum(p["W"] ** 4) / 4 + p["W"][0, 0] * p["W"][1, 1]


def _batches():
    return [_quadratic, lambda t: _quadratic(t) + anp.sum(t ** 3)]


# (function, baseline keyword arguments): every call must return, or raise a MemlessError
PUBLIC = [
    (memless.correction, dict(optimizer=memless.get_optimizer("heavy-ball"), loss=_quadratic, theta=np.ones(2),
                              lr=0.01, n=3)),
    (memless.correction_terms, dict(optimizer=memless.get_optimizer("adam"), loss=_quadratic, theta=np.ones(2),
                                    lr=0.01, n=None)),
    (memless.trajectory, dict(optimizer=memless.get_optimizer("lion"), loss=_quadratic, theta=np.ones(2), lr=0.01,
                              steps=3, memoryless=True, correction="exact")),
    (memless.order_study, dict(optimizer=memless.get_optimizer("heavy-ball"), loss=_quadratic, theta=np.ones(2),
                               horizon=0.05, lrs=[0.01, 0.005])),
    (memless.modified_equation, dict(optimizer=memless.get_optimizer("heavy-ball"), loss=_quadratic, lr=0.01, n=None)),
    (memless.implicit_loss, dict(optimizer=memless.get_optimizer("adam"), loss=_quadratic, theta=np.ones(2),
                                 lr=0.01, seed=0)),
    (memless.get_optimizer, dict(name="adamw", beta1=0.9)),
    (minibatch.batch_order, dict(num_batches=3, steps=5, seed=0)),
    (minibatch.minibatch_trajectory, dict(optimizer=memless.get_optimizer("heavy-ball"), losses=_batches(),
                                          theta=np.ones(2), lr=0.01, steps=3, seed=0)),
    (minibatch.minibatch_correction, dict(optimizer=memless.get_optimizer("heavy-ball"), losses=_batches(),
                                          order=[0, 1, 0], theta=np.ones(2), lr=0.01)),
    (minibatch.permutation_average, dict(optimizer=memless.get_optimizer("heavy-ball"), losses=_batches(),
                                         theta=np.ones(2), lr=0.01)),
    (minibatch.multi_epoch_average, dict(optimizer=memless.get_optimizer("heavy-ball"), losses=_batches(),
                                         theta=np.ones(2), lr=0.01, position=1)),
    (minibatch.C3, dict(beta=0.5, n=3)),
    (minibatch.C4, dict(beta=0.5, n=3)),
    (minibatch.kappa, dict(beta=0.5, m=3, position=1)),
    (memory_profile, dict(optimizer=memless.get_optimizer("heavy-ball"), loss=_quadratic, theta=np.ones(2), n=8,
                          points=4)),
    (memless.correction, dict(optimizer=memless.get_optimizer("muon", orthogonalize="polar"), loss=_of_matrix,
                              theta={"W": np.array([[1.0, 0.2], [0.1, 0.8]])}, lr=0.01, n=2)),
    (memless.structured, dict(loss=_of_matrix, params={"W": np.ones((2, 2))})),
    # the entry points of 0.4-0.5: analysis, regime map, probe, frameworks, black boxes, files
    (memless.studies.analysis.analyze, dict(optimizer=memless.get_optimizer("heavy-ball"), loss="bilinear", lr=0.01,
                                    steps=10, points=2, evidence_steps=10, evidence_losses=(), progress=None)),
    (memless.studies.analysis.regime_map, dict(optimizer="heavy-ball", loss="bilinear", x="lr", y="beta", grid=2, lr=0.01,
                                       steps=2, progress=None)),
    (memless.Probe, dict(optimizer=memless.get_optimizer("adamw"), loss=_quadratic, lr=0.01, every=1,
                         theta=np.ones(2))),
]


def _probe_step(params, step, every):
    probe = memless.Probe(memless.get_optimizer("adamw"), _quadratic, lr=0.01, every=every, theta=np.ones(2))
    return probe.step(params, step=step)


def _external(value, gradient, hvp, start, n):
    from memless.frameworks import ExternalLoss
    loss = ExternalLoss(value, gradient, hvp, start=start)
    return memless.correction(memless.get_optimizer("heavy-ball"), loss, None, lr=0.01, n=n)


def _black_box(step, init, limit_n, n):
    from memless.frameworks.blackbox import StepFunction
    return memless.correction(StepFunction(step, init, limit_n=limit_n), _quadratic, np.ones(2), lr=0.01, n=n)


#: where the hostile file names land: a string path is taken inside this folder, never the working directory
_WRITE_FOLDER = tempfile.mkdtemp(prefix="memless-hostile-")


def _written(path):
    from memless.files import write_atomic
    if isinstance(path, str):
        path = os.path.join(_WRITE_FOLDER, path.lstrip(os.sep))
    return write_atomic(path, lambda fh: fh.write(b"ok"))


PUBLIC += [
    (_probe_step, dict(params=np.ones(2), step=None, every=1)),
    (_external, dict(value=lambda t: float(np.sum(t ** 2)), gradient=lambda t: 2 * t, hvp=lambda t, v: 2 * v,
                     start=np.ones(2), n=3)),
    (_black_box, dict(step=lambda g, p, s: (0.5 * s + g,) * 2, init=np.zeros_like, limit_n=20, n=3)),
    (_written, dict(path="out.txt")),
]


@pytest.mark.slow
@pytest.mark.parametrize("function,baseline", PUBLIC, ids=[f.__name__ for f, _ in PUBLIC])
@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_hostile_values_give_a_result_or_a_memless_error(function, baseline, data):
    argument = data.draw(st.sampled_from(sorted(baseline)))
    value = data.draw(HOSTILE)
    kwargs = dict(baseline, **{argument: value})
    try:
        function(**kwargs)
    except memless.MemlessError as exc:
        assert "\n" not in str(exc) and str(exc)
