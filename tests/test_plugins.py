"""Plugins: discovery through entry points, broken plugins, the conformance kit."""
import json
import os
import shutil
import subprocess
import sys
import warnings

import autograd.numpy as anp
import numpy as np
import pytest

import memless
import memless.testing
from memless.optimizers import registry
from memless.optimizers import BUILTIN, HeavyBall, RMSProp

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "plugins")


@pytest.fixture
def fixture_path(monkeypatch):
    monkeypatch.syspath_prepend(FIXTURES)
    return FIXTURES


def discover(*paths):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = registry.discover(path=list(paths))
    return found, [str(w.message) for w in caught if issubclass(w.category, memless.PluginWarning)]


# -- discovery ---------------------------------------------------------------------

def test_good_and_broken_plugins_from_dist_info_folders(fixture_path):
    found, warned = discover(fixture_path)
    good = found["window-average"]
    assert not good.broken and good.distribution == "memless-fixture-good" and good.version == "1.0"
    assert found["factory-made"].factory.__name__ == "make_heavy_ball"
    reasons = {name: found[name].error for name in ("import-fails", "not-an-optimizer", "abstract", "not-callable")}
    assert "import failed: ModuleNotFoundError" in reasons["import-fails"]
    assert "is not a memless.MemoryOptimizer subclass" in reasons["not-an-optimizer"]
    assert "is abstract (does not implement direction)" in reasons["abstract"]
    assert "neither a MemoryOptimizer subclass nor a factory" in reasons["not-callable"]
    clash = found["window-average (memless-fixture-twin)"]
    assert clash.broken and "name clashes with memless-fixture-good" in clash.error
    # one warning per skipped plugin, naming it and its distribution (the built-ins are always
    # present, so the twin's 'adam' clashes with the built-in even on this path alone)
    assert len(warned) == 6
    assert any("'adam' from memless-fixture-twin 2.0 skipped: name clashes with memless's" in w for w in warned)
    assert any("'import-fails' from memless-fixture-broken 0.1 skipped" in w for w in warned)


def test_a_plugin_cannot_shadow_a_builtin(fixture_path):
    found, warned = discover(fixture_path, *sys.path)
    assert found["adam"].builtin and found["adam"].factory is memless.optimizers.Adam
    assert "name clashes with memless's memless.optimizers.adam:Adam" in found["adam (memless-fixture-twin)"].error


def test_installing_and_removing_a_distribution(tmp_path, fixture_path):
    site = tmp_path / "site"
    site.mkdir()
    assert "window-average" not in discover(str(site))[0]
    shutil.copytree(os.path.join(FIXTURES, "memless_fixture_good-1.0.dist-info"),
                    site / "memless_fixture_good-1.0.dist-info")
    assert not discover(str(site))[0]["window-average"].broken
    shutil.rmtree(site / "memless_fixture_good-1.0.dist-info")
    assert "window-average" not in discover(str(site))[0]


def test_get_optimizer_from_plugins(fixture_path, monkeypatch):
    found, _ = discover(fixture_path, *sys.path)
    monkeypatch.setattr(registry, "_cache", found)
    opt = memless.get_optimizer("window-average", width=2)
    assert opt.name == "window-average" and opt.width == 2
    assert isinstance(memless.get_optimizer("factory-made", beta=0.3), HeavyBall)
    with pytest.raises(memless.UnknownOptimizerError, match="'import-fails' from memless-fixture-broken is broken"):
        memless.get_optimizer("import-fails")
    with pytest.raises(memless.UnknownOptimizerError, match="available: .*window-average"):
        memless.get_optimizer("nope")
    assert "import-fails" not in memless.available()
    registry.refresh()
    assert registry._cache is None


def cli(*args, pythonpath=None):
    env = dict(os.environ, COLUMNS="120")
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "memless", *args], capture_output=True, text=True, env=env)


@pytest.mark.slow
def test_cli_survives_broken_plugins():
    result = cli("list", "--no-color", pythonpath=FIXTURES)
    assert result.returncode == 0
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert result.stdout.count("BROKEN") == 6
    lines = [line for line in result.stderr.splitlines() if line]
    assert len(lines) == 6 and all(line.startswith("memless: warning: optimizer plugin ") for line in lines)
    rows = {row["name"]: row for row in json.loads(cli("list", "--json", pythonpath=FIXTURES).stdout)}
    assert rows["abstract"]["status"] == "broken" and rows["window-average"]["status"] == "ok"
    assert rows["import-fails"]["error"].startswith("import failed: ModuleNotFoundError")
    assert rows["adamw"]["source"] == "built-in" and rows["adamw"]["hyperparameters"]["beta2"] == 0.999
    report = cli("report", "window-average", "--no-color", pythonpath=FIXTURES)
    assert report.returncode == 0 and "verdict" in report.stdout


