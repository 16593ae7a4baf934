"""The single optimizer contract and the module boundaries, as tests.

* callers never ask what kind of optimizer they hold: a generic optimizer (only
  ``direction``) runs through every analysis and gives the numbers of the built-in
  it re-implements;
* no module imports another module's underscore names, and ``isinstance(...,
  MomentumOptimizer)`` lives only in core and the engine;
* the analysis is computed without rich; the report renders it;
* each channel's formula text has a function beside it, held to the engine's output;
* equality compares all state; ``loss`` is a callable or a name everywhere.
"""
import ast
import io
import json
import os
import pathlib
import subprocess
import sys

import autograd.numpy as anp
import numpy as np
import pytest
from rich.console import Console

import memless
import memless.testing
from memless import minibatch
from memless.studies.analysis import Effect, analyze
from memless.losses import REFERENCE_LOSSES, curvy
from memless.studies.modified import summarize
from memless.optimizers import BUILTIN
from memless.show.report import render

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "memless")


def sources(folder=PACKAGE):
    for base, _, files in os.walk(folder):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(base, name)
                yield path, pathlib.Path(path).read_text(encoding="utf-8")


# -- module boundaries -----------------------------------------------------------------

def test_no_module_imports_another_modules_private_names():
    """(A package's __init__ may import its own private submodules: ``from .show import jupyter as _jupyter``.)"""
    offenders = []
    for path, text in sources():
        for node in ast.walk(ast.parse(text)):
            own_submodule = path.endswith("__init__.py") and node.__class__ is ast.ImportFrom and node.level == 1 \
                and node.module is None
            if isinstance(node, ast.ImportFrom) and not own_submodule and \
                    (node.level or (node.module or "").startswith("memless")):
                offenders += [f"{os.path.relpath(path, ROOT)}: {alias.name}" for alias in node.names
                              if alias.name.startswith("_") and not alias.name.endswith("__")]
    assert offenders == []


def _import_graph():
    """memless's modules and the memless modules each imports, function-local imports included."""
    modules = {}
    for path, _ in sources():
        name = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
        modules[name[:-len(".__init__")] if name.endswith(".__init__") else name] = path
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.endswith("__init__.py") else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(pathlib.Path(path).read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - node.level + 1])
                    target = base + ("." + node.module if node.module else "")
                else:
                    target = node.module or ""
                candidates = [target] + [f"{target}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                continue
            found = {c for c in candidates if c in modules and c != name}
            graph[name] |= found | {parent for c in found for parent in _packages(c)
                                    if parent in modules and parent not in _packages(name) and parent != name}
    return graph


def _packages(module):
    """The packages Python initializes before ``module``: memless.engine for memless.engine.objective."""
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def _cycles(graph):
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_even_through_function_local_imports():
    graph = _import_graph()
    assert graph["memless.plot"] and "memless.engine.corrections" in graph["memless.studies.analysis"]  # it is read
    assert "memless.engine" in graph["memless.studies.analysis"]        # with the packages an import initializes
    assert _cycles(graph) == []
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]   # and cycles are seen


#: the layers, lowest first; a module imports only from its own layer or lower ones
#: (README, ARCHITECTURE).  Every module is in exactly one: a new module needs a decision.
LAYERS = [
    ("groundwork", ["memless.errors", "memless.checks", "memless.files", "memless.parameters", "memless._json",
                    "memless._views", "memless._version", "memless.deprecation", "memless.numerics"]),
    ("contract", ["memless.contract", "memless.losses"]),
    ("optimizers", ["memless.optimizers"]),
    ("engine", ["memless.engine"]),
    ("studies and adapters", ["memless.studies", "memless.frameworks.losses", "memless.frameworks.optimizers"]),
    ("presentation", ["memless.show"]),
    ("public faces and tools", ["memless", "memless.__main__", "memless.cli", "memless.plot", "memless.minibatch",
                                "memless.frameworks", "memless.testing", "memless.extend", "memless.teaching",
                                "memless.experiments"]),
]


