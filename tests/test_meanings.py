"""What memory means for the loss lives in one table per optimizer family (memless.studies.meanings),
not in the optimizer contract: the tables, their lookup, a plugin's declaration, and 0.6 classes
that still define the report methods."""
import ast
import dataclasses
import os
import pathlib
import warnings

import numpy as np
import pytest

import memless
from memless.extend import GENERIC, Meaning, declare_meaning
from memless.losses import REFERENCE_LOSSES
from memless.optimizers import BUILTIN
from memless.studies import meanings
from memless.studies.analysis import analyze

ROOT = pathlib.Path(__file__).resolve().parent.parent / "memless"
MOVED = ("structure", "implicit_loss", "implicit_loss_at", "sharpness_proxy", "sharpness_formula",
         "reference_losses", "evidence_loss")


def test_the_contract_and_the_optimizers_hold_no_report_vocabulary():
    """No method of MemoryOptimizer or of a built-in says what memory means; no Structure or
    ImplicitLoss is built outside the meanings module."""
    assert not [name for name in MOVED if hasattr(memless.MemoryOptimizer, name)]
    for name, cls in BUILTIN.items():
        assert not [m for m in MOVED if hasattr(cls, m)], name
    built = []
    for folder in ("contract", "optimizers"):
        for path in (ROOT / folder).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("Structure", "ImplicitLoss"):
                    built.append(f"{folder}/{path.name}")
    assert built == []


@pytest.mark.parametrize("name, family", [("gd", "GRADIENT_DESCENT"), ("heavy-ball", "HEAVY_BALL"),
                                          ("nesterov", "NESTEROV"), ("adam", "ADAPTIVE"), ("adamw", "ADAPTIVE"),
                                          ("nadam", "ADAPTIVE"), ("rmsprop", "ADAPTIVE"), ("lion", "LION"),
                                          ("muon", "MUON"), ("schedule-free-sgd", "GENERIC")])
def test_each_builtin_finds_its_family(name, family):
    assert meanings.meaning_of(memless.get_optimizer(name)) is getattr(meanings, family)


def test_the_tables_give_the_closed_forms():
    """Heavy-ball's implicit loss is L + h beta/(2(1-beta)^2) |grad L|^2 descended with step h/(1-beta):
    P grad Ltilde equals F + M to rounding on a loss with real curvature."""
    from autograd import grad
    opt, h = memless.get_optimizer("heavy-ball", beta=0.6), 1e-3
    loss, theta = REFERENCE_LOSSES["curvy"].loss, np.array([0.3, 0.5, -0.4])
    declared = meanings.implicit_loss(opt, loss, h)
    total = opt.limit_direction(theta, grad(loss)) + memless.correction(opt, loss, theta, lr=h)
    predicted = declared.preconditioner(theta, None) * grad(declared.loss)(theta)
    np.testing.assert_allclose(predicted, total, rtol=1e-11)
    assert meanings.structure(opt, [[1.0]]).effect == meanings.Effect.REGULARIZING
    assert meanings.structure(memless.get_optimizer("gd"), [[1.0]]).effect == meanings.Effect.NONE
    assert meanings.implicit_loss(memless.get_optimizer("muon"), loss, h) is None
    assert not meanings.declares_implicit_loss(memless.get_optimizer("muon"))
    assert meanings.declares_implicit_loss(memless.get_optimizer("lion", weight_decay=0.1))


def test_a_generic_optimizer_reads_its_declarations():
    class Signish(memless.MomentumOptimizer):
        sharpness, modified_loss, eps = "l1", "L + something", 0.25

        def channels(self):
            return [memless.Channel("momentum", 0.5, memless.extend.gradient_signal)]

        def combine(self, m):
            return m["momentum"]

    opt = Signish()
    assert meanings.meaning_of(opt) is GENERIC
    assert meanings.sharpness_formula(opt) == "||grad L||_{1,eps}" and meanings.modified_loss(opt) == "L + something"
    N = meanings.sharpness_proxy(opt, lambda t: 2 * t)
    assert N(np.array([1.5])) == pytest.approx(np.sqrt(9 + 0.25), rel=1e-15)
    assert meanings.structure(opt, [[1.0]]) is None and meanings.implicit_loss(opt, lambda t: t @ t, 0.1) is None


