"""memless.experiments: the papers' experiments at CPU scale.  The quick runs run here; each test checks
that the rows are the run's own (trained and measured now, with their seeds) and that every sentence is the
one the rows decide (recomputed from the rows), never text written in advance."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import memless

pytest.importorskip("torch", reason="PyTorch is not installed (pip install memless[torch])")
pytest.importorskip("sklearn", reason="scikit-learn is not installed (pip install memless[experiments])")

from memless.experiments import EXPERIMENTS, run  # noqa: E402
from memless.experiments.training import trend  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HANG_GUARD = 1800       # a hang guard, not a speed test


@pytest.mark.parametrize("name,swept", [("adam-rho", "rho"), ("adam-beta", "beta")])
def test_adam_quick_runs_report_their_own_rows_and_decided_sentences(name, swept):
    from memless.experiments.adam import claims
    result = run(name, quick=True)
    values = sorted({r[swept] for r in result.rows})
    assert len(values) == 2 and {r["seed"] for r in result.rows} == {0, 1}
    assert result.settings["seeds"] == 2 and result.settings["seeds_asked"] == 3     # a quick run caps them
    for row in result.rows:
        assert row["reached"] and row["loss"] < 0.01            # stopped at the protocol's threshold
        assert row["excess"] == pytest.approx(row["norm"] - row["floor"], rel=1e-6, abs=1e-12)
        assert 0 <= row["share_above"] <= 1 and 0 < row["test_accuracy"] <= 1 and row["M/F"] > 0
    assert result.claims == claims(result.rows, swept, values)     # the sentences follow from the rows
    for claim in result.claims:
        assert claim["verdict"] in claim["sentence"] and f"{claim['effect']:+.1f} seed-sd" in claim["sentence"]
    json.loads(result.to_json())


def test_order_on_a_model_quick_run():
    result = run("order-on-a-model", quick=True)
    assert {r["optimizer"] for r in result.rows} == {"heavy-ball", "adam"}
    for claim in result.claims:
        part = [r for r in result.rows if r["optimizer"] == claim["optimizer"]]
        lrs = [r["lr"] for r in part]
        fitted = np.polyfit(np.log(lrs), np.log([r["error_corrected"] for r in part]), 1)[0]
        assert claim["order_corrected"] == pytest.approx(fitted, rel=1e-9)
        assert claim["verdict"] == ("reproduced" if abs(claim["order_corrected"] - 2) <= 0.3
                                    and abs(claim["order_uncorrected"] - 1) <= 0.3 else "not reproduced")
        assert f"{claim['order_corrected']:.2f} with M" in claim["sentence"]
        second = np.polyfit(np.log(lrs), np.log([r["error_second"] for r in part]), 1)[0]
        assert claim["order_second"] == pytest.approx(second, rel=1e-9)
        closer = [r["error_second"] < r["error_corrected"] for r in part]         # largest h first
        up_to = claim["second_helps_up_to"]
        assert (up_to is None) == (not closer[-1])
        if up_to is not None:                                # every rung from the smallest h up to it is closer
            assert all(c for r, c in zip(part, closer) if r["lr"] <= up_to)


def test_trend_decides_by_effect_size_and_monotonicity():
    rises = np.array([[1.0, 2.0, 3.0], [1.1, 2.1, 3.2], [0.9, 1.9, 3.1]])
    assert trend("x", rises, +1).verdict == "reproduced"
    assert trend("x", rises, -1).verdict == "reversed"
    noisy = np.array([[1.0, 1.2, 0.9], [1.1, 0.8, 1.3], [0.9, 1.0, 1.0]])
    assert trend("x", noisy, +1).verdict == "not distinguishable from noise"
    assert trend("x", rises[:1], +1).verdict.startswith("one seed")
    assert "seed-sd" not in trend("x", rises[:1], +1).sentence("rho", "it rises")
    assert trend("x", np.ones((3, 3)), +1).verdict == "no change"              # no change is not "reversed"
    assert trend("x", np.array([[1.0, 2.0], [1.0, np.nan]]), +1).verdict == "not measured"
    same = np.array([[1.0, 2.0, 3.0]] * 3)                                       # no seed noise, every seed rises
    assert trend("x", same, +1).verdict == "reproduced"
    assert trend("x", np.array([[1.0, 3.0, 2.0]] * 3), +1).verdict == "not distinguishable from noise"
    assert trend("x", rises[:2], +1).verdict == "2 seeds: too few for a verdict (indicative only)"


def test_data_loaders_leave_the_global_rng_alone_and_check_user_files(tmp_path):
    from memless.experiments.data import load
    state = np.random.get_state()[1].copy()
    digits = load("digits", seed=3)
    assert digits.x.shape == (1200, 64) and digits.x_test.shape == (597, 64)
    np.testing.assert_array_equal(state, np.random.get_state()[1])
    rng = np.random.default_rng(0)
    path = tmp_path / "mine.npz"
    np.savez(path, x=rng.normal(size=(40, 5)), y=rng.integers(0, 3, 40), x_test=rng.normal(size=(10, 5)),
             y_test=rng.integers(0, 3, 10))
    mine = load(str(path))
    assert mine.classes == 3 and mine.x.shape == (40, 5)
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.ones((3, 2)), y=np.array([0.5, 1, 2]), x_test=np.ones((1, 2)), y_test=np.array([0]))
    for source, fragment in ((str(bad), "integers from 0"), (str(tmp_path / "none.npz"), "does not exist"),
                             ("cifar", "digits, mnist1d, a path")):
        with pytest.raises(memless.MemlessError, match=fragment):
            load(source)


def test_experiment_cli_quick_json_and_refusals(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "tiny.npz"
    x = rng.normal(size=(120, 6))
    y = (x[:, 0] > 0).astype(int)
    np.savez(path, x=x[:90], y=y[:90], x_test=x[90:], y_test=y[90:])
    out = subprocess.run([sys.executable, "-m", "memless", "experiment", "adam-rho", "--quick", "--json", "--quiet",
                          "--data", str(path)], capture_output=True, text=True, cwd=ROOT, timeout=HANG_GUARD)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert {r["data"] for r in result["rows"]} == {"tiny.npz"} and result["claims"]
    for args, fragment in ((("nosuch",), "unknown experiment"), (("adam-rho", "--seeds", "0"), "seeds must be"),
                           (("adam-rho", "--device", "nosuchdevice"), "cannot be used here")):
        out = subprocess.run([sys.executable, "-m", "memless", "experiment", *args], capture_output=True, text=True,
                             cwd=ROOT, timeout=HANG_GUARD)
        assert out.returncode == 2 and fragment in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_every_experiment_is_listed():
    assert set(EXPERIMENTS) == {"adam-rho", "adam-beta", "order-on-a-model", "cancel-memory", "lion-vs-adamw",
                                "next-term-radius"}


def test_lion_vs_adamw_quick_run_compares_at_the_same_loss():
    from memless.experiments.lion import claims
    result = run("lion-vs-adamw", quick=True)
    fastest = [r for r in result.rows if r["kind"] == "fastest"]
    rungs = [r for r in result.rows if r["kind"] == "rung"]
    assert {(r["optimizer"], r["seed"]) for r in fastest} == {("adamw", 0), ("adamw", 1), ("lion", 0), ("lion", 1)}
    for row in fastest:
        assert row["reached"] and row["grad_l1"] > 0 and 0 < row["test_accuracy"] <= 1
        channels = [k for k in row if k.startswith("strength:")]
        assert channels and row["strength"] == pytest.approx(sum(row[k] for k in channels), rel=1e-9, abs=1e-12)
        rung = next(r for r in rungs if (r["optimizer"], r["seed"], r["lr"]) == (row["optimizer"], row["seed"], row["lr"]))
        assert rung["grad_l1"] == row["grad_l1"] and rung["steps"] == row["steps"]     # the same run, measured once
    assert result.claims == claims(result.rows)
    assert sum("At AdamW lr" in c["sentence"] for c in result.claims) == 2              # one matched pair: two claims


@pytest.fixture(scope="module")
def cancel_quick():
    return run("cancel-memory", quick=True)


def test_cancel_memory_quick_checks_the_tracking_prediction_from_its_rows(cancel_quick):
    """With memory's first-order term removed (c = -1) the run tracks theta <- theta - h F to O(h^2); Adam
    itself (c = 0) only to O(h).  The verdicts are recomputed from the rows' slopes."""
    from memless.experiments.cancel import claims
    result = cancel_quick
    tracking = {r["c"]: r for r in result.rows if r["kind"] == "tracking"}
    assert set(tracking) == {-1.0, 0.0}
    for c in (-1.0, 0.0):
        row = tracking[c]
        slope = np.polyfit(np.log(row["lrs"]), np.log(row["errors"]), 1)[0]
        assert row["slope"] == pytest.approx(slope, rel=1e-9)
    assert result.claims == claims(result.rows)
    assert all(("as predicted" in c["sentence"]) == (c["verdict"] == "as predicted") for c in result.claims)


