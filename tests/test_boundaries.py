"""Nothing lost, nothing hangs: hostile inputs at every boundary a user reaches -- files, sizes,
parsing, output streams, plugins, API arguments.  Each gives a MemlessError (API) or exit 2 with
one line on stderr and no traceback (CLI), before any work, with no file lost or half-written.
(No test here asserts a time: a refusal "before any work" is shown by the work's own output
being absent.)"""
import errno
import os
import pathlib
import resource
import signal
import subprocess
import sys

import numpy as np
import pytest

import memless
from memless.files import check_output_path, write_atomic
from memless.losses import REFERENCE_LOSSES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOSTILE = os.path.join(os.path.dirname(__file__), "fixtures", "hostile_plugins")
#: a hang guard, not a speed test
HANG_GUARD = 1800


def cli(*args, env=None, stdout=subprocess.PIPE, preexec_fn=None, pythonpath=None):
    environment = dict(os.environ, **(env or {}))
    if pythonpath:
        environment["PYTHONPATH"] = pythonpath + os.pathsep + environment.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "memless", *args], stdout=stdout, stderr=subprocess.PIPE,
                          text=True, env=environment, cwd=ROOT, timeout=HANG_GUARD, preexec_fn=preexec_fn)


def assert_one_line_error(run, *fragments):
    assert run.returncode == 2, (run.returncode, run.stderr[-2000:])
    lines = [line for line in run.stderr.splitlines() if line.startswith("memless: error:")]
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert len(lines[0]) < 400, lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "analyzed" not in run.stderr            # refused before the analysis ran


# -- 1. nothing the user owns is lost ------------------------------------------------------------


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "keep.csv"
    path.write_bytes(b"precious")

    def half_then_full_disk(fh):
        fh.write(b"half a fi")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(memless.MemlessError, match="No space left on device; the file there, if any, is unchanged"):
        write_atomic(str(path), half_then_full_disk)
    assert path.read_bytes() == b"precious" and os.listdir(tmp_path) == ["keep.csv"]
    write_atomic(str(path), lambda fh: fh.write(b"new"))
    assert path.read_bytes() == b"new" and os.listdir(tmp_path) == ["keep.csv"]


def test_a_file_size_limit_during_plot_keeps_the_old_figure(tmp_path):
    """report --plot over an existing file under a 2 kB file-size limit: the write fails, the old file stays."""
    path = tmp_path / "keep.png"
    path.write_bytes(b"old figure")

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))

    pytest.importorskip("matplotlib", reason="matplotlib is not installed (pip install memless[plot])")
    run = cli("report", "heavy-ball", "--fast", "--quiet", "--plot", str(path), preexec_fn=limit,
              stdout=subprocess.DEVNULL)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert "cannot write" in run.stderr and "unchanged" in run.stderr
    assert path.read_bytes() == b"old figure" and os.listdir(tmp_path) == ["keep.png"]


def test_probe_writes_atomically_and_never_to_a_file_descriptor(tmp_path):
    probe = memless.Probe(memless.get_optimizer("adamw"), "curvy", lr=1e-3, every=1)
    with pytest.raises(memless.MemlessError, match="no records yet"):
        probe.to_csv(str(tmp_path / "log.csv"))
    probe.step(REFERENCE_LOSSES["curvy"].start)
    other = tmp_path / "other.txt"
    other.write_text("someone else's file")
    fd = os.open(other, os.O_RDWR)
    try:
        for call in (probe.to_csv, probe.to_json):
            with pytest.raises(memless.MemlessError, match="does not write to open file descriptors"):
                call(fd)
        os.fstat(fd)                                   # still open
    finally:
        os.close(fd)
    assert other.read_text() == "someone else's file"
    probe.to_csv(str(tmp_path / "log.csv"))
    probe.to_json(str(tmp_path / "log.json"))
    assert sorted(os.listdir(tmp_path)) == ["log.csv", "log.json", "other.txt"]


# -- 2. paths are checked before any work ------------------------------------------------------


