"""The report: effects measured from the engine's terms, verdicts, caveats, rendering and JSON."""
import dataclasses
import io
import json
import os

import autograd.numpy as anp
import numpy as np
import pytest
from rich.console import Console

import memless
import memless.optimizers
from memless.optimizers import RMSProp
from memless.studies.analysis import Effect, analyze, to_json
from memless.show.report import render, render_comparison
from memless.extend import declare_meaning
from memless.studies import meanings

REFERENCE_START = np.array([0.3, 0.5, -0.4])
SNAPSHOTS = os.path.join(os.path.dirname(__file__), "snapshots")
FAST = dict(points=6, evidence_steps=100)


def effects(name, **hp):
    a = analyze(memless.get_optimizer(name, **hp), **FAST)
    return a.net_effect, {c.name: c.effect for c in a.channels}


@pytest.mark.parametrize("name,hp,net", [
    ("heavy-ball", {}, "regularizing"),
    ("heavy-ball", dict(beta=0.5), "regularizing"),
    ("nesterov", {}, "regularizing"),
    ("adamw", {}, "anti-regularizing"),                           # beta2 > beta1
    ("adamw", dict(beta1=0.99, beta2=0.9), "regularizing"),       # beta1 > beta2
    ("adam", {}, "anti-regularizing"),
    ("nadam", {}, "anti-regularizing"),
    ("rmsprop", {}, "anti-regularizing"),
    ("lion", {}, "regularizing"),                                 # <grad N, M> >= 0 exactly, O(eps) small
    ("lion", dict(k="sign"), "none"),                             # M = 0
    ("gd", {}, "none"),
])
def test_effects_as_the_papers_say(name, hp, net):
    assert effects(name, **hp)[0] == net


def test_adamw_channels_pull_in_opposite_directions():
    net, channels = effects("adamw")
    assert channels == {"first-moment": "regularizing", "second-moment": "anti-regularizing", "weight-decay": "none"}
    net, channels = effects("adamw", beta1=0.99, beta2=0.9)
    assert channels["first-moment"] == "regularizing" and channels["second-moment"] == "anti-regularizing"


def test_lion_is_never_anti_regularized():
    for loss in ("bilinear", "logistic", "rosenbrock"):
        a = analyze(memless.get_optimizer("lion"), loss=loss, **FAST)
        assert a.net_effect != "anti-regularizing"
        assert abs(a.net_strength) < 1e-4


class Amplified(RMSProp):
    """RMSProp with the preconditioner turned upside down: Phi = g sqrt(v + eps) -- but still
    declaring RMSProp's structure, which no longer describes it."""

    def combine(self, m):
        return m["gradient"] * anp.sqrt(m["second-moment"] + self.eps)


class AmplifiedUndeclared(Amplified):
    """The same optimizer, whose family reading declares no structure: the measurement decides."""


declare_meaning(AmplifiedUndeclared, dataclasses.replace(meanings.ADAPTIVE, structure=lambda opt, gradients: None))


def test_effect_is_measured_from_the_engine_terms():
    """Flip the sign of dPhi/dv: the measured strength flips with it; a stale declaration is caught by
    the evidence (it disagrees), and without a declaration the verdict is the measurement."""
    before = analyze(RMSProp(), **FAST)
    stale = analyze(Amplified(), **FAST)
    after = analyze(AmplifiedUndeclared(), **FAST)
    assert before.net_effect == "anti-regularizing" and after.net_effect == "regularizing"
    assert before.channels[1].strength < 0 < after.channels[1].strength
    assert all(e.agrees for e in before.evidence)
    assert stale.net_effect == "anti-regularizing" and all(e.agrees is False for e in stale.evidence)
    assert after.basis == "measured" and all(e.agrees for e in after.evidence)


def test_verdict_explains_why():
    a = analyze(memless.get_optimizer("adamw"), **FAST)
    assert "c1 = beta1/(1-beta1) = 9, c2 = beta2/(1-beta2) = 999" in a.verdict
    assert "||grad L||_1" in a.modified_loss and a.basis == "declared"


def test_caveat_when_lr_is_beyond_first_order_range():
    """AdamW defaults at h = 1e-3: |M|/|F| > 1; the report must not print a bare verdict."""
    a = analyze(memless.get_optimizer("adamw"), **FAST)
    assert a.memory_ratio > 1 and any("|M|/|F| reaches" in c for c in a.caveats)
    small = analyze(memless.get_optimizer("heavy-ball", beta=0.5), loss="logistic", **FAST)
    assert small.caveats == []
    assert 1.7 < small.order.corrected < 2.3 and 0.8 < small.order.uncorrected < 1.2


