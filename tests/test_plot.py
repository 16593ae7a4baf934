"""memless.plot: each figure's content, checked against the numbers it draws.

Needs matplotlib (the ``plot`` extra, installed by the README's set-up); skipped without it,
except the test of the one-line error when it is missing.
"""
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import memless
from memless.errors import MemlessError

#: a hang guard, not a speed test: generous, so a busy machine does not fail a correct program
HANG_GUARD = 1800
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_without_matplotlib_the_error_is_one_line_naming_the_extra():
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "import memless.plot\n"
            "try:\n    memless.plot.pyplot()\nexcept memless.MemlessError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "memless.plot needs matplotlib: pip install memless[plot]"


def test_the_core_does_not_import_matplotlib():
    code = "import memless, memless.studies.analysis, memless.show.report, sys; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


plt = pytest.importorskip("matplotlib.pyplot", reason="matplotlib is not installed (pip install memless[plot])")
import memless.plot as mp  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

from memless.studies.analysis import analyze  # noqa: E402
from memless.engine.corrections import memory_profile  # noqa: E402


def test_order_plots_the_study_errors_with_guides_and_fitted_orders():
    study = memless.order_study(memless.get_optimizer("heavy-ball", beta=0.5), "curvy", None, horizon=0.3,
                                lrs=[0.01, 0.005, 0.0025])
    fig = mp.order(study)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    lines = {line.get_label(): line for line in ax.get_lines()}
    corrected = lines[f"memoryless + M (Eq. 4) (order {study.order_corrected:.2f})"]
    uncorrected = lines[f"memoryless, no M (order {study.order_uncorrected:.2f})"]
    np.testing.assert_allclose(corrected.get_ydata(), study.errors_corrected)
    np.testing.assert_allclose(uncorrected.get_ydata(), study.errors_uncorrected)
    np.testing.assert_allclose(corrected.get_xdata(), study.lrs)
    guide = lines["slope 2"]
    slope = np.polyfit(np.log(guide.get_xdata()), np.log(guide.get_ydata()), 1)[0]
    assert slope == pytest.approx(2.0) and "slope 1" in lines
    plt.close(fig)


def test_channels_bars_are_the_strengths_in_the_report_colors():
    a = analyze(memless.get_optimizer("adamw", weight_decay=0.0), steps=60, points=3, evidence_losses=())
    fig = mp.channels(a)
    bars = fig.axes[0].patches
    memory = [c for c in a.channels if c.decay]
    assert len(bars) == len(memory) == 2
    for bar, c in zip(bars, memory):
        assert bar.get_height() == pytest.approx(c.strength)
        want = "tab:green" if c.strength > 0 else "tab:red"
        assert bar.get_facecolor() == to_rgba(want)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["first-moment", "second-moment"]
    plt.close(fig)


def test_trajectories_draw_three_paths_over_contours_and_the_line_of_minima():
    opt = memless.get_optimizer("adam", beta1=0.5, beta2=0.9, eps=1e-3)
    fig = mp.trajectories(opt, "bilinear", lr=4e-3, steps=100)
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    for label in ("optimizer", "memoryless + M (Eq. 4)", "memoryless, no M"):
        assert label in labels
    assert "flattest minimum" not in labels      # (0.87, 0.87) is outside this view: not in the legend either
    path = memless.trajectory(opt, "bilinear", None, lr=4e-3, steps=100)
    drawn = [line for line in ax.get_lines() if line.get_label() == "optimizer"][0]
    np.testing.assert_allclose(drawn.get_xdata(), path[:, 0])
    assert ax.collections       # the contours
    plt.close(fig)
    fig = mp.trajectories(memless.get_optimizer("heavy-ball", beta=0.5), "curvy", lr=0.01, steps=50)
    assert fig.axes[0].get_yscale() == "log" and len(fig.axes[0].get_lines()) == 2     # errors against time
    plt.close(fig)


def test_memory_profile_is_a_straight_line_for_geometric_memory_and_flat_for_schedule_free():
    geometric = memory_profile(memless.get_optimizer("heavy-ball", beta=0.8), "curvy", n=128)
    flat = memory_profile(memless.get_optimizer("schedule-free-sgd"), "curvy")
    fig = mp.memory_profile([geometric, flat], labels=["heavy-ball", "schedule-free"])
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["heavy-ball (decays)", "schedule-free (does not decay)"]
    np.testing.assert_allclose(lines[0].get_ydata(), geometric.values[geometric.values > 0])
    with pytest.raises(MemlessError, match="labels must name each of the 2 profiles"):
        mp.memory_profile([geometric, flat], labels=["one"])
    plt.close(fig)


