"""The public API as the core issue wrote it, the registry, and the docstring examples."""
import configparser
import subprocess
import sys
import doctest
import importlib
import os
import pathlib
import pkgutil

import autograd.numpy as anp
import numpy as np
import pytest

import memless
from memless.optimizers import BUILTIN

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT_DIR = pathlib.Path(ROOT)


def loss(theta):
    return 0.5 * (1.5 - 2.0 * theta[0] * theta[1]) ** 2 + 0.1 * anp.sum(anp.sin(theta))


@pytest.mark.slow
def test_issue_snippet_runs_as_written():
    opt = memless.get_optimizer("adamw", beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01)
    theta = np.array([2.8, 3.5])
    M = memless.correction(opt, loss, theta, lr=1e-3)
    Mn = memless.correction(opt, loss, theta, lr=1e-3, n=50)
    parts = memless.correction_terms(opt, loss, theta, lr=1e-3)
    path = memless.trajectory(opt, loss, theta, lr=1e-3, steps=500)
    ml = memless.trajectory(opt, loss, theta, lr=1e-3, steps=500, memoryless=True)
    ml0 = memless.trajectory(opt, loss, theta, lr=1e-3, steps=500, memoryless=True, corrected=False)
    study = memless.order_study(memless.get_optimizer("adamw", beta1=0.6, beta2=0.75, eps=0.1),
                                loss, np.array([0.3, 0.5]), horizon=0.5, lrs=[0.01, 0.005, 0.0025])
    assert M.shape == Mn.shape == (2,) and not np.allclose(M, Mn)
    np.testing.assert_allclose(sum(parts.values()), M, rtol=1e-12)
    assert path.shape == ml.shape == ml0.shape == (501, 2)
    assert isinstance(study.order_corrected, float) and isinstance(study.order_uncorrected, float)
    assert 1.7 < study.order_corrected < 2.3 and 0.8 < study.order_uncorrected < 1.2
    assert len(study.errors_corrected) == len(study.errors_uncorrected) == 3


def test_builtins_are_listed_once():
    """BUILTIN is the one list: setup.cfg declares no built-in entry point, discovery finds every built-in."""
    config = configparser.ConfigParser()
    config.read(os.path.join(ROOT, "setup.cfg"))
    assert not config.has_section("options.entry_points") or \
        "memless.optimizers" not in config["options.entry_points"]
    for name, cls in BUILTIN.items():
        assert cls.name == name
    found = memless.optimizers.registry.entries(refresh=True)
    for name in BUILTIN:
        assert found[name].factory is BUILTIN[name] and found[name].builtin


def test_every_optimizer_is_usable_for_any_loss():
    theta = np.array([0.2, -0.3, 0.7, 1.1])
    quartic = lambda t: anp.sum(t ** 4) / 4 + anp.prod(anp.cos(t))
    for name in memless.available():
        opt = memless.get_optimizer(name)
        assert opt.name == name
        n = None if opt.declared_decay() else 50      # memory that does not decay has no limit M
        if opt.needs_matrices:      # the same loss over one 2 x 2 matrix
            M = memless.correction(opt, lambda p: quartic(anp.ravel(p["W"])), {"W": theta.reshape(2, 2)}, lr=1e-3,
                                   n=n)
        else:
            M = memless.correction(opt, quartic, theta, lr=1e-3, n=n)
        assert M.shape == theta.shape and np.all(np.isfinite(M))


def test_hyperparameters_and_repr():
    opt = memless.get_optimizer("adamw", beta2=0.99)
    assert opt.hyper == dict(beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.01, eps_inside=True)
    assert repr(opt) == "AdamW(beta1=0.9, beta2=0.99, eps=1e-08, weight_decay=0.01, eps_inside=True)"
    assert opt == memless.get_optimizer("adamw", beta2=0.99) != memless.get_optimizer("adamw")
    assert memless.get_optimizer("lion").hyper == dict(rho1=0.9, rho2=0.99, weight_decay=0.0,
                                                       k="l1-smooth", eps=1e-8, kappa=1e4)


def _modules():
    yield memless
    for info in pkgutil.walk_packages(memless.__path__, "memless."):
        if info.name != "memless.__main__":
            yield importlib.import_module(info.name)