def test_outside_the_theory_the_evidence_moves_to_the_tamed_optimizer():
    """Heavy-ball's defaults at lr 0.01 on rosenbrock: |M|/|F| is far above 0.2, so the evidence runs at
    the tamed copy on curvy, says why, and shows order ~2 / ~1 there; the caveat gives the lr to aim for."""
    a = analyze(memless.get_optimizer("heavy-ball"), loss="rosenbrock", lr=0.01, **FAST)
    order = a.order
    assert order.setting == "tamed" and order.loss == "curvy" and "|M|/|F| reaches" in order.why
    assert abs(order.corrected - 2) < 0.3 and abs(order.uncorrected - 1) < 0.2
    assert order.first_order_lr == pytest.approx(0.01 * 0.2 / a.memory_ratio)
    assert any("would fall to 0.2 near lr" in c and "needed for the first-order picture, not enough" in c
               for c in a.caveats)


def test_json_has_the_documented_fields():
    data = json.loads(to_json(analyze(memless.get_optimizer("adamw"), **FAST)))
    assert {"optimizer", "hyperparameters", "channels", "net_effect", "order"} <= set(data)
    for channel in data["channels"]:
        assert {"name", "decay", "effect", "strength"} <= set(channel)
        assert channel["effect"] in ("regularizing", "anti-regularizing", "none")
    assert {"corrected", "uncorrected"} <= set(data["order"])
    assert data["hyperparameters"]["beta2"] == 0.999


# -- snapshots: width-pinned, colorless ------------------------------------------------

def text_of(renderable):
    console = Console(file=io.StringIO(), width=100, color_system=None, force_terminal=False)
    console.print(renderable)
    return console.file.getvalue()


def check_snapshot(name, text):
    path = os.path.join(SNAPSHOTS, name)
    if os.environ.get("MEMLESS_UPDATE_SNAPSHOTS") or not os.path.exists(path):
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        if not os.environ.get("MEMLESS_UPDATE_SNAPSHOTS"):
            pytest.fail(f"snapshot {name} was missing and has been written; check it in")
    with open(path, encoding="utf-8") as fh:
        assert text == fh.read(), f"rendering changed; rerun with MEMLESS_UPDATE_SNAPSHOTS=1 if intended ({name})"


def test_report_snapshot():
    a = analyze(memless.get_optimizer("heavy-ball", beta=0.5), loss="logistic", **FAST)
    check_snapshot("report-heavy-ball.txt", text_of(render(a)))


def test_report_snapshot_with_caution():
    a = analyze(memless.get_optimizer("adamw"), **FAST)
    text = text_of(render(a))
    assert "caution" in text and "anti-regularizing" in text
    check_snapshot("report-adamw.txt", text)


def test_compare_snapshot():
    analyses = [analyze(memless.get_optimizer(name), **FAST) for name in ("adamw", "lion")]
    check_snapshot("compare-adamw-lion.txt", text_of(render_comparison(analyses)))


# -- verdicts: declared where the theory is exact, measured where it is not ---------------

ALL_LOSSES = ("bilinear", "rosenbrock", "curvy", "logistic")


def test_lion_l2_is_heavy_ball_and_regularizes():
    """K = ||x||^2/2, rho1 = rho2 = beta: Lion is heavy-ball with an EMA, i.e. heavy-ball at lr h (1 - beta):
    h (F + M) of Lion at h equals h' (F + M) of heavy-ball at h' = h (1 - beta)."""
    from memless.losses import curvy
    from memless.engine.objective import Objective
    beta, h = 0.8, 1e-3
    lion = memless.get_optimizer("lion", k="l2", rho1=beta, rho2=beta)
    ball = memless.get_optimizer("heavy-ball", beta=beta)
    gradient = Objective(curvy).gradient
    for theta in (REFERENCE_START, REFERENCE_START[::-1]):
        lion_step = h * (lion.limit_direction(theta, gradient) + memless.correction(lion, curvy, theta, lr=h))
        ball_step = h * (1 - beta) * (ball.limit_direction(theta, gradient)
                                      + memless.correction(ball, curvy, theta, lr=h * (1 - beta)))
        np.testing.assert_allclose(lion_step, ball_step, rtol=1e-12)
    a = analyze(lion, **FAST)
    assert a.sharpness == "||grad L||^2" and a.net_effect == "regularizing" and a.basis == "declared"
    assert all(e.agrees is not False for e in a.evidence)