def test_installed_example_plugin_is_listed():
    """The README installs plugins/memless-ademamix; it shows in `list` with its distribution."""
    pytest.importorskip("memless_ademamix", reason="the example plugin is not installed")
    rows = {row["name"]: row for row in json.loads(cli("list", "--json").stdout)}
    assert rows["ademamix"]["source"] == "memless-ademamix 0.1.0" and rows["ademamix"]["status"] == "ok"


# -- the conformance kit -------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(BUILTIN) - {"schedule-free-sgd"}))
def test_every_builtin_optimizer_conforms(name):
    """The built-ins, a fixed list (installed plugins run the kit in their own tests)."""
    result = memless.testing.check_optimizer(name)
    assert result.passed and len(result.checks) >= 7


@pytest.mark.slow
def test_the_kit_fails_schedule_free_on_the_order_alone():
    """Schedule-Free's memory does not decay: its direction, streaming form and Eq. (12) at finite n
    are right, but the memoryless iteration does not track it to O(h^2) -- nor to O(h)."""
    result = memless.testing.check_optimizer("schedule-free-sgd", raise_on_failure=False)
    assert {c.name for c in result.failures} == {"order"}
    assert all("memory does not decay" in c.detail for c in result.failures)


class StaleStreaming(HeavyBall):
    """The streaming form forgets to decay: it disagrees with the history form."""

    def advance(self, memory, theta, gradient, n):
        new = {"momentum": memory["momentum"] + 0.8 * gradient(theta)}
        return new["momentum"], new


class DetachedPhi(RMSProp):
    """Phi hides the second moment from autograd: not differentiable as it claims."""

    def combine(self, m):
        v = m["second-moment"]
        frozen = getattr(v, "_value", v)              # a 'stop gradient'
        return m["gradient"] / anp.sqrt(frozen + self.eps)


class PlainNumpyPhi(RMSProp):
    """Phi written with numpy, not autograd.numpy."""

    def combine(self, m):
        return m["gradient"] / np.sqrt(np.asarray(m["second-moment"], dtype=float) + self.eps)


class WrongShape(memless.MemoryOptimizer):
    def direction(self, history, gradient):
        return anp.sum(gradient(history[0]))


@pytest.mark.parametrize("broken,message", [
    (StaleStreaming(), "streaming on curvy: streaming and history forms differ by"),
    (DetachedPhi(rho=0.5, eps=0.1), r"correction on curvy: engine M\^\(3\) = .* but a finite difference"),
    (PlainNumpyPhi(rho=0.5, eps=0.1), "correction on curvy: raised"),
    (WrongShape(), r"direction on curvy: .*direction\(\) returned shape \(\) at step 0; it must return theta's "
                   r"shape \(3,\)"),
])
def test_kit_catches_broken_optimizers(broken, message):
    with pytest.raises(memless.testing.ConformanceError, match=message):
        memless.testing.check_optimizer(broken, orders=False)
    result = memless.testing.check_optimizer(broken, orders=False, raise_on_failure=False)
    assert not result.passed and "FAIL" in result.summary()


@pytest.mark.slow
def test_kit_order_check_can_fail():
    """The running mean of ALL past gradients has memory that never decays (Assumption 3.1
    fails: M^(n) grows like n h, i.e. O(1) on a fixed horizon): the kit's memory profile sees it
    and fails the order check, saying why, instead of running an order study that cannot hold."""

    class RunningMean(memless.MemoryOptimizer):
        def direction(self, history, gradient):
            total = 0.0
            for theta in history:
                total = total + gradient(theta)
            return total / len(history)

    result = memless.testing.check_optimizer(
        RunningMean(), raise_on_failure=False, lrs=(0.02, 0.01, 0.005), horizon=0.3, adapt_lrs=False,
        losses=[("curvy", memless.losses.curvy, np.array([0.3, 0.5, -0.4]))])
    order = [c for c in result.checks if c.name == "order"][0]
    assert not order.passed and "memory does not decay" in order.detail and "Assumption 3.1" in order.detail
    assert all(c.passed for c in result.checks if c.name != "order")


def test_the_conformance_kit_reports_its_progress():
    seen = []
    memless.testing.check_optimizer(memless.get_optimizer("heavy-ball", beta=0.5), orders=False,
                                    progress=lambda done, total, label: seen.append((done, total, label)))
    assert [s[0] for s in seen] == list(range(1, len(seen) + 1)) and seen[-1][0] == seen[-1][1] == 8
    assert seen[0][2] == "direction on curvy" and seen[-1][2] == "closed form on logistic"
    with pytest.raises(memless.MemlessError, match="progress must be a callable"):
        memless.testing.check_optimizer("gd", orders=False, progress="yes")


def test_progress_true_prints_a_line_per_step_on_stderr(capsys):
    memless.testing.check_optimizer(memless.get_optimizer("gd"), orders=False, progress=True)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "check_optimizer: 1/8 direction on curvy" and lines[-1].startswith("check_optimizer: 8/8")
    memless.analyze(memless.get_optimizer("heavy-ball", beta=0.5), steps=40, points=2, evidence_losses=(),
                    progress=True)
    assert capsys.readouterr().err.splitlines()[-1].startswith("analyze: ")
