"""The report: effects measured from the engine's terms, verdicts, caveats, rendering and JSON."""
import io
import json
import os

import autograd.numpy as anp
import pytest
from rich.console import Console

import memless
from memless.optimizers import RMSProp
from memless.analysis import analyze, to_json
from memless.report import render, render_comparison

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
    ("lion", {}, "none"),
    ("lion", dict(k="sign"), "none"),
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
    """RMSProp with the preconditioner turned upside down: Phi = g sqrt(v + eps)."""

    def combine(self, m):
        return m["gradient"] * anp.sqrt(m["second-moment"] + self.eps)


def test_effect_is_measured_from_the_engine_terms():
    """Flip the sign of dPhi/dv and the second-moment term, and the verdict, flip with it."""
    before = analyze(RMSProp(), **FAST)
    after = analyze(Amplified(), **FAST)
    assert before.net_effect == "anti-regularizing" and after.net_effect == "regularizing"
    assert before.channels[1].strength < 0 < after.channels[1].strength


def test_verdict_explains_why():
    a = analyze(memless.get_optimizer("adamw"), **FAST)
    assert "second-moment (beta = 0.999, weight b*beta/(1-beta)^2 = 999) outweighs first-moment (beta = 0.9, " \
           "weight b*beta/(1-beta)^2 = 9)" in a.verdict
    assert "||grad L||_1" in a.modified_loss


def test_caveat_when_lr_is_beyond_first_order_range():
    """AdamW defaults: h beta2/(1-beta2) = 0.999; the report must not print a bare verdict."""
    a = analyze(memless.get_optimizer("adamw"), **FAST)
    assert any("memory number h*beta/(1-beta) = 0.999" in c for c in a.caveats)
    assert any("|M|/|F| reaches" in c for c in a.caveats)
    small = analyze(memless.get_optimizer("heavy-ball", beta=0.5), loss="logistic", **FAST)
    assert small.caveats == []
    assert 1.7 < small.order["corrected"] < 2.3 and 0.8 < small.order["uncorrected"] < 1.2


def test_divergence_becomes_a_caveat():
    a = analyze(memless.get_optimizer("heavy-ball"), loss="rosenbrock", lr=0.01, **FAST)
    assert a.order["diverged"] and any("no evidence" in c for c in a.caveats)


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