def test_default_lion_verdict_is_the_same_on_every_loss():
    verdicts = {loss: analyze(memless.get_optimizer("lion"), loss=loss, **FAST) for loss in ALL_LOSSES}
    assert {str(a.net_effect) for a in verdicts.values()} == {"regularizing"}
    for a in verdicts.values():
        assert a.basis == "declared" and "small where every |g_i| >> sqrt(eps)" in a.verdict
        assert all(e.measured != "anti-regularizing" for e in a.evidence)


def test_adamw_threshold_decides_exactly():
    """eps inside, no decay: the weight of component i is (c1 - c2) g_i^2 + c1 eps. Large eps puts every
    |g_i| below tau on logistic (regularizing), the default eps puts them above (anti-regularizing)."""
    big = analyze(memless.get_optimizer("adam", beta1=0.9, beta2=0.99, eps=100.0), loss="logistic", **FAST)
    small = analyze(memless.get_optimizer("adam", beta1=0.9, beta2=0.99), loss="logistic", **FAST)
    assert big.net_effect == "regularizing" and "every |g_i| < tau" in big.regime
    assert small.net_effect == "anti-regularizing" and "every |g_i| > tau" in small.regime
    assert big.evidence[0].agrees and small.evidence[0].agrees      # the measurement on this loss agrees
    assert "||grad L||^2/(2 sqrt(eps))" in big.modified_loss           # the small-gradient regime's loss


class GenericAdam(memless.MemoryOptimizer):
    """Adam in the history form only (no channels, no declared structure)."""

    hyperparameters = (memless.decay("beta1", 0.5), memless.decay("beta2", 0.9), memless.positive("eps", 0.05))
    window = 40

    def direction(self, history, gradient):
        n = len(history) - 1
        m = v = 0.0
        for k, theta in enumerate(history[: self.window]):
            g = gradient(theta)
            m = m + self.beta1 ** k * g
            v = v + self.beta2 ** k * g ** 2
        m = m * (1 - self.beta1) / (1 - self.beta1 ** (n + 1))
        v = v * (1 - self.beta2) / (1 - self.beta2 ** (n + 1))
        return m / anp.sqrt(v + self.eps)


def test_generic_optimizer_whose_signs_disagree_depends_on_the_loss():
    opt = GenericAdam(beta1=0.5, beta2=0.9, eps=1.0)     # small gradients on logistic, large elsewhere
    a = analyze(opt, loss="logistic", points=3, evidence_steps=20, steps=60)
    measured = {str(e.measured) for e in a.evidence}
    assert {"regularizing", "anti-regularizing"} <= measured
    assert a.net_effect == "depends on the loss" and a.basis == "measured"
    assert "depends on the loss" in a.verdict


def test_adamw_with_decay_is_declared_as_eps_vanishes():
    a = analyze(memless.get_optimizer("adamw", weight_decay=0.1), **FAST)
    assert a.net_effect == "anti-regularizing" and a.basis == "declared"
    assert a.sharpness == "||grad L||_{1,eps} + lambda (grad L . theta - L)"
    assert "lambda (grad L . theta - L)" in a.modified_loss and "as eps -> 0" in a.regime


def test_json_carries_regime_evidence_and_declared_signs():
    data = json.loads(to_json(analyze(memless.get_optimizer("adamw"), **FAST)))
    assert data["regime"] and data["basis"] == "declared"
    assert [e["loss"] for e in data["evidence"]] == list(ALL_LOSSES)
    assert {c["name"]: c["declared"] for c in data["channels"]} == \
        {"first-moment": 1, "second-moment": -1, "weight-decay": None}


def test_adamw_with_decay_at_large_eps_is_in_the_small_gradient_regime():
    a = analyze(memless.get_optimizer("adamw", beta2=0.99, eps=100.0), loss="logistic", **FAST)
    assert a.net_effect == "regularizing" and a.basis == "declared"
    assert "every |g_i| << sqrt(eps)" in a.regime
    assert "||grad L||^2/(2 sqrt(eps))" in a.modified_loss and "lambda (grad L . theta - L)" in a.modified_loss
    assert a.evidence[0].agrees