@pytest.mark.parametrize("module", list(_modules()), ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


DOCUMENTS = ["README.md"] + sorted(str(p.relative_to(ROOT_DIR)) for p in (ROOT_DIR / "docs" / "pages").rglob("*.md"))

#: runs each block of one document in a fresh namespace, in order, and names the first that fails
_RUN_BLOCKS = """
import re, sys, traceback
OPTIONAL = {"torch", "jax", "optax", "matplotlib", "sklearn", "mnist1d", "PIL"}
text = open(sys.argv[1], encoding="utf-8").read()
blocks = [b for b in re.findall(r"```python\\n(.*?)```", text, flags=re.S) if not b.startswith((" ", "# not run here"))]
for number, block in enumerate(blocks, 1):
    try:
        exec(compile(block, f"{sys.argv[1]}, block {number}", "exec"), {"__name__": "__block__"})
    except ModuleNotFoundError as exc:
        if exc.name not in OPTIONAL:
            raise
        print(f"block {number}: skipped, {exc.name} (an optional extra) is not installed", file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        sys.exit(f"{sys.argv[1]}: python block {number} of {len(blocks)} does not run on its own")
print(len(blocks))
"""


@pytest.mark.slow
@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_python_block_of_the_readme_and_the_docs_runs_on_its_own(document, tmp_path):
    """Each top-level ```python block of README.md and of every documentation page runs as written,
    on its own (a fresh namespace: nothing from an earlier block), in a process of its own per
    document; indented fragments are skipped, and so is a block that says first that it is not run
    here (and why)."""
    env = dict(os.environ, MPLBACKEND="Agg", MEMLESS_FIGURES=str(tmp_path))
    run = subprocess.run([sys.executable, "-c", _RUN_BLOCKS, str(ROOT_DIR / document)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=900)   # generous guard against a hang
    assert run.returncode == 0, run.stderr[-3000:]
    if document == "README.md":
        assert int(run.stdout.split()[-1]) >= 1


# -- the names of 0.6 after the move into layers (0.7) --------------------------------------

def test_public_module_names_still_work_without_a_warning():
    code = ("import warnings; warnings.simplefilter('error')\n"
            "import memless, memless.plot, memless.minibatch, memless.losses, memless.testing, memless.extend\n"
            "import memless.frameworks, memless.frameworks.torch, memless.frameworks.jax, memless.frameworks.blackbox\n"
            "import memless.show.plot as real\n"
            "assert all(getattr(memless.plot, n) is getattr(real, n) for n in real.__all__)\n"
            "assert memless.plot.save is real.save and memless.plot.regime_map is real.regime_map\n"
            "from memless.minibatch import C3, kappa, permutation_average\n"
            "from memless.frameworks.torch import objective, flat, Compensated, TorchOptimizer\n"
            "from memless.frameworks.jax import objective as jo, OptaxTransformation\n"
            "from memless.frameworks.blackbox import StepFunction\n"
            "from memless.frameworks import ExternalLoss\n"
            "import memless.studies.trajectories\n"
            "assert callable(memless.trajectory) and memless.trajectory.__name__ == 'trajectory'\n"
            "assert memless.analyze is memless.studies.analysis.analyze\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)  # generous guard
    assert out.returncode == 0, out.stderr[-2000:]


@pytest.mark.parametrize("old, new", [("memless.analysis", "memless.studies.analysis"),
                                      ("memless.report", "memless.show.report"),
                                      ("memless.registry", "memless.optimizers.registry"),
                                      ("memless.frameworks.external", "memless.frameworks.losses.external")])
def test_an_old_module_name_is_the_moved_module_with_a_deprecation_warning(old, new):
    code = ("import importlib, sys, warnings\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    warnings.simplefilter('always')\n"
            f"    old = importlib.import_module({old!r})\n"
            f"new = importlib.import_module({new!r})\n"
            "assert old is new, (old, new)\n"
            f"assert new.__spec__.name == {new!r} and new.__name__ == {new!r}\n"
            "ours = [w for w in caught if w.category is DeprecationWarning and 'memless 0.7' in str(w.message)]\n"
            "messages = [str(w.message) for w in ours]\n"
            f"assert messages == [{old!r} + ' moved to ' + {new!r} + ' in memless 0.7; the old name goes in 0.8'], "
            "messages\n"
            "assert ours[0].filename == '<string>', ours[0].filename\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)  # generous guard
    assert out.returncode == 0, out.stderr[-2000:]


def test_the_06_names_that_left_a_module_still_read_with_a_warning_at_the_users_line(tmp_path):
    """memless.core's report vocabulary went to memless.studies.meanings; 0.6's memless.engine held
    names now in memless.engine.corrections; plain ``import memless`` gave memless.analysis; an
    optimizer answered opt.structure(g); a 0.6 class defined structure itself.  All still work until
    0.8, each with a DeprecationWarning attributed to the user's own line."""
    script = tmp_path / "old_script.py"
    script.write_text(
        "import memless\n"                                                              # 1
        "analyze = memless.analysis.analyze\n"                                          # 2
        "from memless.core import MemoryOptimizer, Structure, Effect, VECTOR_LOSSES\n"  # 3
        "from memless.engine import MAX_HISTORY\n"                                      # 4
        "opt = memless.get_optimizer('heavy-ball', beta=0.5)\n"                        # 5
        "said = opt.structure([[1.0]])\n"                                               # 6
        "class Old(memless.optimizers.HeavyBall):\n"                                    # 7
        "    def structure(self, gradients):\n"
        "        return None\n"
        "from memless.studies import meanings, analysis, trajectories\n"
        "from memless.contract import optimizer as contract\n"
        "from memless.engine import corrections\n"
        "assert analyze is analysis.analyze and MemoryOptimizer is contract.MemoryOptimizer\n"
        "assert Structure is meanings.Structure and Effect is meanings.Effect and VECTOR_LOSSES == meanings.VECTOR_LOSSES\n"
        "assert MAX_HISTORY == corrections.MAX_HISTORY and said.effect == meanings.Effect.REGULARIZING\n"
        "assert meanings.structure(Old(beta=0.5), [[1.0]]) is None\n")
    out = subprocess.run([sys.executable, "-W", "default", str(script)], capture_output=True, text=True,
                         timeout=600, cwd=tmp_path)                                     # generous guard
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [line for line in out.stderr.splitlines() if "DeprecationWarning" in line]
    assert [line.split(":")[1] for line in lines] == ["2", "3", "4", "6", "7"], out.stderr
    assert all(line.startswith(str(script)) for line in lines)
    assert "memless.analysis moved to memless.studies.analysis" in lines[0]
    assert "HeavyBall.structure moved in memless 0.7: use memless.studies.meanings.structure" in lines[3]
    assert "Old defines structure: memless 0.7 still reads them" in lines[4]


def test_ci_runs_the_readmes_two_set_up_commands_verbatim():
    """.ci/run installs the project and runs the tests exactly as the README's set-up says."""
    import re
    readme = (ROOT_DIR / "README.md").read_text(encoding="utf-8")
    setup = readme.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    commands = [block.strip() for block in re.findall(r"```bash\n(.*?)```", setup, flags=re.S)]
    assert len(commands) == 2 and "memless report lion" in commands[0] and "pytest" in commands[1]
    ci = (ROOT_DIR / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert commands[0].replace("python3 -m venv .venv && ", "") in ci
    assert commands[1] in ci and ci[-1] == commands[1]


def test_progress_is_one_redrawn_line_in_a_terminal_and_one_line_a_step_elsewhere(monkeypatch):
    import io

    from memless.studies.analysis import print_progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setenv("COLUMNS", "80")
    for stream, live in ((Terminal(), True), (io.StringIO(), False)):
        memless.analyze(memless.get_optimizer("heavy-ball", beta=0.5), "curvy", lr=0.01, points=2,
                        evidence_losses=(), progress=print_progress("analyze", stream))
        text = stream.getvalue()
        if live:           # redrawn in place: carriage returns, one newline at the very end, a full bar there
            assert text.count("\n") == 1 and text.endswith("\n") and text.count("\r") >= 3
            assert "[########################]" in text.rsplit("\r", 1)[-1]
            frames = text.replace("\n", "").split("\r")[1:]
            assert all(len(frame) <= 79 for frame in frames)                 # never wraps at 80 columns
        else:
            lines = text.splitlines()
            assert len(lines) >= 3 and all(line.startswith("analyze: ") for line in lines)
            assert len(set(lines)) == len(lines)                              # no line said twice
            assert lines[-1].startswith("analyze: ") and lines[-1].endswith("done")