@pytest.mark.parametrize("name,fragment", [
    ("nodir/out.png", "does not exist"),
    ("", "is empty"),
    ("x" * 300 + ".png", "at most 255"),
    ("out.gif", "must end in .png, .svg or .pdf"),
    ("folder.png", "is a directory"),
    ("full.png", "not a regular file"),
])
def test_plot_paths_are_refused_before_the_analysis(tmp_path, name, fragment):
    (tmp_path / "folder.png").mkdir()
    os.symlink("/dev/full", tmp_path / "full.png")
    target = name if name in ("",) else str(tmp_path / name)
    assert_one_line_error(cli("report", "lion", "--plot", target), fragment)
    assert_one_line_error(cli("compare", "lion", "gd", "--plot", target), fragment)
    assert_one_line_error(cli("map", "heavy-ball", "--x", "lr", "--y", "beta", "--grid", "3", "--plot", target),
                          fragment)
    with pytest.raises(memless.MemlessError, match=fragment):
        check_output_path(target, "--plot", (".png", ".svg", ".pdf"))


def test_a_bad_matplotlib_backend_is_one_line(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (pip install memless[plot])")
    assert_one_line_error(cli("report", "lion", "--plot", str(tmp_path / "x.png"), env={"MPLBACKEND": "nosuch"}),
                          "MPLBACKEND='nosuch'")
    assert not os.listdir(tmp_path)


# -- 3. every request is bounded before its work starts ---------------------------------------


@pytest.mark.parametrize("args,fragment", [
    (("--grid", "100000"), "grid must be an integer in 2..100"),
    (("--grid", "0"), "grid must be an integer in 2..100"),
    (("--grid", "9" * 30), "grid must be an integer in 2..100"),
    (("--grid", "40"), "corrections is more than memless.checks.MAX_CORRECTIONS"),
    (("--steps", "4000000"), "steps must be an integer in 1..1000000"),
    (("--steps", "100000"), "is more than memless.checks.MAX_"),
])
def test_map_sizes_are_bounded(args, fragment):
    assert_one_line_error(cli("map", "adamw", "--x", "beta1", "--y", "beta2", *args), fragment)


CURVY = REFERENCE_LOSSES["curvy"]


@pytest.mark.parametrize("call,fragment", [
    (lambda: memless.studies.analysis.analyze(memless.get_optimizer("adamw"), steps=10 ** 9), "MAX_STEPS"),
    (lambda: memless.studies.analysis.analyze(memless.get_optimizer("adamw"), points=10 ** 7), "points must be an integer"),
    (lambda: memless.studies.analysis.analyze(memless.get_optimizer("adamw"), evidence_steps=10 ** 8), "evidence_steps"),
    (lambda: memless.studies.analysis.analyze(memless.get_optimizer("adamw"), progress=5), "progress must be a callable"),
    (lambda: memless.modified_equation(memless.get_optimizer("adamw"), "curvy", 1e-3).solve(CURVY.start, 10 ** 10),
     "MAX_"),
    (lambda: memless.modified_equation(memless.get_optimizer("adamw"), "curvy", 1e-3).iterate(CURVY.start, 10 ** 9),
     "MAX_"),
    (lambda: memless.order_study(memless.get_optimizer("adamw"), "curvy", None, horizon=5000, lrs=[0.01, 0.005]),
     "corrections is more than memless.checks.MAX_CORRECTIONS"),
    (lambda: memless.order_study(memless.get_optimizer("adamw"), "curvy", None, horizon=1, lrs=[0.01, 0.01, 0.005]),
     "all different"),
    (lambda: memless.order_study(memless.get_optimizer("adamw"), "curvy", None, horizon=1, lrs=[0.01, 0.005],
                                 callback=5), "callback must be a callable"),
    (lambda: memless.order_study(memless.get_optimizer("adamw"), "curvy", None, horizon=1, lrs=[0.01, 0.005],
                                 tol=-1.0), "tol must be a finite number > 0"),
    (lambda: memless.implicit_loss(memless.get_optimizer("adamw"), "curvy", None, lr=1e-3, tol=-1), "tol must be"),
    (lambda: memless.implicit_loss(memless.get_optimizer("adamw"), "curvy", None, lr=1e-3, tol="x"), "tol must be"),
    (lambda: memless.studies.analysis.regime_map("adamw", grid=300), "grid must be an integer in 2..100"),
    (lambda: memless.studies.analysis.regime_map("adamw", xs=np.linspace(0.1, 0.9, 101), ys=[0.9, 0.99]), "1..100"),
    (lambda: memless.Probe(memless.get_optimizer("adamw"), "curvy", lr=1e-3, every=0), "every must be"),
])
def test_api_requests_are_bounded_and_arguments_checked(call, fragment):
    with pytest.raises(memless.MemlessError, match=fragment):
        call()


def test_a_stiff_modified_equation_is_refused_within_its_budget():
    """At lr = 50 the corrected equation is stiff: solve() stops at 200 evaluations per step of h (it spent 98 s
    on one step before) and says why."""
    equation = memless.modified_equation(memless.get_optimizer("heavy-ball", beta=0.9), "rosenbrock", 50.0)
    with pytest.raises(memless.MemlessError, match="stiff|could not be integrated|left the region|diverged"):
        equation.solve(REFERENCE_LOSSES["rosenbrock"].start, 3)


# -- 4. parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize("args,fragment", [
    (("report", "lion", "--set", "beta2=" + "9" * 5000), "a number of 5000 characters"),
    (("report", "lion", "--set", "beta2=0." + "9" * 5000), "at most 100 are allowed"),
    (("report", "lion", "--set", "k" * 100_000 + "=1"), "unknown hyperparameter"),
    (("report", "lion", "--set", "=1"), "--set takes KEY=VALUE"),
    (("compare", "lion", "adamw", "--set", "\u00b2.beta2=0.9"), "is not among the compared names"),
    (("compare", "lion", "adamw", "--set", "9" * 40 + ".beta2=0.9"), "is not among the compared names"),
    (("compare", "lion", "adamw", "--set", "3.beta2=0.9"), "entry 3 does not exist"),
])
def test_cli_parsing_of_hostile_settings(args, fragment):
    assert_one_line_error(cli(*args), fragment)