# -- first contact: the defaults demonstrate the theory ---------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(memless.optimizers.BUILTIN))
def test_default_report_evidence_shows_the_orders(name):
    """With every default (bilinear, lr 1e-3), the evidence shows order ~2 with M and ~1 without,
    at the user's settings or at the tamed copy, labelled; gd has no memory: exact."""
    a = analyze(memless.get_optimizer(name))
    if name == "schedule-free-sgd":          # memory does not decay: no evidence is claimed
        assert a.net_effect == Effect.OUTSIDE and a.order.setting == "none" and not a.caveats
        return
    order = a.order
    assert order.setting in ("yours", "tamed") and order.optimizer and order.loss
    if name == "gd":
        assert order.exact_corrected and order.exact_uncorrected
        return
    assert abs(order.corrected - 2) <= 0.3 and abs(order.uncorrected - 1) <= 0.2, order
    assert not any("did not settle" in c for c in a.caveats)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(memless.optimizers.BUILTIN))
def test_modified_succeeds_for_every_builtin_at_its_defaults(name):
    from memless.studies.modified import summarize
    if name == "schedule-free-sgd":          # the modified equation needs the limit M, which does not exist
        with pytest.raises(memless.MemlessError, match="memory does not decay"):
            summarize(memless.get_optimizer(name))
        return
    summary = summarize(memless.get_optimizer(name))
    assert all(np.isfinite(summary.errors_ode)) and all(np.isfinite(summary.errors_flow))
    assert summary.check_setting == "yours" or summary.check_setting.startswith("tamed: ")
    if max(summary.errors_ode) > 1e-12:
        assert abs(summary.order_ode - 2) <= 0.3 and abs(summary.order_flow - 1) <= 0.3


def test_the_evidence_is_a_dataclass_with_the_keys_the_json_had():
    from dataclasses import fields

    from memless.studies.analysis import OrderEvidence
    a = analyze(memless.get_optimizer("heavy-ball", beta=0.3), points=2, evidence_steps=20)
    assert isinstance(a.order, OrderEvidence) and len(fields(OrderEvidence)) == 17
    data = json.loads(a.to_json())["order"]
    assert set(data) == {f.name for f in fields(OrderEvidence)}
    assert a.order["corrected"] == a.order.corrected and a.order.get("nothing", 7) == 7      # as the dict read
    assert a.order.settled == (abs(a.order.corrected - 2) <= 0.3 and abs(a.order.uncorrected - 1) <= 0.2)


def test_the_memory_profile_is_a_dataclass_and_its_json_keeps_the_06_keys():
    from memless.studies.analysis import ProfileEvidence
    outside = analyze(memless.get_optimizer("schedule-free-sgd"))
    assert isinstance(outside.memory, ProfileEvidence) and outside.memory.decays is False
    assert len(outside.memory.ks) == len(outside.memory.values) == len(outside.memory.weights) > 1
    data = json.loads(outside.to_json())["memory"]
    assert sorted(data) == ["decays", "ks", "n", "reason", "values", "weights"] and data["n"] == outside.memory.n
    inside = analyze(memless.get_optimizer("heavy-ball", beta=0.5), **FAST)
    assert inside.memory is None and json.loads(inside.to_json())["memory"] == {}


def test_numbers_at_the_precision_they_have_and_no_bound_where_there_is_none():
    """A decay of 0.9999 is not printed as 1; where memory's effect is below rounding at your settings
    (Lion on bilinear: |M|/|F| ~ 1e-13) the lr below which the first-order picture holds is no bound
    (JSON null), not an lr of 1e9."""
    from memless.show.report import _decay
    assert [_decay(b) for b in (0.9999, 0.999, 0.5, 0.0)] == ["0.9999", "0.999", "0.5", "0"]
    lion = analyze(memless.get_optimizer("lion"), **FAST)
    assert lion.memory_ratio < 1e-10 and lion.order.first_order_lr is None
    assert json.loads(lion.to_json())["order"]["first_order_lr"] is None
    heavy = analyze(memless.get_optimizer("heavy-ball"), **FAST)
    assert heavy.order.first_order_lr == pytest.approx(1e-3 * 0.2 / heavy.memory_ratio)
    text = text_of(render(heavy))
    assert "(measured) (measured)" not in text and "size = |M_l|/|F| averaged over the measured points" in text


def test_the_evidence_says_first_whether_it_is_at_your_settings():
    tamed = text_of(render(analyze(memless.get_optimizer("adamw"), **FAST)))
    first = tamed[tamed.index("Evidence that the correction is right"):].split("max error")[0]
    assert "NOT at your settings but at the tamed copy" in " ".join(first.split())
    yours = analyze(memless.get_optimizer("heavy-ball", beta=0.5), loss="curvy", lr=0.01, **FAST)
    assert yours.order.setting == "yours"
    text = " ".join(text_of(render(yours)).split())
    assert "Evidence that the correction is right (Theorem 3.3), at YOUR hyperparameters and lr, on curvy" in text