def test_cancel_memory_training_claims_follow_from_their_rows():
    """The training part's sentences (a full run's), recomputed from rows written here: a run that
    stops at the cap is reported with its loss, and no comparison at the same loss is made for it."""
    from memless.experiments.cancel import MAX_STEPS, claims
    rows = []
    for seed in range(3):
        for c, reached, accuracy in ((-1.0, seed != 1, 0.95), (0.0, True, 0.97 + 0.001 * seed),
                                     (1.0, True, 0.96 + 0.002 * seed)):
            rows.append({"kind": "train", "seed": seed, "c": c, "steps": 500 if reached else MAX_STEPS,
                         "reached": reached, "loss": 0.009 if reached else 0.05, "excess": 1e-4 * (2 + c + seed),
                         "test_accuracy": accuracy, "M/F": 0.3 + seed, "M_seconds": 1.0, "failure": ""})
    sentences = {c["quantity"]: c for c in claims(rows)}
    assert "reached in 2 of 3 seeds (steps 500, 500)" in sentences["training c=-1"]["sentence"]
    assert f"the {MAX_STEPS}-step cap with loss 0.05" in sentences["training c=-1"]["sentence"]
    assert sentences["c=-1 vs 0"]["verdict"] == "not measured"
    plus = sentences["test_accuracy c=+1 vs 0"]
    assert plus["verdict"] == "a trend (the papers claim none)" and plus["effect"] < -2      # 0.97+ -> 0.96+
    assert "|M|/|F| up to 2.3" in sentences["training c=+1"]["sentence"]