def test_a_plugin_declares_its_meaning_and_the_report_uses_it():
    class Declared(memless.optimizers.HeavyBall):
        name = "declared-heavy-ball"

    said = meanings.Structure(meanings.Effect.ANTI_REGULARIZING, "exact (declared by the test)", "a test's claim")
    declare_meaning(Declared, dataclasses.replace(GENERIC, structure=lambda opt, gradients: said,
                                                  formula=lambda opt: "N of the test"))
    a = analyze(Declared(beta=0.5), steps=40, points=2, evidence_losses=())
    assert a.sharpness == "N of the test" and a.regime.startswith("exact (declared by the test)")
    assert memless.get_optimizer("heavy-ball").__class__ is not Declared
    assert meanings.meaning_of(memless.get_optimizer("heavy-ball")) is meanings.HEAVY_BALL     # others unchanged
    with pytest.raises(TypeError, match="not a MemoryOptimizer class"):
        declare_meaning(int, GENERIC)
    with pytest.raises(TypeError, match="not a memless Meaning"):
        declare_meaning(Declared, {"structure": None})


def test_a_06_class_that_defines_the_report_methods_is_still_read_with_a_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        class Old(memless.optimizers.Adam):
            def structure(self, gradients):
                return meanings.Structure(meanings.Effect.DEPENDS, "old", "an 0.6 override")

            @property
            def sharpness_formula(self):
                return "old N"

    meaning = meanings.meaning_of(Old())
    assert meaning.structure(Old(), [[1.0]]).regime == "old" and meaning.formula(Old()) == "old N"
    assert meaning.proxy is meanings.ADAPTIVE.proxy          # what it does not define comes from its family
    ours = [w for w in caught if w.category is DeprecationWarning]
    assert str(ours[0].message).startswith("Old defines sharpness_formula, structure: memless 0.7 still reads them")
    assert ours[0].filename == __file__                      # the class statement, the user's line


def test_the_meanings_module_sits_with_the_studies():
    assert os.path.basename(os.path.dirname(meanings.__file__)) == "studies"
    assert isinstance(meanings.ADAPTIVE, Meaning)


def test_declare_meaning_checks_what_is_inside_in_one_line():
    class Mine(memless.optimizers.HeavyBall):
        pass

    for bad, fragment in [(dataclasses.replace(GENERIC, structure="exact"), "Meaning.structure must be a function"),
                          (dataclasses.replace(GENERIC, structure=lambda opt: None), "must take (opt, gradients)"),
                          (dataclasses.replace(GENERIC, implicit_loss=lambda opt, loss: None),
                           "must take (opt, loss, lr)")]:
        with pytest.raises(TypeError, match=fragment.replace("(", r"\(").replace(")", r"\)")) as caught:
            declare_meaning(Mine, bad)
        assert "\n" not in str(caught.value)
    assert meanings.meaning_of(Mine(beta=0.5)) is meanings.HEAVY_BALL        # nothing was declared


def test_a_declared_function_that_returns_the_wrong_kind_is_named():
    class Wrong(memless.optimizers.HeavyBall):
        pass

    declare_meaning(Wrong, dataclasses.replace(GENERIC, structure=lambda opt, g: meanings.Effect.REGULARIZING,
                                               implicit_loss=lambda opt, loss, lr: "L"))
    with pytest.raises(memless.OptimizerError, match="declared structure returned .*not a memless Structure"):
        meanings.structure(Wrong(), [[1.0]])
    with pytest.raises(memless.OptimizerError, match="declared implicit loss returned 'L', not a memless"):
        meanings.implicit_loss(Wrong(), lambda t: t @ t, 0.1)


@pytest.mark.parametrize("call", [lambda: meanings.structure("adam", [[1.0]]),
                                  lambda: meanings.implicit_loss("gd", lambda t: t, 0.1),
                                  lambda: meanings.sharpness_formula(object()),
                                  lambda: meanings.reference_losses(3),
                                  lambda: meanings.structure(memless.optimizers.Adam, [[1.0]])])
def test_the_meanings_functions_want_an_optimizer(call):
    with pytest.raises(memless.MemlessError, match="optimizer must be a memless.MemoryOptimizer") as caught:
        call()
    assert "\n" not in str(caught.value)


def test_a_structure_needs_gradients_and_a_class_is_not_an_instance():
    with pytest.raises(memless.MemlessError, match="needs the loss gradients met along a path"):
        meanings.structure(memless.get_optimizer("adam"), [])
    with pytest.raises(memless.MemlessError, match="got the class Adam: pass Adam()"):
        analyze(memless.optimizers.Adam)


def test_a_06_class_with_its_own_reference_losses_is_still_read():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)

        class Matrices(memless.optimizers.HeavyBall):
            @property
            def reference_losses(self):
                return ("curvy", "bilinear")

            evidence_loss = "rosenbrock"

    assert meanings.reference_losses(Matrices()) == ("curvy", "bilinear")
    assert meanings.evidence_loss(Matrices()) == "rosenbrock"