@pytest.mark.slow
def test_adamw_regime_map_changes_sign_across_beta1_equal_beta2():
    grid = np.array([0.2, 0.5, 0.8, 0.95])
    result = mp.regime_map("adamw", "bilinear", x="beta1", y="beta2", xs=grid, ys=grid, lr=1e-2, steps=20)
    B1, B2 = np.meshgrid(result.xs, result.ys)
    assert np.all(result.strength[B1 > B2] > 0) and np.all(result.strength[B1 < B2] < 0)
    assert abs(result.order[0, 0] - 2) < 0.2                  # short memory: the first-order theory holds
    assert np.nanmin(result.order[-1]) < 1.5                  # beta2 = 0.95 over 20 steps: it does not
    fig = result.figure()
    assert fig.axes[0].get_xlabel() == "beta1" and fig.axes[0].get_ylabel() == "beta2"
    plt.close(fig)
    with pytest.raises(MemlessError, match="cannot map 'gamma' for adamw; allowed: lr, beta1"):
        mp.regime_map("adamw", x="gamma")


@pytest.mark.slow
@pytest.mark.parametrize("extension", ["png", "svg", "pdf"])
def test_cli_writes_the_figure_in_the_requested_format(tmp_path, extension):
    path = tmp_path / f"report.{extension}"
    out = subprocess.run([sys.executable, "-m", "memless", "report", "heavy-ball", "--fast", "--quiet",
                          "--plot", str(path)], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    head = path.read_bytes()[:8]
    assert {"png": head.startswith(b"\x89PNG"), "svg": b"<?xml" in head or b"<svg" in head,
            "pdf": head.startswith(b"%PDF")}[extension]


def test_cli_refuses_an_unknown_figure_format_before_any_work():
    out = subprocess.run([sys.executable, "-m", "memless", "report", "lion", "--plot", "x.gif"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and out.stderr.strip() == (
        "memless: error: --plot 'x.gif': the file must end in .png, .svg or .pdf")


@pytest.mark.slow
def test_cli_map_writes_a_map(tmp_path):
    path = tmp_path / "map.png"
    out = subprocess.run([sys.executable, "-m", "memless", "map", "heavy-ball", "--x", "lr", "--y", "beta",
                          "--grid", "3", "--plot", str(path)], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_jupyter_reprs_show_the_numbers_and_pictures():
    from memless.studies.modified import summarize

    a = analyze(memless.get_optimizer("heavy-ball", beta=0.5), steps=50, points=3, evidence_losses=())
    page = a._repr_html_()
    assert "verdict: regularizing" in page and "<pre" in page and "heavy-ball" in page
    assert a._repr_png_()[:4] == b"\x89PNG"
    study = memless.order_study(memless.get_optimizer("heavy-ball", beta=0.5), "curvy", None, horizon=0.2,
                                lrs=[0.01, 0.005])
    page = study._repr_html_()
    assert f"{study.errors_corrected[0]:.4g}" in page and f"corrected {study.order_corrected:.2f}" in page
    assert study._repr_png_()[:4] == b"\x89PNG"
    profile = memory_profile(memless.get_optimizer("schedule-free-sgd"), "curvy")
    assert "does not decay" in profile._repr_html_() and profile._repr_png_()[:4] == b"\x89PNG"
    _, info = memless.correction(memless.get_optimizer("adam"), "curvy", None, lr=1e-3, full_output=True)
    assert "momentum" in info._repr_html_()
    assert "implicit" in summarize(memless.get_optimizer("heavy-ball", beta=0.5))._repr_html_().lower()
    check = memless.implicit_loss(memless.get_optimizer("heavy-ball", beta=0.5), "curvy", None, lr=0.01)
    assert "curl-free" in check._repr_html_()
    assert "theta&#x27; = G1 + h G2" in memless.modified_equation(memless.get_optimizer("adam"), "curvy", 1e-3)._repr_html_()


@pytest.mark.slow
def test_documented_figures_come_from_the_script(tmp_path):
    """The pictures page's figures are made by tutorials/make_readme_figures.py from the package."""
    page = pathlib.Path(os.path.join(ROOT, "docs", "pages", "pictures.md")).read_text(encoding="utf-8")
    assert "(figures/figure1.png)" in page and "(figures/regime_map.png)" in page
    out = subprocess.run([sys.executable, os.path.join(ROOT, "tutorials", "make_readme_figures.py"), str(tmp_path)],
                         capture_output=True, text=True, timeout=HANG_GUARD)
    assert out.returncode == 0, out.stderr
    for name in ("figure1.png", "regime_map.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
        assert os.path.exists(os.path.join(ROOT, "tutorials", "figures", name))


def test_several_optimizers_draw_one_path_each_labelled_by_what_differs():
    adams = [memless.get_optimizer("adam", beta1=b, beta2=0.9, eps=1e-3) for b in (0.5, 0.8)]
    fig = mp.trajectories(adams, "bilinear", lr=4e-3, steps=50)
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert "adam beta1=0.5" in labels and "adam beta1=0.8" in labels
    plt.close(fig)


def test_symlog_axes_label_no_tick_beside_zero_and_the_probe_legend_names_both_axes():
    import numpy as np
    probe = memless.Probe(memless.get_optimizer("adamw"), "curvy", lr=1e-3, every=1)
    for s in range(4):
        probe.step(np.array([0.3, 0.5, -0.4]) * (1 - 0.1 * s))
    fig = mp.probe(probe)
    ax = fig.axes[0]
    assert "|M|/|F| (right axis)" in [t.get_text() for t in ax.get_legend().get_texts()]
    fig.canvas.draw()
    labels = {tick.get_position()[1]: tick.get_text() for tick in ax.get_yticklabels()}
    assert labels.get(0.0) == "0" and all(text == "" for value, text in labels.items() if 0 < abs(value) <= 1e-6)
    a = analyze(memless.get_optimizer("adamw"), steps=60, points=3, evidence_losses=())
    fig = mp.channels([a])
    fig.canvas.draw()
    ax = fig.axes[0]
    threshold = ax.yaxis.get_transform().linthresh
    assert all(t.get_text() == "" for t in ax.get_yticklabels() if 0 < abs(t.get_position()[1]) <= threshold)


def test_the_channels_figure_keeps_every_bar_inside_and_names_one_too_small_to_see():
    """compare --plot hid Lion's 9e-14 bar and let heavy-ball's +10 overflow (issue 26)."""
    analyses = [analyze(memless.get_optimizer(name), steps=60, points=3, evidence_losses=())
                for name in ("adamw", "lion", "heavy-ball")]
    fig = mp.comparison_figure(analyses)
    ax = fig.axes[0]
    low, high = ax.get_ylim()
    values = [c.strength for a in analyses for c in a.channels if c.decay]
    assert low < min(values) and max(values) < high
    texts = [t.get_text() for t in ax.texts]
    assert any("below" in t and "rounding" in t for t in texts)             # Lion's term, |strength| < 1e-12


def test_the_trajectory_panel_names_only_what_is_in_view_and_says_how_far_the_paths_are():
    """The report's first panel: no legend entry for minima outside the view, and the paths' largest
    distances from the optimizer written on it (close paths look identical)."""
    opt = memless.get_optimizer("adamw")
    far = mp.trajectories(opt, "bilinear", lr=1e-3, steps=200)           # starts at (2.8, 3.5): minima off view
    labels = [line.get_label() for line in far.axes[0].get_lines() if not line.get_label().startswith("_")]
    assert "flattest minimum" not in labels and not any("minima" in label for label in labels)
    texts = [t.get_text() for t in far.axes[0].texts]
    assert any(t.startswith("largest distance from the optimizer: with M ") for t in texts), texts
    near = mp.trajectories(memless.get_optimizer("heavy-ball", beta=0.5), "bilinear", theta=np.array([0.5, 0.5]),
                           lr=1e-2, steps=300)
    labels = [line.get_label() for line in near.axes[0].get_lines()]
    assert "flattest minimum" in labels and "minima theta_1 theta_2 = 3/4" in labels
    mp.pyplot().close("all")