# -- 5. output streams --------------------------------------------------------------------------


def test_a_full_disk_on_stdout_is_one_line(tmp_path):
    with open("/dev/full", "w") as full:
        for args in (("list-losses",), ("report", "gd", "--fast", "--quiet"), ("report", "gd", "--fast", "--quiet",
                                                                              "--json")):
            run = cli(*args, stdout=full)
            assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
            assert "cannot write the output" in run.stderr


def test_an_ascii_terminal_gets_ascii_names():
    run = cli("report", "lion", "--fast", "--quiet", env={"PYTHONIOENCODING": "ascii", "LC_ALL": "C"})
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    assert "beta" in run.stdout and run.stdout.isascii()


def test_a_closed_stdout_is_an_error_not_silence():
    run = subprocess.run(f"{sys.executable} -m memless list-losses >&-", shell=True, stderr=subprocess.PIPE,
                         text=True, cwd=ROOT, timeout=HANG_GUARD)
    assert run.returncode == 2 and "standard output is closed" in run.stderr and "Traceback" not in run.stderr


def test_a_reader_that_goes_away_in_the_error_path_is_quiet():
    run = subprocess.run(f"{sys.executable} -m memless report nosuch --json | head -c0", shell=True,
                         stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=HANG_GUARD)
    assert "Traceback" not in run.stderr and "unknown optimizer" in run.stderr


@pytest.mark.parametrize("columns", ["0", "-5", "abc", "3"])
def test_a_useless_columns_value_still_prints(columns):
    run = cli("list-losses", env={"COLUMNS": columns})
    assert run.returncode == 0 and "curvy" in run.stdout
    run = cli("report", "gd", "--fast", "--quiet", env={"COLUMNS": columns})
    assert run.returncode == 0 and "gd" in run.stdout and len(run.stdout) > 200


# -- 6. plugins are contained --------------------------------------------------------------------


def hostile(*args, seconds="3"):
    return cli(*args, pythonpath=HOSTILE, env={"MEMLESS_PLUGIN_SECONDS": seconds})