def test_experiment_figures_draw_the_rows_and_the_cli_writes_them(tmp_path, cancel_quick):
    """Each experiment's figure is drawn from its result's rows; ``experiment --plot`` writes it."""
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (pip install memless[plot])")
    import pickle

    from memless.experiments import ExperimentResult
    from memless.experiments.figures import FIGURES
    from memless.plot import save
    assert set(FIGURES) == set(EXPERIMENTS)
    result = cancel_quick
    fig = result.figure()
    lines = fig.axes[0].get_lines()
    tracking = [r for r in result.rows if r["kind"] == "tracking"]
    assert [list(line.get_ydata()) for line in lines] == [r["errors"] for r in tracking]
    rows = [{"data": "d", "eps": 1e-8, "seed": s, "rho": v, "excess": v * (s + 1), "test_accuracy": 0.9}
            for s in range(2) for v in (0.9, 0.99)]
    adam = ExperimentResult("adam-rho", "", {"quick": True}, [], rows, [])
    top = adam.figure().axes[0]
    seeds = [line for line in top.get_lines() if line.get_label().startswith("seed")]
    assert [list(line.get_ydata()) for line in seeds] == [[0.9, 0.99], [1.8, 1.98]]
    assert save(adam.figure(), str(tmp_path / "adam.svg")) and (tmp_path / "adam.svg").stat().st_size > 1000
    pickle.dumps(result)
    again = ExperimentResult.from_dict(json.loads(result.to_json()))        # --json's output draws the same
    assert [list(line.get_ydata()) for line in again.figure().axes[0].get_lines()] == \
        [r["errors"] for r in tracking]
    out = subprocess.run([sys.executable, "-m", "memless", "experiment", "cancel-memory", "--quick", "--quiet",
                          "--plot", str(tmp_path / "cancel.png")], capture_output=True, text=True, cwd=ROOT,
                         timeout=HANG_GUARD)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "cancel.png").read_bytes()[:4] == b"\x89PNG" and "wrote" in out.stderr
    refused = subprocess.run([sys.executable, "-m", "memless", "experiment", "cancel-memory", "--quick",
                              "--plot", str(tmp_path / "cancel.txt")], capture_output=True, text=True, cwd=ROOT,
                             timeout=HANG_GUARD)
    assert refused.returncode == 2 and "--plot" in refused.stderr and "Traceback" not in refused.stderr


def test_cancel_memory_quick_says_it_trains_nothing_and_refuses_data_it_would_not_use(cancel_quick):
    assert any(c["sentence"].startswith("Quick run: the tracking check alone") for c in cancel_quick.claims)
    with pytest.raises(memless.MemlessError, match="tracking check alone"):
        run("cancel-memory", quick=True, data="mnist1d")