def _layer(module):
    """The index of the layer of the longest prefix of ``module`` named in LAYERS."""
    best = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    return best[0] if best else None


def test_every_module_imports_only_its_own_layer_or_lower():
    graph = _import_graph()
    assert [m for m in graph if _layer(m) is None] == []
    upward = sorted(f"{a} ({LAYERS[_layer(a)][0]}) -> {b} ({LAYERS[_layer(b)][0]})"
                    for a, targets in graph.items() for b in targets if _layer(b) > _layer(a))
    assert upward == []
    assert _layer("memless.frameworks.torch") == 6 and _layer("memless.frameworks.losses.torch") == 4


def test_the_math_core_never_reaches_presentation():
    graph = _import_graph()
    reached, todo = set(), ["memless.engine", "memless.studies.analysis", "memless.studies.trajectories",
                            "memless.studies.modified"]
    while todo:
        module = todo.pop()
        for other in graph[module] - reached:
            reached.add(other)
            todo.append(other)
    assert reached and not reached & {"memless", "memless.plot", "memless.show.plot", "memless.show.report",
                                      "memless.show.jupyter", "memless.cli"}


def test_the_set_up_of_a_problem_is_written_once():
    """Checking the optimizer, resolving the loss and binding the optimizer to its layout is
    memless.engine.objective.problem; no other function spells the sequence out."""
    offenders = []
    for path, text in sources():
        if path.endswith(os.path.join("engine", "objective.py")):
            continue
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                called = {n.func.id for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
                if {"resolve_loss", "bound"} <= called:
                    offenders.append(f"{os.path.relpath(path, ROOT)}: {node.name}")
    assert offenders == []


def test_isinstance_momentum_only_in_the_contract_and_the_engine():
    where = set()
    for path, text in sources():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("isinstance", "issubclass") \
                    and "MomentumOptimizer" in ast.dump(node):
                where.add(os.path.relpath(path, PACKAGE).replace(os.sep, "/"))
    assert where <= {"contract/optimizer.py", "engine/corrections.py", "engine/second_order.py"}


def test_sources_parse_as_python_3_9():
    """setup.cfg says python_requires >= 3.9: every file must at least parse there."""
    folders = [PACKAGE, os.path.join(ROOT, "tests"), os.path.join(ROOT, "plugins"),
               os.path.join(ROOT, "tutorials"), os.path.join(ROOT, "benchmarks")]
    for folder in folders:
        for path, text in sources(folder):
            ast.parse(text, filename=path, feature_version=(3, 9))


def test_analysis_does_not_import_rich():
    code = ("import sys, memless\nfrom memless.studies.analysis import analyze\n"
            "a = analyze(memless.get_optimizer('heavy-ball', beta=0.3), points=2, evidence_steps=20)\n"
            "a.to_json()\nprint(sorted(m for m in sys.modules if m == 'rich' or m.startswith('rich.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_import_does_not_load_scipy_integrate():
    code = "import sys, memless\nprint('scipy.integrate' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_nothing_cites_a_file_outside_the_repository():
    for folder in (PACKAGE, os.path.join(ROOT, "tutorials")):
        for path, text in sources(folder):
            assert "MATH.md" not in text and "seed 004" not in text, path
    documents = [os.path.join(ROOT, "README.md")] + [str(p) for p in pathlib.Path(ROOT, "docs", "pages").rglob("*.md")]
    for document in documents:
        text = pathlib.Path(document).read_text(encoding="utf-8")
        assert "MATH.md" not in text and "seed 004" not in text, document


# -- one contract: a generic optimizer gets every analysis -----------------------------

class GenericHeavyBall(memless.MemoryOptimizer):
    """Heavy-ball written only as F^(n) = sum_k beta^k grad L(theta^(n-k)), k < window: no channels.

    At beta = 0.3 the terms past the window weigh beta^28 < 3e-15: it is heavy-ball to rounding."""

    name = "generic-heavy-ball"
    hyperparameters = (memless.decay("beta", 0.3),)
    window = 28

    def direction(self, history, gradient):
        total = 0.0
        for k, theta in enumerate(history[: self.window]):
            total = total + self.beta ** k * gradient(theta)
        return total

    def memory_length(self):
        return 1.0 / (1.0 - self.beta)


LOSS = REFERENCE_LOSSES["curvy"]


def test_generic_optimizer_trajectory_and_correction_equal_the_builtin():
    generic, builtin = GenericHeavyBall(beta=0.3), memless.get_optimizer("heavy-ball", beta=0.3)
    for memoryless in (False, True):
        a = memless.trajectory(generic, curvy, LOSS.start, lr=0.01, steps=30, memoryless=memoryless)
        b = memless.trajectory(builtin, curvy, LOSS.start, lr=0.01, steps=30, memoryless=memoryless)
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
    terms = memless.correction_terms(generic, curvy, LOSS.start, lr=0.01)
    assert list(terms) == ["memory"]
    np.testing.assert_allclose(terms["memory"], memless.correction(builtin, curvy, LOSS.start, lr=0.01), rtol=1e-9)


@pytest.mark.slow
def test_generic_optimizer_report_matches_the_builtin():
    generic = analyze(GenericHeavyBall(beta=0.3), "curvy", lr=0.01, points=3, evidence_steps=20)
    builtin = analyze(memless.get_optimizer("heavy-ball", beta=0.3), "curvy", lr=0.01, points=3, evidence_steps=20)
    assert generic.net_effect == builtin.net_effect == Effect.REGULARIZING
    assert generic.net_strength == pytest.approx(builtin.net_strength, rel=1e-8)
    assert generic.order.corrected == pytest.approx(builtin.order.corrected, rel=1e-6)
    (row,) = generic.channels
    assert row.name == "memory" and row.decay is None and row.declared is None
    console = Console(file=io.StringIO(), width=100, color_system=None)
    console.print(render(generic))
    text = " ".join(console.file.getvalue().replace("│", " ").split())
    assert "Memory regularizes: it penalizes ||grad L||^2. Measured on every evidence loss" in text
    assert generic.basis == "measured" and builtin.basis == "declared"
    data = json.loads(generic.to_json())
    assert data["channels"][0]["decay"] is None and data["net_effect"] == "regularizing"


@pytest.mark.slow
def test_generic_optimizer_modified_equation_and_kit():
    generic, builtin = GenericHeavyBall(beta=0.3), memless.get_optimizer("heavy-ball", beta=0.3)
    for theta in (LOSS.start, np.array([-0.7, 0.2, 0.9])):
        np.testing.assert_allclose(memless.modified_equation(generic, curvy, lr=0.01).rhs(0.0, theta),
                                   memless.modified_equation(builtin, curvy, lr=0.01).rhs(0.0, theta), rtol=1e-10)
    summary = summarize(generic, "curvy", lr=0.01, steps=2)
    reference = summarize(builtin, "curvy", lr=0.01, steps=2)
    np.testing.assert_allclose(summary.errors_ode, reference.errors_ode, rtol=1e-5)
    assert summary.implicit.loss is None          # the generic optimizer declares none
    result = memless.testing.check_optimizer(GenericHeavyBall(beta=0.3), orders=False)
    assert result.passed and {c.name for c in result.checks} == {"direction", "streaming", "correction"}


def test_generic_optimizer_on_mini_batches_equals_the_builtin():
    batches = [lambda t, s=s: curvy(t) + 0.3 * s * anp.sum(t ** 3) for s in (-1.0, 0.5, 1.0)]
    generic, builtin = GenericHeavyBall(beta=0.3), memless.get_optimizer("heavy-ball", beta=0.3)
    a = minibatch.minibatch_trajectory(generic, batches, LOSS.start, lr=0.01, steps=12, seed=3)
    b = minibatch.minibatch_trajectory(builtin, batches, LOSS.start, lr=0.01, steps=12, seed=3)
    np.testing.assert_allclose(a, b, rtol=1e-11)
    order = [2, 0, 1, 1, 0]
    np.testing.assert_allclose(minibatch.minibatch_correction(generic, batches, order, LOSS.start, lr=0.01),
                               minibatch.minibatch_correction(builtin, batches, order, LOSS.start, lr=0.01),
                               rtol=1e-9)
    mean, se = minibatch.permutation_monte_carlo(generic, batches, LOSS.start, lr=0.01, samples=6)
    assert mean.shape == LOSS.start.shape and np.all(se >= 0)


def test_progress_is_a_callback_the_renderer_supplies():
    calls = []
    analyze(memless.get_optimizer("heavy-ball", beta=0.3), points=3, evidence_steps=20,
            progress=lambda done, total, label: calls.append((done, total, label)))
    done = [c[0] for c in calls]
    assert done == sorted(done) and done[0] == 1 and len(calls) >= 5
    assert calls[-1][0] == calls[-1][1] and calls[-1][2] == "done" and calls[0][2] == "trajectory"


# -- one source of truth per optimizer -------------------------------------------------

CLOSED_FORM_CASES = [(name, hp) for name in sorted(BUILTIN) for hp in (
    {}, {"eps": 0.05, "eps_inside": False}, {"weight_decay": 0.1}, {"k": "l2"}, {"k": "sign"},
    {"k": "logcosh", "kappa": 3.0}, {"k": "nuclear"}, {"orthogonalize": "polar"}, {"nesterov": False},
    {"adjust_lr_fn": "match_rms_adamw", "weight_decay": 0.0})
    if set(hp) <= {h.name for h in BUILTIN[name].hyperparameters} and issubclass(BUILTIN[name], memless.MomentumOptimizer)]


@pytest.mark.parametrize("name,hp", CLOSED_FORM_CASES, ids=[f"{n}-{h}" for n, h in CLOSED_FORM_CASES])
def test_every_channel_formula_has_its_function_and_it_equals_the_engine(name, hp):
    """Each channel with memory states M_l as text and as closed_form(h, theta, g, HF); both
    describe the engine's term (checked numerically on a loss with real third derivatives)."""
    from memless.numerics.autodiff import jvp
    from memless.engine.corrections import forward_mode_only
    from memless.engine.objective import Objective

    opt = memless.get_optimizer(name, **hp)
    loss = REFERENCE_LOSSES["factorization"] if opt.needs_matrices else LOSS
    opt = opt.bind(getattr(loss.loss, "layout", None))
    obj = Objective(loss.loss)
    h = 1e-3
    for theta in (loss.start, loss.start + np.sin(np.arange(loss.start.size))):
        g = obj.gradient(theta)
        F = np.asarray(opt.limit_direction(theta, obj.gradient), dtype=float)
        HF = np.asarray(jvp(obj.gradient, theta, F)[1], dtype=float)
        with forward_mode_only():             # the engine's own route, not the closed forms themselves
            terms = memless.correction_terms(opt, loss.loss, theta, lr=h)
        for ch in opt.channels():
            if ch.decay == 0:
                assert not np.any(terms[ch.name])
                continue
            assert ch.formula and ch.closed_form is not None, f"{name}.{ch.name} has no closed form"
            np.testing.assert_allclose(ch.closed_form(h, theta, g, HF), terms[ch.name], rtol=1e-9, atol=1e-15)


def test_weight_decay_is_one_piece():
    for name in ("adamw", "nadam", "lion"):
        assert issubclass(BUILTIN[name], memless.DecoupledWeightDecay)
    assert not issubclass(BUILTIN["adam"], BUILTIN["adamw"])
    plain = memless.get_optimizer("adamw", weight_decay=0.0)
    assert [ch.name for ch in plain.channels()] == ["first-moment", "second-moment"]
    theta = LOSS.start
    decayed = memless.get_optimizer("adamw", weight_decay=0.1)
    gradient = memless.engine.objective.Objective(curvy).gradient
    np.testing.assert_allclose(decayed.limit_direction(theta, gradient),
                               plain.limit_direction(theta, gradient) + 0.1 * theta, rtol=1e-14)
    folder = os.path.join(PACKAGE, "optimizers")
    text = "".join(pathlib.Path(os.path.join(folder, f)).read_text(encoding="utf-8") for f in os.listdir(folder) if f.endswith(".py"))
    assert "parameter_signal" not in text and '"weight-decay"' not in text


def test_optimizer_classes_have_real_signatures_and_documented_hyperparameters():
    import inspect
    adam = type(memless.get_optimizer("adam"))
    signature = inspect.signature(adam)
    assert list(signature.parameters) == [hp.name for hp in adam.hyperparameters]
    assert signature.parameters["beta1"].default == 0.9
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in signature.parameters.values())
    assert "Hyperparameters (keyword arguments):" in adam.__doc__
    assert all(f"    {hp.name} = {hp.default!r}: " in adam.__doc__ for hp in adam.hyperparameters)
    for name, cls in BUILTIN.items():                 # every built-in: its signature is its hyperparameters
        assert [p for p in inspect.signature(cls).parameters] == [hp.name for hp in cls.hyperparameters], name
    assert "width" in inspect.signature(Window).parameters          # a class with its own __init__ keeps it


def test_an_add_on_after_the_optimizer_it_extends_is_refused_when_the_class_is_made():
    """With the bases reversed, Adam's channels and combine never reach the weight decay: refused at
    class creation instead of accepting weight_decay=0.1 and dropping it."""
    adam = BUILTIN["adam"]
    with pytest.raises(TypeError, match="put DecoupledWeightDecay before"):
        type("Reversed", (adam, memless.DecoupledWeightDecay),
             {"hyperparameters": adam.hyperparameters + (memless.weight_decay(0.01),)})
    with pytest.raises(TypeError, match="does not declare its hyperparameter"):
        type("Undeclared", (memless.DecoupledWeightDecay, adam), {})
    fine = type("Fine", (memless.DecoupledWeightDecay, adam),
                {"hyperparameters": adam.hyperparameters + (memless.weight_decay(0.01),)})
    assert [ch.name for ch in fine(weight_decay=0.1).channels()][-1] == "weight-decay"


class Window(memless.MemoryOptimizer):
    def __init__(self, width, **values):
        super().__init__(**values)
        self.width = width

    def direction(self, history, gradient):
        return sum(gradient(t) for t in history[: self.width]) / min(self.width, len(history))


def test_equality_compares_all_state():
    assert Window(4) != Window(16) and Window(4) == Window(4)
    assert memless.get_optimizer("adamw") == memless.get_optimizer("adamw")
    assert memless.get_optimizer("adamw") != memless.get_optimizer("adamw", beta2=0.99)
    assert memless.get_optimizer("adam") != memless.get_optimizer("adamw", weight_decay=0.0)


# -- loss means one thing ----------------------------------------------------------------

def test_loss_is_a_callable_or_a_name_everywhere():
    opt = memless.get_optimizer("heavy-ball", beta=0.3)
    by_name = analyze(opt, "curvy", lr=0.01, points=3, evidence_steps=20)
    by_function = analyze(opt, curvy, lr=0.01, theta=LOSS.start, points=3, evidence_steps=20)
    assert by_name.net_strength == pytest.approx(by_function.net_strength, rel=1e-12)
    assert by_function.loss == "curvy"
    np.testing.assert_allclose(memless.correction(opt, "curvy", None, lr=0.01),
                               memless.correction(opt, curvy, LOSS.start, lr=0.01))
    assert summarize(opt, curvy, lr=0.01, theta=LOSS.start, steps=10).loss == "curvy"
    with pytest.raises(memless.LossError, match="theta is required with a loss given as a callable"):
        analyze(opt, curvy)