def test_plugins_that_exit_sleep_or_print_at_import_do_not_take_the_cli_down():
    import json
    run = hostile("list", "--json")
    assert run.returncode == 0, run.stderr
    rows = {row["name"]: row for row in json.loads(run.stdout)}        # the plugin's print is not in the JSON
    assert "called sys.exit(3)" in rows["exits-at-import"]["error"]
    assert "ran for more than 3 s" in rows["sleeps-at-import"]["error"]
    assert "must be a tuple of memless Hyperparameter" in rows["bad-hyperparameters"]["error"]
    assert rows["prints-at-import"]["status"] == "ok" and "hello from a plugin" in run.stderr
    run = hostile("report", "gd", "--fast", "--quiet")
    assert run.returncode == 0 and "Memory channels" in run.stdout
    run = hostile("list-losses")                  # needs no plugins: none is imported
    assert run.returncode == 0 and "hello from a plugin" not in run.stderr


def test_plugin_code_that_exits_or_hangs_at_run_time_is_a_plugin_error():
    assert_one_line_error(hostile("report", "exits-in-direction", "--fast", "--quiet"),
                          "'exits-in-direction'", "called sys.exit(0)")
    assert_one_line_error(hostile("report", "sleeps-in-direction", "--fast", "--quiet", seconds="2"),
                          "'sleeps-in-direction'", "ran for more than 2 s")


def test_a_plugin_that_prints_does_not_corrupt_json():
    import json
    run = hostile("report", "prints-in-direction", "--fast", "--quiet", "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["optimizer"] == "prints-in-direction"
    assert "direction called" in run.stderr


# -- 7. API arguments ---------------------------------------------------------------------------


def _square(p):
    return sum((value ** 2).sum() for value in p.values())


@pytest.mark.parametrize("theta,fragment", [
    ({"a": {"b": 1.0}}, "parameter 'a' must be an array of real numbers, got dict"),
    ({"a": "xyz"}, "got str"),
    ({"a": object()}, "got object"),
    ({"a": np.array([1 + 2j, 3.0])}, "got complex numbers"),
])
def test_dict_parameters_must_hold_real_numbers(theta, fragment):
    with pytest.raises(memless.LossError, match=fragment):
        memless.correction(memless.get_optimizer("heavy-ball"), _square, theta, lr=1e-3)


def test_framework_parameters_are_checked():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install memless[torch])")
    from memless.frameworks.torch import objective
    with pytest.raises(memless.LossError, match="'meta' device"):
        objective(torch.nn.Linear(3, 2, device="meta"), torch.nn.functional.mse_loss,
                  (torch.zeros(4, 3), torch.zeros(4, 2)))
    pytest.importorskip("jax", reason="JAX is not installed (pip install memless[jax])")
    from memless.frameworks import jax as jax_frameworks
    for params in ({"a": "xyz"}, "abc", {"a": {"b": 1.0}}):
        with pytest.raises(memless.LossError, match="must be an array of real numbers"):
            jax_frameworks.objective(lambda p: 0.0, params)


def test_a_black_box_limit_n_must_be_a_count():
    from memless.frameworks.blackbox import StepFunction
    for bad in ("abc", 0, -3, 2.5, True):
        with pytest.raises(memless.MemlessError, match="limit_n must be an integer"):
            StepFunction(lambda g, p, s: (g, s), init=np.zeros_like, limit_n=bad)


def test_an_order_fit_that_is_nan_is_said():
    """No memory (gd): the memoryless iteration equals the optimizer, every error is 0, no order can be fitted;
    memless says so instead of returning NaN without a word."""
    with pytest.warns(memless.OrderWarning, match="an error is exactly 0"):
        study = memless.order_study(memless.get_optimizer("gd"), "curvy", None, horizon=0.05, lrs=[0.01, 0.005])
    assert np.isnan(study.order_corrected)


# -- 8. messages name the real cause ---------------------------------------------------------------


def test_a_faulty_external_hvp_is_blamed_not_the_optimizer():
    from memless.frameworks import ExternalLoss
    f, g = (lambda t: float(np.sum(t ** 4))), (lambda t: 4 * t ** 3)
    wrong_shape = ExternalLoss(f, g, lambda t, v: np.ones(7), check=False, name="my-loss")
    with pytest.raises(memless.LossError, match=r"my-loss: hvp\(theta, v\) returned 7 numbers .* theta has 3"):
        memless.correction(memless.get_optimizer("heavy-ball"), wrong_shape, np.ones(3), lr=1e-3)

    def raising(t, v):
        raise RuntimeError("CUDA out of memory")
    with pytest.raises(memless.LossError, match="my-loss: the loss's hvp function raised RuntimeError: CUDA"):
        memless.correction(memless.get_optimizer("heavy-ball"),
                           ExternalLoss(f, g, raising, check=False, name="my-loss"), np.ones(3), lr=1e-3)