def test_compensated_with_c_zero_is_the_optimizer_and_refuses_a_mismatch():
    import torch

    from memless.experiments.data import load
    from memless.experiments.training import mlp, objective_of
    from memless.frameworks.torch import Compensated
    data = load("digits", 0)
    data.x, data.y = data.x[:50], data.y[:50]
    paths = []
    for wrap in (False, True):
        model = mlp(64, (4,), 10, 0)
        loss = objective_of(model, data)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        step = Compensated(optimizer, memless.get_optimizer("adam", eps_inside=False), loss, 0.0) if wrap \
            else optimizer
        x, y = torch.as_tensor(data.x), torch.as_tensor(data.y)
        for _ in range(5):
            value = torch.nn.functional.cross_entropy(model(x), y)
            step.zero_grad()
            value.backward()
            step.step()
        paths.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy())
    np.testing.assert_array_equal(paths[0], paths[1])
    other = mlp(64, (5,), 10, 0)
    with pytest.raises(memless.LossError, match="build both from the same model"):
        Compensated(torch.optim.Adam(other.parameters()), memless.get_optimizer("adam"), loss, -1.0)
    with pytest.raises(memless.LossError, match="c must be a finite number"):
        Compensated(torch.optim.Adam(model.parameters()), memless.get_optimizer("adam"), loss, float("nan"))


def _image_folder(root, rng, train=24, test=8, size=6):
    """A tiny image folder as torchvision's ImageFolder reads it: bright images are class 'b', dark 'a'."""
    from PIL import Image
    for split, count in (("train", train), ("test", test)):
        for i in range(count):
            label = "ab"[i % 2]
            level = 0.25 if label == "a" else 0.75
            pixels = np.clip(level + 0.1 * rng.standard_normal((size, size, 3)), 0, 1)
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray((pixels * 255).astype(np.uint8)).save(folder / f"{i}.png")
    return root


def test_image_folder_loads_with_its_shape_and_a_users_model_trains_on_it(tmp_path):
    """A folder of images (the layout torchvision's ImageFolder reads) and a user's convolutional
    model go through the same experiment code as the built-in data and MLP."""
    pytest.importorskip("PIL", reason="Pillow is not installed (pip install memless[experiments])")
    import torch

    from memless.experiments.data import load
    folder = _image_folder(tmp_path / "images", np.random.default_rng(0))
    data = load(str(folder))
    assert data.input_shape == (3, 6, 6) and data.x.shape == (24, 108) and data.x_test.shape == (8, 108)
    assert data.classes == 2 and set(data.y) == {0, 1} and data.x.min() >= 0 and data.x.max() <= 1
    # label 1 ('b') is the bright class, read in sorted class-folder order
    assert data.x[data.y == 1].mean() > data.x[data.y == 0].mean() + 0.3
    built = []

    def conv(shape, classes, seed):
        torch.manual_seed(seed)
        net = torch.nn.Sequential(torch.nn.Conv2d(shape[0], 2, 3), torch.nn.Tanh(), torch.nn.Flatten(),
                                  torch.nn.Linear(2 * (shape[1] - 2) * (shape[2] - 2), classes)).double()
        built.append(shape)
        return net

    result = run("adam-rho", quick=True, seeds=1, data=str(folder), model=conv)
    assert built and all(shape == (3, 6, 6) for shape in built)
    assert {r["data"] for r in result.rows} == {"images"} and all(r["reached"] for r in result.rows)
    assert all(r["test_accuracy"] == 1.0 for r in result.rows)      # the classes are separable


def test_image_folder_refusals(tmp_path):
    pytest.importorskip("PIL", reason="Pillow is not installed (pip install memless[experiments])")
    from PIL import Image

    from memless.experiments.data import load
    (tmp_path / "only_train" / "train" / "a").mkdir(parents=True)
    other = _image_folder(tmp_path / "mixed", np.random.default_rng(1), train=4, test=2)
    Image.fromarray(np.zeros((7, 7, 3), np.uint8)).save(other / "train" / "a" / "odd.png")
    classes = _image_folder(tmp_path / "classes", np.random.default_rng(2), train=4, test=2)
    (classes / "test" / "c").mkdir()
    broken = _image_folder(tmp_path / "broken", np.random.default_rng(3), train=4, test=2)
    (broken / "test" / "a" / "bad.png").write_bytes(b"not an image")
    for folder, fragment in ((tmp_path / "only_train", "must hold train/ and test/"),
                             (other, "not the first image's"), (classes, "the same class folders"),
                             (broken, "cannot be read")):
        with pytest.raises(memless.MemlessError, match=fragment):
            load(str(folder))