def test_the_report_points_to_a_glossary_that_defines_its_words():
    from memless.show.report import GLOSSARY
    text = text_of(render(analyze(memless.get_optimizer("lion"), **FAST)))
    assert GLOSSARY in text
    with open(os.path.join(os.path.dirname(SNAPSHOTS), "..", GLOSSARY), encoding="utf-8") as fh:
        glossary = fh.read()
    for word in ("Sharpness proxy", "Tamed", "Strength", "Weight", "Size", "Channel", "Regime", "Declared / measured",
                 "First-order picture", "Evidence", "Lion-K", "Polar factor", "Curl-free", "Forward-over-reverse, HVP"):
        assert f"**{word}" in glossary, word


def test_a_strength_below_rounding_is_marked_and_explained_where_an_effect_is_stated():
    """Lion at eps = 1e-8 on bilinear: its declared regularizing term is real but ~1e-13 there; the table
    says so with '~' and its legend, instead of a bare 'regularizing' beside a number at rounding."""
    lion = text_of(render(analyze(memless.get_optimizer("lion"), **FAST)))
    row = next(line for line in lion.splitlines() if line.strip().startswith("momentum"))
    assert "~" in row and "regularizing" in row
    assert "~ = below rounding (|strength| <= 1e-12)" in " ".join(lion.split())
    gradient_row = next(line for line in lion.splitlines() if line.strip().startswith("gradient"))
    assert "~" not in gradient_row                        # no effect stated: nothing to qualify
    heavy = text_of(render(analyze(memless.get_optimizer("heavy-ball", beta=0.5), loss="logistic", **FAST)))
    assert "~" not in heavy


def test_the_reports_next_term_sentence_is_what_the_kept_experiment_shows():
    """The report says of |M2|/|M1|: where it exceeds 0.3 an order study seldom settles, and |M|/|F| predicts
    whether it settles slightly better. Both are read from the kept full run of next-term-radius."""
    path = os.path.join(os.path.dirname(__file__), "..", "tutorials", "experiments", "next-term-radius.json")
    with open(path, encoding="utf-8") as fh:
        kept = json.load(fh)
    separation, _, beyond = kept["claims"]
    assert separation["verdict"] == "|M|/|F| separates better"
    assert beyond["beyond"] >= 50 and beyond["settled_beyond"] <= 0.05 * beyond["beyond"]       # "seldom": <= 5 %
    text = text_of(render(analyze(memless.get_optimizer("muon"), lr=1e-3)))
    words = " ".join(text.split())
    assert "where it exceeds 0.3, an order study at those settings seldom settles to orders 2 and 1" in words
    assert "predicted slightly better by |M|/|F|" in words
    difference = np.mean(separation["auc_next_term"]) - np.mean(separation["auc_memory_ratio"])
    assert -0.1 < difference < 0                      # "slightly"


def test_an_evidence_loss_that_diverges_is_left_out_and_named():
    """A plugin that runs on the user's loss but diverges on another evidence loss at this lr: the report
    is made from the losses it ran on, and a caveat names the one left out (not 'use a smaller lr')."""
    class Cubic(memless.MomentumOptimizer):
        name = "cubic-ema"
        hyperparameters = (memless.decay("beta", 0.5),)

        def channels(self):
            return [memless.Channel("m", self.beta, lambda theta, grad: grad, memless.ema_bias_correction(self.beta))]

        def combine(self, m):
            return m["m"] + 0.3 * m["m"] ** 3

    a = analyze(Cubic(), "curvy", lr=0.01)
    ran = [e.loss for e in a.evidence]
    assert ran[0] == "curvy" and "rosenbrock" not in ran
    assert any("'rosenbrock' is left out of the measured evidence: cubic-ema diverged" in c for c in a.caveats)
    assert "caution: what limits this verdict" in text_of(render(a))
    left = 4 - len(ran)
    assert f"every evidence loss it ran on ({left} left out" in a.verdict         # not "every evidence loss"

    class Cube(Cubic):                 # Phi = m + m^3: it overflows on a run already far out (~1e65)
        name = "cube-momentum"

        def combine(self, m):
            return m["m"] + m["m"] ** 3

    small = analyze(Cube(), "curvy", lr=1e-4)       # was: OptimizerError blaming the optimizer, unnamed loss
    assert any("left out of the measured evidence: cube-momentum diverged" in c for c in small.caveats)
