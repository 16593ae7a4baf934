"""The benchmark script: its ratios are computed from its own measurements (no timing is
asserted here: machines are shared and noisy; the targets live in the script's table)."""
import json
import os
import subprocess
import sys

import pytest

#: a hang guard, not a speed test: generous, so a busy machine does not fail a correct program
HANG_GUARD = 1800
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_benchmark_quick_run_reports_ratios_of_its_own_measurements(tmp_path):
    out = tmp_path / "bench.json"
    run = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench.py"), "--quick", "--json", str(out)],
                         capture_output=True, text=True, timeout=HANG_GUARD)
    assert run.returncode == 0, run.stderr
    results = json.loads(out.read_text())
    limit = results["limit_correction"]          # a median of paired ratios: positive, finite
    assert 0 < limit["ratio"] < float("inf") and limit["correction_s"] > 0 and limit["gradient_s"] > 0
    for name, row in results["finite_n"].items():
        times = list(row["times_s"].values())
        assert row["spread"] == pytest.approx(max(times) / min(times), rel=1e-12), name
    for name in ("adamw", "lion"):
        step = results["trajectory_step"][name]
        assert step["ratio"] == pytest.approx(step["corrected_step_s"] / step["optimizer_step_s"], rel=1e-12)
    for name in ("jax_objective", "torch_objective"):     # measured when the extra is installed
        row = results[name]
        assert "skipped" in row or row["ratio"] > 0, name
    if "skipped" not in results["jax_objective"]:        # memless and the hand-written JAX compute the same M
        assert results["jax_objective"]["agreement"] < 1e-12
    # the table's MISSED rows are the ones the JSON lists
    table = [line for line in run.stdout.splitlines() if line.rstrip().endswith("MISSED")]
    assert len(table) == len(results["missed"])
