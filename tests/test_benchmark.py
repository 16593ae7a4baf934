"""The benchmark script runs and writes its JSON (no timing is asserted: machines here are noisy)."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_benchmark_quick_run_writes_every_case(tmp_path):
    out = tmp_path / "bench.json"
    run = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench.py"), "--quick", "--json", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    results = json.loads(out.read_text())
    for case in ("limit_correction", "finite_n", "history_engine", "trajectory_step", "streaming", "cli"):
        assert case in results
    assert results["limit_correction"]["correction_s"] > 0
    assert set(results["finite_n"]) == {"adamw", "heavy-ball", "lion"}
    assert "target(s) missed" in run.stdout