def test_objective_of_leaves_the_users_model_as_it_was():
    import torch

    from memless.experiments.data import load
    from memless.experiments.training import objective_of
    data = load("digits", 0)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 10))           # float32, as users build them
    before = [p.detach().clone() for p in model.parameters()]
    loss = objective_of(model, data)
    assert loss.start.dtype == np.float64 and loss.start.size == 650
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_a_model_builder_must_be_callable_and_return_a_module():
    with pytest.raises(memless.MemlessError, match="model must be a callable"):
        run("adam-rho", quick=True, model="resnet")
    with pytest.raises(memless.MemlessError, match="must return a torch.nn.Module"):
        run("adam-rho", quick=True, seeds=1, model=lambda shape, classes, seed: None)


def test_a_users_npz_is_checked_before_training(tmp_path):
    from memless.experiments.data import MAX_CLASSES, load
    rng = np.random.default_rng(0)
    good = dict(x=rng.normal(size=(8, 3)), y=np.arange(8) % 2, x_test=rng.normal(size=(4, 3)), y_test=np.arange(4) % 2)
    cases = {"column labels": (dict(good, y=good["y"][:, None]), "1-D array of integer labels"),
             "strings": (dict(good, x=np.array([["a"] * 3] * 8)), "must hold numbers"),
             "empty": (dict(good, x=np.zeros((0, 3)), y=np.zeros(0, int)), "at least 2 training examples"),
             "huge labels": (dict(good, y=np.array([0, 1, 2, 3, 4, 5, 6, MAX_CLASSES]),
                                  y_test=np.array([0, 1, 2, MAX_CLASSES])), "at most 100000 classes"),
             "unseen test labels": (dict(good, y_test=np.array([0, 1, 7, 1])), r"never shows \(7\)"),
             "missing": ({k: v for k, v in good.items() if k != "y_test"}, "missing y_test$")}
    for name, (arrays, fragment) in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.npz"
        np.savez(path, **arrays)
        with pytest.raises(memless.MemlessError, match=fragment):
            load(str(path))
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(memless.MemlessError, match="not a readable .npz"):
        load(str(corrupt))


def test_a_users_model_is_refused_if_random_and_scored_in_eval_mode():
    """Dropout is refused before any training (the full-batch loss must be a function of the
    parameters); test accuracy uses eval mode (BatchNorm's running statistics) and leaves the
    model's mode as it was; a builder that raises is named in one line."""
    import torch

    from memless.experiments.data import load
    from memless.experiments.training import accuracy
    data = load("digits", 0)

    def dropout(shape, classes, seed):
        return torch.nn.Sequential(torch.nn.Linear(shape[0], 16), torch.nn.Dropout(0.5),
                                   torch.nn.Linear(16, classes)).double()

    with pytest.raises(memless.MemlessError, match=r"random \(Dropout\)"):
        run("adam-rho", quick=True, seeds=1, model=dropout)
    with pytest.raises(memless.MemlessError, match=r"model\(shape=\(64,\), classes=10, seed=0\) raised "
                                                   "ZeroDivisionError"):
        run("adam-rho", quick=True, seeds=1, model=lambda shape, classes, seed: 1 / 0)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 10), torch.nn.BatchNorm1d(10)).double()
    with torch.no_grad():
        net(torch.as_tensor(data.x) * 3.0)                       # running statistics unlike the test batch's
    net.train()
    score = accuracy(net, data)
    assert net.training
    net.eval()
    with torch.no_grad():
        expected = float((net(torch.as_tensor(data.x_test)).argmax(1) == torch.as_tensor(data.y_test)).double().mean())
    assert score == expected


def test_a_device_without_data_is_refused():
    with pytest.raises(memless.MemlessError, match="'meta' cannot be used here"):
        run("adam-rho", quick=True, device="meta")


RESULTS = os.path.join(ROOT, "tutorials", "experiments")


def _kept(name):
    from memless.experiments import ExperimentResult
    with open(os.path.join(RESULTS, f"{name}.json"), encoding="utf-8") as fh:
        return ExperimentResult.from_dict(json.load(fh))