def test_an_overflowing_lr_is_named_as_such():
    with pytest.raises(memless.MemlessError, match="overflows at lr=1e\\+308"):
        memless.correction(memless.get_optimizer("adamw"), "curvy", None, lr=1e308)


def test_too_many_parameters_are_refused_before_any_gradient():
    with pytest.raises(memless.LossError, match="MAX_PARAMETERS"):
        memless.correction(memless.get_optimizer("adamw"), lambda t: (t ** 2).sum(), np.broadcast_to(1.0, (10 ** 8,)),
                           lr=1e-3)


class _MutatesHistory(memless.MemoryOptimizer):
    name = "mutates-history"
    window = 2

    def direction(self, history, gradient):
        history[-1] += 1.0                     # changes the caller's iterate
        return gradient(history[0])


class _ReturnsNaN(memless.MemoryOptimizer):
    name = "returns-nan"

    def direction(self, history, gradient):
        return gradient(history[0]) * np.nan


def test_an_optimizer_that_changes_its_history_is_told_so():
    with pytest.raises(memless.OptimizerError, match="read-only"):
        memless.trajectory(_MutatesHistory(), "curvy", None, lr=1e-3, steps=5)


def test_modified_on_an_optimizer_that_returns_nan_blames_the_optimizer():
    from memless.studies.modified import summarize
    with pytest.raises(memless.OptimizerError, match="returns-nan: its direction F is not finite"):
        summarize(_ReturnsNaN(), "curvy", lr=1e-3)


# -- found by an outside sweep ---------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ("report", "adamw", "--lr", "0x10"),
    ("map", "adamw", "--steps", "2.5"),
    ("compare",),
    ("report",),
    ("list", "--json", "extra"),
    ("list-losses", "--set", "a=1"),
    ("nosuchcommand",),
])
def test_usage_errors_from_the_argument_parser_are_one_line(args):
    run = cli(*args)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("memless: error: "), run.stderr


def test_a_plugin_writing_to_the_stdout_descriptor_does_not_corrupt_json():
    import json
    run = hostile("report", "writes-fd", "--fast", "--quiet", "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["optimizer"] == "writes-fd"
    assert "FD1-NOISE at import" in run.stderr and "FD1-NOISE in direction" in run.stderr
    listing = hostile("list", "--json")
    assert json.loads(listing.stdout) and "FD1-NOISE" not in listing.stdout


def test_a_bad_plugin_time_budget_is_refused():
    assert_one_line_error(hostile("report", "writes-fd", seconds="abc"), "MEMLESS_PLUGIN_SECONDS must be")


def test_a_read_only_file_is_not_replaced(tmp_path):
    """As an unprivileged user (root may write anything): --plot over a read-only file is refused and the file
    stays.  Run as 'nobody' in a world-writable folder; skipped where that cannot be arranged."""
    import tempfile
    folder = tempfile.mkdtemp(dir="/tmp")
    os.chmod(folder, 0o777)
    path = os.path.join(folder, "ro.png")
    with open(path, "w") as fh:
        fh.write("read-only")
    os.chmod(path, 0o444)
    if os.geteuid() != 0:
        run = cli("report", "heavy-ball", "--fast", "--quiet", "--plot", path)
    else:
        def become_nobody():
            os.setgid(65534)
            os.setuid(65534)
        try:
            run = cli("report", "heavy-ball", "--fast", "--quiet", "--plot", path, preexec_fn=become_nobody,
                      env={"HOME": folder, "MPLCONFIGDIR": folder})
        except (OSError, subprocess.SubprocessError) as exc:
            pytest.skip(f"cannot run as nobody here: {exc}")
        if "Permission denied" in run.stderr or "No module named" in run.stderr:
            pytest.skip("the interpreter is not readable by nobody here")
    assert_one_line_error(run, "is read-only")
    assert pathlib.Path(path).read_text(encoding="utf-8") == "read-only"


def test_wrong_shapes_and_flags_are_not_silently_accepted():
    from memless.frameworks import ExternalLoss
    from memless.frameworks.blackbox import StepFunction
    box = StepFunction(lambda g, p, s: (g[:1], s), lambda p: None, name="short")
    with pytest.raises(memless.OptimizerError, match="short: its step returned a direction of 1 numbers"):
        memless.correction(box, "curvy", None, lr=0.01, n=5)
    equation = memless.modified_equation(memless.get_optimizer("heavy-ball"), "curvy", 0.01)
    for call in (equation.solve, equation.iterate):
        with pytest.raises(memless.MemlessError, match="corrected must be True or False"):
            call(CURVY.start, 5, corrected="no")
    with pytest.raises(memless.LossError, match="layout must be a memless Layout"):
        ExternalLoss(lambda t: 0.0, lambda t: t, lambda t, v: v, start=np.ones(3), layout="bad")


@pytest.mark.parametrize("call,fragment", [
    (lambda: memless.trajectory(memless.get_optimizer("heavy-ball", beta=0.5), "curvy", None, lr=0.01,
                                steps=100_000, memoryless=True), "MAX_CORRECTIONS"),
    (lambda: memless.trajectory(memless.frameworks.blackbox.StepFunction(lambda g, p, s: (g, s), lambda p: None),
                                "curvy", None, lr=0.01, steps=3000, memoryless=True), "by the history method"),
    (lambda: memless.correction(memless.frameworks.blackbox.StepFunction(lambda g, p, s: (g, s), lambda p: None),
                                "curvy", None, lr=0.01, n=10 ** 9), "by the history method"),
])
def test_long_requests_within_the_old_bounds_are_refused(call, fragment):
    import memless.frameworks.blackbox  # noqa: F401
    with pytest.raises(memless.MemlessError, match=fragment):
        call()


def test_a_file_the_user_cannot_write_is_refused_before_the_work(tmp_path, monkeypatch):
    """The same refusal through the API, for a user to whom os.access denies writing the file (root is
    never denied, so the permission is simulated here; the subprocess test above runs it for real where it can)."""
    path = tmp_path / "ro.csv"
    path.write_text("keep")
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if os.fspath(p) == str(path) and mode & os.W_OK
                        else real(p, mode, **kw))
    probe = memless.Probe(memless.get_optimizer("adamw"), "curvy", lr=1e-3, every=1)
    probe.step(CURVY.start)
    with pytest.raises(memless.MemlessError, match="is read-only"):
        probe.to_csv(str(path))
    assert path.read_text() == "keep"


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_a_folder_whose_permissions_say_yes_but_takes_no_file_is_refused_before_the_work():
    """As root, os.access says /proc is writable; a trial file there fails, so the refusal comes
    before the work, not after it."""
    from memless.files import check_output_path
    with pytest.raises(memless.MemlessError, match="no file can be made in '/proc'"):
        check_output_path("/proc/figure.png", "--plot", (".png",))


def test_the_documented_bounds_table_states_the_bounds_in_force():
    """Each `memless.checks.MAX_*` = value in the documentation's table (docs/pages/bounds.md) is the
    module attribute's value (the table once said 2·10⁵ corrections while the code allowed 5·10⁴)."""
    import re

    import memless.checks as checks
    from memless.experiments.data import MAX_CLASSES
    readme = pathlib.Path(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "pages",
                          "bounds.md").read_text(encoding="utf-8")
    superscript = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹", "0123456789")

    def number(text):
        text = text.strip().replace(",", "")
        if text.endswith("GiB"):
            return float(text[:-3]) * 2 ** 30
        power = re.fullmatch(r"(?:([0-9.]+)·)?10([⁰¹²³⁴⁵⁶⁷⁸⁹]+)", text)
        if power:
            return float(power.group(1) or 1) * 10 ** int(power.group(2).translate(superscript))
        return float(text)

    stated = dict(re.findall(r"`memless\.checks\.(MAX_\w+)` = ([^|;(]+)", readme))
    assert set(stated) == {"MAX_STEPS", "MAX_CORRECTIONS", "MAX_BYTES", "MAX_PARAMETERS"}
    for name, text in stated.items():
        assert number(text) == getattr(checks, name), (name, text)
    assert f"`memless.experiments.data.MAX_CLASSES` = {MAX_CLASSES:,}" in readme