def _decided(result):
    """The sentences today's code decides from a kept run's rows."""
    from memless.experiments import adam, cancel, lion, order, radius
    rows = result.rows
    if result.name == "next-term-radius":
        return radius.claims(rows)
    if result.name in ("adam-rho", "adam-beta"):
        swept = "rho" if result.name == "adam-rho" else "beta"
        return adam.claims(rows, swept, sorted({r[swept] for r in rows}))
    if result.name == "lion-vs-adamw":
        return lion.claims(rows)
    if result.name == "cancel-memory":
        return cancel.claims(rows)
    decided = []
    for name, seed in dict.fromkeys((r["optimizer"], r["seed"]) for r in rows):
        part = [r for r in rows if r["optimizer"] == name and r["seed"] == seed]
        lrs = [r["lr"] for r in part]
        decided.append(order._claim(name, seed, lrs, [r["error_corrected"] for r in part],
                                    [r["error_uncorrected"] for r in part], [r["M/F"] for r in part],
                                    part[0]["sharpness_h"] / part[0]["lr"],
                                    [r["error_second"] for r in part] if "error_second" in part[0] else None))
    return decided


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_the_kept_full_runs_sentences_are_what_their_rows_decide(name):
    """The documentation quotes the full runs kept in tutorials/experiments/: each sentence there is the one
    today's code decides from that run's rows (a full run is minutes; recomputing its sentences is not)."""
    if not os.path.exists(os.path.join(RESULTS, f"{name}.json")):
        pytest.skip(f"no kept full run of {name}")
    result = _kept(name)
    assert not result.settings["quick"] and result.settings["seeds"] >= 3
    kept = [c["sentence"] for c in result.claims]
    assert kept == [c["sentence"] for c in _decided(result)]


def test_results_md_is_rendered_from_the_kept_runs():
    sys.path.insert(0, RESULTS)
    try:
        import render_results
    finally:
        sys.path.remove(RESULTS)
    with open(os.path.join(RESULTS, "RESULTS.md"), encoding="utf-8") as fh:
        assert fh.read() == render_results.render()
    for name in EXPERIMENTS:
        assert os.path.exists(os.path.join(RESULTS, f"{name}.png")), name


def test_order_claim_counts_the_good_local_slopes_from_the_smallest_h_up():
    from memless.experiments.order import _claim
    lrs = [0.16, 0.08, 0.04, 0.02, 0.01]
    second = [h ** 2 for h in lrs]
    broken = [2.5e-3, 2e-3] + second[2:]                    # order 2 up to h = 0.04, nearly flat above
    claim = _claim("x", 0, lrs, broken, lrs, [0.1] * 5, 10.0)
    assert "stays >= 1.5 from the smallest h up to h = 0.04 and is 0.32 between h = 0.04 and 0.08" \
        in claim["sentence"]
    first = [h for h in lrs]                                 # order 1 at the small end: no good slope at all
    assert "below 1.5 already between the two smallest h (1.00 over h = 0.01..0.02)" in \
        _claim("x", 0, lrs, first[:3] + [1e-4, 1e-4 / 2], lrs, [0.1] * 5, 10.0)["sentence"]
    assert "up to h = 0.16;" in _claim("x", 0, lrs, second, lrs, [0.1] * 5, 10.0)["sentence"]


# ----------------------------------------------------------------------------
# next-term-radius: the report's rule, from the rows
# ----------------------------------------------------------------------------


def test_next_term_radius_quick_run_decides_from_its_rows():
    from scipy.stats import mannwhitneyu
    from memless.experiments import radius
    result = run("next-term-radius", quick=True)
    assert len(result.rows) == len(radius.QUICK_CONFIGS) * len(radius.QUICK_LRS)
    assert [c["sentence"] for c in result.claims] == [c["sentence"] for c in radius.claims(result.rows)]
    rows = radius.usable(result.rows)
    settled = np.array([r["settled"] for r in rows])
    assert 0 < settled.sum() < len(rows)                   # both kinds, so the separation is defined
    for key in ("M/F", "M2/M1"):                           # the AUC, against scipy's Mann-Whitney U
        values = np.array([r[key] for r in rows])
        u = mannwhitneyu(values[~settled], values[settled]).statistic     # pairs where the settled one is smaller
        assert radius.separation(values, settled) == pytest.approx(u / (settled.sum() * (~settled).sum()))
    rule = result.claims[1]
    assert rule["with_next_term"][2] <= rule["memory_ratio_alone"][2]     # the second condition only removes


def test_separation_counts_pairs():
    from memless.experiments.radius import separation
    assert separation([0.1, 0.2, 1.0, 2.0], [True, True, False, False]) == 1.0
    assert separation([1.0, 2.0, 0.1, 0.2], [True, True, False, False]) == 0.0
    assert separation([0.5, 0.5], [True, False]) == 0.5
    assert np.isnan(separation([0.5, 0.7], [True, True]))
