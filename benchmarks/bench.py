"""memless performance benchmark: times and ratios measured in one run.

    python benchmarks/bench.py                  # the full run (about a minute)
    python benchmarks/bench.py --quick          # small sizes, a smoke test (seconds)
    python benchmarks/bench.py --json out.json  # also write the results as JSON

Every number is a ratio of two times measured in the same run (best of
``--repeat`` timings, one BLAS thread), so it says how the cost scales, not how
fast this machine is.  The targets are those of the performance issue; a missed target is printed
as MISSED with its ratio, never hidden.
"""
import argparse
import json
import os

# One BLAS thread: on a shared 2-core machine, threaded matrix products make timings
# (and so the ratios) swing by 2x from run to run.  Set the variables to override.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
import platform
import subprocess
import sys
import time
from datetime import date
import tracemalloc

import numpy as np
from autograd import grad, make_jvp

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))   # run from a checkout without installing

import memless  # noqa: E402
from memless.engine.objective import Objective  # noqa: E402
from memless.losses import mlp  # noqa: E402


# ----------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------


def best_time(fun, repeat):
    """The best of ``repeat`` wall-clock timings of ``fun()`` (after one warm-up call)."""
    fun()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fun()
        times.append(time.perf_counter() - start)
    return min(times)


def paired_ratio(fun, reference, repeat):
    """Median of time(fun) / time(reference) over ``repeat`` adjacent pairs of timings.

    Timing the two back to back, pair by pair, cancels the machine's slow drifts
    that a best-of-n of each, taken minutes apart, does not.
    """
    fun(), reference()
    ratios, times = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        reference()
        middle = time.perf_counter()
        fun()
        end = time.perf_counter()
        ratios.append((end - middle) / (middle - start))
        times.append((end - middle, middle - start))
    best = min(times)
    return float(np.median(ratios)), best[0], min(t[1] for t in times)


def peak_memory(fun):
    """Peak bytes allocated through Python/numpy while ``fun()`` runs."""
    tracemalloc.start()
    try:
        fun()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


class WindowAverage(memless.MemoryOptimizer):
    """A non-momentum optimizer: F^(n) = sum_{k<W} w_k grad L(theta^(n-k)) / sum w_k, w_k = 1/(k+1).

    Its correction can only come from the generic (history) engine.
    """

    name = "window-average"

    def __init__(self, window):
        super().__init__()
        self.window = window
        weights = 1.0 / np.arange(1, window + 1)
        self.weights = weights / weights.sum()

    def direction(self, history, gradient):
        recent = history[: self.window]
        weights = self.weights[: len(recent)] / self.weights[: len(recent)].sum()
        return sum(w * gradient(theta) for w, theta in zip(weights, recent))


# ----------------------------------------------------------------------------
# The cases
# ----------------------------------------------------------------------------


def case_limit_correction(problem, repeat):
    """AdamW's limit M(theta) on the MLP, against one gradient."""
    opt = memless.get_optimizer("adamw")
    theta, loss = problem.start, problem.loss
    gradient = grad(loss)
    v = np.ones_like(theta)
    ratio, t_call, t_grad = paired_ratio(lambda: memless.correction(opt, loss, theta, lr=1e-3),
                                         lambda: gradient(theta), 2 * repeat)
    ratio_terms, t_split, _ = paired_ratio(lambda: memless.correction_terms(opt, loss, theta, lr=1e-3),
                                           lambda: gradient(theta), 2 * repeat)
    ratio_hvp, t_hvp, _ = paired_ratio(lambda: make_jvp(gradient)(theta)(v), lambda: gradient(theta), 2 * repeat)
    obj = Objective(loss)

    def recorded_route():          # what M needs at least: the gradient, then H v along a v made from it
        _, _, hvp = obj._evaluate(theta, True)
        return hvp(v) if hvp is not None else make_jvp(gradient)(theta)(v)   # small d: no recording

    ratio_route, _, _ = paired_ratio(recorded_route, lambda: gradient(theta), 2 * repeat)
    return {
        "d": int(theta.size), "gradient_s": t_grad, "hvp_forward_over_reverse_s": t_hvp,
        "correction_s": t_call, "correction_terms_s": t_split,
        "ratio": ratio, "ratio_terms": ratio_terms, "ratio_hvp": ratio_hvp, "ratio_route": ratio_route,
    }


def case_second_order(problem, repeat):
    """AdamW's second-order term M2 (limit) on the MLP, against one gradient: M1 + M2 by
    correction(order=2), and M2 alone by subtracting the first-order call's time."""
    opt = memless.get_optimizer("adamw")
    theta, loss = problem.start, problem.loss
    gradient = grad(loss)
    ratio, t_both, t_grad = paired_ratio(lambda: memless.correction(opt, loss, theta, lr=1e-3, order=2),
                                         lambda: gradient(theta), repeat)
    ratio_first, t_first, _ = paired_ratio(lambda: memless.correction(opt, loss, theta, lr=1e-3),
                                           lambda: gradient(theta), repeat)
    direction = np.sin(np.arange(theta.size))

    def third_order():             # D^3 L[F, F]: what M2 needs beyond Hessian-vector products
        return make_jvp(lambda t: make_jvp(lambda r: gradient(theta + r * direction))(t)(1.0)[1])(0.0)(1.0)[1]

    ratio_third, _, _ = paired_ratio(third_order, lambda: gradient(theta), repeat)
    return {"d": int(theta.size), "ratio_both": ratio, "ratio_second": ratio - ratio_first,
            "ratio_third_order": ratio_third, "correction_order2_s": t_both, "gradient_s": t_grad}


def case_finite_n(problem, repeat, names=("adamw", "heavy-ball", "lion"), ns=(10, 1000, 100_000)):
    """Exact M^(n)(theta) for several n: the cost should not grow with n."""
    theta, loss = problem.start, problem.loss
    out = {}
    for name in names:
        opt = memless.get_optimizer(name)
        times = {n: best_time(lambda n=n, opt=opt: memless.correction(opt, loss, theta, lr=1e-3, n=n), repeat)
                 for n in ns}
        out[name] = {"times_s": {str(n): t for n, t in times.items()},
                     "spread": max(times.values()) / min(times.values())}
    return out


def case_lion_finite_n(problem, repeat, ns=(1000, 2000, 3000)):
    """Lion's exact M^(n)(theta) against one gradient, in interleaved pairs, at n where its finite-n
    directions F^(s) still differ from the limit (rho2 = 0.99: rho2^s > 1e-12 up to s ~ 2750)."""
    from autograd import grad as autograd_grad
    theta, loss = problem.start, problem.loss
    opt, gradient = memless.get_optimizer("lion"), autograd_grad(loss)
    out = {}
    for n in ns:
        ratio, t_m, t_g = paired_ratio(lambda n=n: memless.correction(opt, loss, theta, lr=1e-3, n=n),
                                       lambda: gradient(theta), repeat)
        out[str(n)] = {"ratio": ratio, "correction_s": t_m, "gradient_s": t_g}
    return out


def case_history_engine(problem, repeat, windows):
    """The generic engine on a window-W optimizer: time and peak memory against W gradients."""
    theta, loss = problem.start, problem.loss
    gradient = grad(loss)
    t_grad = best_time(lambda: gradient(theta), repeat)
    rows = []
    for W in windows:
        opt = WindowAverage(W)
        n = 2 * W

        def run(opt=opt, n=n):
            return memless.correction(opt, loss, theta, lr=1e-3, n=n)

        t = best_time(run, max(1, repeat // 2))
        rows.append({"window": W, "time_s": t, "ratio_to_W_gradients": t / (W * t_grad),
                     "peak_bytes": peak_memory(run), "W_d_bytes": W * theta.size * 8})
    times = [r["time_s"] / r["window"] for r in rows]
    # at most linear in W: the peak grows no faster than W between the smallest and largest W
    first, last = rows[0], rows[-1]
    growth = (last["peak_bytes"] / first["peak_bytes"]) / (last["window"] / first["window"])
    return {"d": int(theta.size), "gradient_s": t_grad, "rows": rows,
            "time_per_window_spread": max(times) / min(times), "peak_growth_over_linear": growth,
            "d2_bytes": theta.size ** 2 * 8}


def case_trajectory_step(problem, repeat, steps, lr=1e-5):
    """One corrected memoryless step against one optimizer step.

    The cost does not depend on lr; lr is small because at the MLP's start the
    first-order correction is far outside its range at lr = 1e-3 (|M|/|F| ~ 200
    for AdamW), and the corrected iteration would diverge within a few steps.
    """
    theta, loss = problem.start, problem.loss
    out = {"d": int(theta.size)}
    for name, hyper in (("adamw", {}), ("lion", {})):
        opt = memless.get_optimizer(name, **hyper)
        t_opt = best_time(lambda opt=opt: memless.trajectory(opt, loss, theta, lr, steps), repeat) / steps
        t_mem = best_time(lambda opt=opt: memless.trajectory(opt, loss, theta, lr, steps, memoryless=True,
                                                     correction="limit"), repeat) / steps
        t_exact = best_time(lambda opt=opt: memless.trajectory(opt, loss, theta, lr, steps, memoryless=True),
                            repeat) / steps
        out[name] = {"optimizer_step_s": t_opt, "corrected_step_s": t_mem, "corrected_exact_step_s": t_exact,
                     "ratio": t_mem / t_opt, "ratio_exact": t_exact / t_opt}
    return out


def case_streaming(problem, repeat, short, long):
    opt = memless.get_optimizer("adamw")
    theta, loss = problem.start, problem.loss
    t_short = best_time(lambda: memless.trajectory(opt, loss, theta, 1e-3, short), repeat)
    t_long = best_time(lambda: memless.trajectory(opt, loss, theta, 1e-3, long), max(1, repeat // 2))
    return {"d": int(theta.size), "short": short, "long": long, "short_s": t_short, "long_s": t_long,
            "ratio": t_long / t_short, "expected": long / short}


#: the command-line cases: (name, arguments); each is timed cold (nothing kept) and warm (kept)
CLI_CASES = (
    ("report_lion", ["report", "lion"]),
    ("report_adamw", ["report", "adamw"]),
    ("report_muon", ["report", "muon"]),
    ("compare", ["compare", "adamw", "lion", "heavy-ball"]),
    ("compare_matrix", ["compare", "adamw", "lion", "muon"]),
    ("modified_adamw", ["modified", "adamw"]),
)


def cpu_seconds(args, env):
    """CPU time (user + sys) of one fresh interpreter running ``args``: a busy machine stretches
    wall time far more than the CPU time a process uses."""
    import resource
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, *args], check=True, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def case_cli(rounds, cases=CLI_CASES):
    """CPU seconds of the command line in fresh interpreters, in interleaved rounds (every command
    once per round), medians: cold (an empty cache folder each time: nothing kept) and warm (the
    tamed and reference-loss order studies kept from an earlier run), and of the import alone."""
    import tempfile
    base = dict(os.environ, PYTHONPATH=os.path.dirname(HERE) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    base.pop("MEMLESS_NO_CACHE", None)
    warm_folder = tempfile.mkdtemp(prefix="memless-bench-warm-")
    warm = dict(base, MEMLESS_CACHE_DIR=warm_folder)
    quiet = ["--no-color", "--quiet"]
    for _, args in cases:                                 # prime the warm folder
        cpu_seconds(["-m", "memless", *args, *quiet[: 1 if args[0] == "modified" else 2]], warm)
    times = {f"{name}_{kind}": [] for name, _ in cases for kind in ("cold_s", "warm_s")}
    times.update(import_s=[], import_cli_s=[], python_startup_s=[])
    for _ in range(rounds):
        for name, args in cases:
            flags = quiet[: 1 if args[0] == "modified" else 2]
            cold = dict(base, MEMLESS_CACHE_DIR=tempfile.mkdtemp(prefix="memless-bench-cold-"))
            times[f"{name}_cold_s"].append(cpu_seconds(["-m", "memless", *args, *flags], cold))
            times[f"{name}_warm_s"].append(cpu_seconds(["-m", "memless", *args, *flags], warm))
        times["import_s"].append(cpu_seconds(["-c", "import memless"], base))
        times["import_cli_s"].append(cpu_seconds(["-c", "import memless.cli"], base))
        times["python_startup_s"].append(cpu_seconds(["-c", "pass"], base))
    result = {name: float(np.median(values)) for name, values in times.items()}
    result["rounds"] = rounds
    return result


def case_probe(problem, repeat):
    """One measurement of memless.Probe (AdamW) over one gradient of the same model."""
    from autograd import grad
    gradient = grad(problem.loss)
    theta = problem.start
    probe = memless.Probe(memless.get_optimizer("adamw"), problem.loss, lr=1e-3, every=1)
    probe.step(theta)
    t_gradient = best_time(lambda: gradient(theta), repeat)
    t_probe = best_time(lambda: probe.step(theta * (1 + 1e-9 * probe.calls)), repeat)
    return {"d": int(theta.size), "gradient_s": t_gradient, "probe_s": t_probe, "ratio": t_probe / t_gradient}


def case_jax_objective(sizes, samples, repeat, lr=1e-3):
    """AdamW's limit M on the benchmark's MLP written in JAX: memless on the JAX objective against
    a hand-written jitted jax.jvp(jax.grad(L)) computation of the same M."""
    try:
        import jax
    except ImportError:
        return {"skipped": "jax is not installed"}
    from memless.frameworks.jax import objective    # turns on float64
    import jax.numpy as jnp

    reference = mlp(sizes=sizes, samples=samples)
    X, Y = jnp.asarray(reference.data["inputs"]), jnp.asarray(reference.data["labels"])
    shapes = [(a, b) for a, b in zip(sizes[:-1], sizes[1:])]

    def L(params):
        h = X
        for i, (W, c) in enumerate(params):
            h = h @ W + c
            if i < len(params) - 1:
                h = jnp.tanh(h)
        h = h - jnp.max(h, axis=1, keepdims=True)
        return -jnp.sum(Y * (h - jnp.log(jnp.sum(jnp.exp(h), axis=1, keepdims=True)))) / samples

    cuts = np.cumsum([0] + [(a + 1) * b for a, b in shapes])
    params = [(jnp.asarray(reference.start[lo:lo + a * b].reshape(a, b)), jnp.asarray(reference.start[lo + a * b:hi]))
              for (a, b), lo, hi in zip(shapes, cuts[:-1], cuts[1:])]
    from jax.flatten_util import ravel_pytree
    flat, unravel = ravel_pytree(params)
    loss = objective(lambda x: L(unravel(x)), flat)
    theta = np.asarray(flat)
    assert abs(loss.value(theta) - float(reference.loss(reference.start))) < 1e-12
    opt = memless.get_optimizer("adamw")
    b1, b2, eps, lam = opt.beta1, opt.beta2, opt.eps, opt.weight_decay
    c1, c2 = b1 / (1 - b1), b2 / (1 - b2)
    flat_L = jax.grad(lambda x: L(unravel(x)))

    @jax.jit
    def by_hand(t):
        g = flat_L(t)
        F = g / jnp.sqrt(g ** 2 + eps) + lam * t
        HF = jax.jvp(flat_L, (t,), (F,))[1]
        return lr * (c1 / jnp.sqrt(g ** 2 + eps) - c2 * g ** 2 / (g ** 2 + eps) ** 1.5) * HF

    gradient = jax.jit(flat_L)
    t = jnp.asarray(theta)
    M_hand, M = np.asarray(by_hand(t)), memless.correction(opt, loss, theta, lr=lr)
    agreement = float(np.max(np.abs(M - M_hand)) / np.max(np.abs(M_hand)))
    ratio, t_memless, t_hand = paired_ratio(lambda: memless.correction(opt, loss, theta, lr=lr),
                                            lambda: by_hand(t).block_until_ready(), 4 * repeat)
    ratio_hand, _, t_grad = paired_ratio(lambda: by_hand(t).block_until_ready(),
                                         lambda: gradient(t).block_until_ready(), 2 * repeat)
    return {"d": int(theta.size), "memless_s": t_memless, "by_hand_s": t_hand, "gradient_s": t_grad,
            "ratio": ratio, "ratio_hand_to_gradient": ratio_hand, "agreement": agreement}


def case_torch_objective(sizes, samples, repeat, lr=1e-3):
    """AdamW's limit M on a PyTorch MLP with over a million parameters, against its own gradient."""
    try:
        import torch
    except ImportError:
        return {"skipped": "torch is not installed"}
    from memless.frameworks.torch import objective
    torch.set_num_threads(1)
    torch.manual_seed(0)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(torch.nn.Tanh())
    model = torch.nn.Sequential(*layers).double()
    X = torch.randn(samples, sizes[0], dtype=torch.float64)
    labels = torch.randint(0, sizes[-1], (samples,))
    loss = objective(model, torch.nn.functional.cross_entropy, (X, labels))
    theta = loss.start
    opt = memless.get_optimizer("adamw")
    params = {name: p.detach().clone() for name, p in model.named_parameters()}

    def torch_loss(p):
        return torch.nn.functional.cross_entropy(torch.func.functional_call(model, p, (X,)), labels)

    torch_grad = torch.func.grad(torch_loss)
    ratio, t_memless, t_grad = paired_ratio(lambda: memless.correction(opt, loss, theta, lr=lr),
                                            lambda: torch_grad(params), 2 * repeat)
    ratio_own, _, t_own = paired_ratio(lambda: memless.correction(opt, loss, theta, lr=lr),
                                       lambda: loss.gradient(theta), 2 * repeat)
    ratio_hvp, t_hvp, _ = paired_ratio(lambda: loss.hvp(theta, theta), lambda: torch_grad(params), 2 * repeat)

    def recorded_route():          # the gradient with its graph, then one backward through it: H v
        return loss.linearize(theta)[2](theta)

    ratio_route, _, _ = paired_ratio(recorded_route, lambda: torch_grad(params), 2 * repeat)
    return {"d": int(theta.size), "memless_s": t_memless, "torch_func_grad_s": t_grad, "gradient_s": t_own,
            "hvp_s": t_hvp, "ratio": ratio, "ratio_own_gradient": ratio_own, "ratio_hvp": ratio_hvp,
            "ratio_route": ratio_route}


def case_black_box_limits(beta2):
    """Wall time of a black box's limit M at ``beta2`` on a cross-entropy MLP with biases (6-12-4, 136
    parameters): torch.optim.AdamW and optax.adam, each differentiated by forward mode through its step,
    and the relative difference from the built-in adamw/adam limit."""
    problem = mlp(sizes=(6, 12, 4), samples=40, seed=7)
    theta, out = problem.start, {"beta2": beta2, "d": int(problem.start.size)}
    builtin = dict(beta1=0.9, beta2=beta2, eps=1e-8, eps_inside=False)
    boxes = []
    try:
        import torch

        from memless.frameworks.blackbox import TorchOptimizer
        torch.set_num_threads(1)
        boxes.append(("torch_adamw", TorchOptimizer(torch.optim.AdamW, betas=(0.9, beta2), weight_decay=0.01),
                      memless.get_optimizer("adamw", weight_decay=0.01, **builtin)))
    except ImportError:
        out["torch_adamw"] = {"skipped": "torch is not installed"}
    try:
        import optax

        from memless.frameworks.blackbox import OptaxTransformation
        boxes.append(("optax_adam", OptaxTransformation(optax.adam, b1=0.9, b2=beta2),
                      memless.get_optimizer("adam", **builtin)))
    except ImportError:
        out["optax_adam"] = {"skipped": "optax is not installed"}
    for name, box, reference in boxes:
        start = time.perf_counter()
        M, info = memless.correction(box, problem.loss, theta, lr=1e-3, full_output=True)
        seconds = time.perf_counter() - start
        R = memless.correction(reference, problem.loss, theta, lr=1e-3)
        out[name] = {"seconds": seconds, "replay_steps": info.terms, "converged": info.converged,
                     "relative_error": float(np.max(np.abs(M - R)) / np.max(np.abs(R)))}
    return out


def case_regime_map(grid):
    """Wall time of memless.plot.regime_map for AdamW on the bilinear model over (beta1, beta2):
    each cell a two-rung order study (20 steps at lr = 0.01, 40 at 0.005) and the sign of M."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return {"grid": grid, "seconds": float("nan"), "skipped": "matplotlib is not installed"}
    from memless.plot import regime_map
    start = time.perf_counter()
    regime_map("adamw", "bilinear", x="beta1", y="beta2", grid=grid, lr=1e-2, steps=20)
    return {"grid": grid, "seconds": time.perf_counter() - start}


# ----------------------------------------------------------------------------
# The table
# ----------------------------------------------------------------------------


def verdict(value, target, low=None):
    ok = value <= target and (low is None or value >= low)
    return "met" if ok else "MISSED"


def rows_of(results):
    lim, fin, hist = results["limit_correction"], results["finite_n"], results["history_engine"]
    step, stream, cli = results["trajectory_step"], results["streaming"], results["cli"]
    rows = [
        (f"limit M, AdamW, d={lim['d']}: correction() / gradient", lim["ratio"], "<= 2.8", verdict(lim["ratio"], 2.8)),
        ("  per-channel correction_terms() / gradient", lim["ratio_terms"], "(info)", ""),
        ("  for scale: autograd forward-over-reverse HVP / gradient", lim["ratio_hvp"], "(info)", ""),
        ("  for scale: recorded gradient + one HVP (M's floor) / gradient", lim["ratio_route"], "(info)", ""),
    ]
    for name, r in fin.items():
        ns = ", ".join(r["times_s"])
        target = name == "adamw"
        rows.append((f"exact M^(n), {name}, n = {ns}: slowest / fastest", r["spread"],
                     "<= 1.5" if target else "(info)", verdict(r["spread"], 1.5) if target else ""))
    if "second_order" in results:
        so = results["second_order"]
        rows.append((f"second-order M2 (limit), AdamW, d={so['d']}: (M1+M2 - M1) / gradient", so["ratio_second"],
                     "<= 8", verdict(so["ratio_second"], 8)))
        rows.append(("  correction(order=2), M1 + M2, / gradient", so["ratio_both"], "(info)", ""))
        rows.append(("  for scale: one third-order directional derivative / gradient", so["ratio_third_order"],
                     "(info)", ""))
    for n, r in results["lion_finite_n"].items():
        rows.append((f"exact M^(n), lion, n = {n}: correction / gradient", r["ratio"], "<= 10", verdict(r["ratio"], 10)))
    for r in hist["rows"]:
        rows.append((f"history engine, window W={r['window']}: time / (W gradients)",
                     r["ratio_to_W_gradients"], "<= 3", verdict(r["ratio_to_W_gradients"], 3)))
    rows.append(("  time/W, largest / smallest W (linear in W)", hist["time_per_window_spread"], "<= 1.5",
                 verdict(hist["time_per_window_spread"], 1.5)))
    for r in hist["rows"]:
        rows.append((f"  peak memory at W={r['window']}, in d-vectors", r["peak_bytes"] / (hist["d"] * 8),
                     "(info)", ""))
    rows.append(("  peak growth, largest / smallest W, over W growth", hist["peak_growth_over_linear"], "<= 1.5",
                 verdict(hist["peak_growth_over_linear"], 1.5)))
    worst_peak = max(r["peak_bytes"] for r in hist["rows"])
    rows.append(("  largest peak memory / (d^2 8 bytes)", worst_peak / hist["d2_bytes"], "<< 1",
                 verdict(worst_peak / hist["d2_bytes"], 0.1)))
    for name in ("adamw", "lion"):
        r = step[name]
        rows.append((f"corrected memoryless step / optimizer step, {name}, d={step['d']}", r["ratio"], "<= 4",
                     verdict(r["ratio"], 4)))
        rows.append(("  with the exact M^(n) at every step", r["ratio_exact"], "(info)", ""))
    rows.append((f"streaming AdamW, {stream['long']} / {stream['short']} steps", stream["ratio"],
                 f"{stream['expected']:.0f} +-30%", verdict(stream["ratio"], 1.3 * stream["expected"],
                                                           0.7 * stream["expected"])))
    targets = {"report_lion": 0.5, "report_adamw": 0.5, "report_muon": 1.0, "compare": 1.0, "compare_matrix": 1.5,
               "modified_adamw": 1.0}
    for name, args in CLI_CASES:
        if f"{name}_warm_s" not in cli:
            continue                                     # --quick times report lion only
        command = "python -m memless " + " ".join(args)
        target = targets[name]
        rows.append((f"`{command}`, CPU s, later runs (studies kept)", cli[f"{name}_warm_s"], f"<= {target:g}",
                     verdict(cli[f"{name}_warm_s"], target)))
        rows.append((f"  {' '.join(args)}: first run (nothing kept, or --no-cache)", cli[f"{name}_cold_s"],
                     f"<= {target:g}",
                     verdict(cli[f"{name}_cold_s"], target)))
    probe = results["probe"]
    rows.append((f"training probe call / gradient, AdamW, d={probe['d']}", probe["ratio"], "(info)", ""))
    jx = results["jax_objective"]
    if "skipped" in jx:
        rows.append((f"JAX objective: {jx['skipped']}", float("nan"), "<= 1.3", "skipped"))
    else:
        rows.append((f"limit M, AdamW, JAX objective, d={jx['d']}: memless / hand-written jitted JAX",
                     jx["ratio"], "<= 1.3", verdict(jx["ratio"], 1.3)))
        rows.append(("  for scale: hand-written jvp(grad) M / jitted gradient", jx["ratio_hand_to_gradient"],
                     "(info)", ""))
        rows.append(("  the two M, max relative difference", jx["agreement"], "< 1e-12", verdict(jx["agreement"], 1e-12)))
    tc = results["torch_objective"]
    if "skipped" in tc:
        rows.append((f"PyTorch objective: {tc['skipped']}", float("nan"), "<= 4", "skipped"))
    else:
        rows.append((f"limit M, AdamW, PyTorch MLP, d={tc['d']}: memless / torch.func.grad", tc["ratio"], "<= 3",
                     verdict(tc["ratio"], 3)))
        rows.append(("  memless / its own NumPy-in, NumPy-out gradient", tc["ratio_own_gradient"], "(info)", ""))
        rows.append(("  for scale: its forward-over-reverse HVP / torch.func.grad", tc["ratio_hvp"], "(info)", ""))
        rows.append(("  for scale: gradient with graph + one HVP (M's floor) / torch.func.grad", tc["ratio_route"],
                     "(info)", ""))
    boxes = results["black_box_limits"]
    for name in ("torch_adamw", "optax_adam"):
        row = boxes[name]
        label = f"black-box limit M, {name.replace('_', '.')}, beta2={boxes['beta2']}, d={boxes['d']}, seconds"
        if "skipped" in row:
            rows.append((f"{label}: {row['skipped']}", float("nan"), "<= 30", "skipped"))
            continue
        rows.append((label, row["seconds"], "<= 30", verdict(row["seconds"], 30)))
        rows.append(("  its relative difference from the built-in's limit", row["relative_error"], "<= 1e-8",
                     verdict(row["relative_error"], 1e-8)))
    regime = results["regime_map"]
    rows.append((f"regime map, AdamW on bilinear, {regime['grid']}x{regime['grid']} cells, seconds",
                 regime["seconds"], "<= 3", verdict(regime["seconds"], 3)))
    rows.append(("`import memless`, CPU s (python start-up included)", cli["import_s"], "(info)", ""))
    rows.append(("  `import memless.cli`, CPU s", cli["import_cli_s"], "(info)", ""))
    rows.append(("  python start-up alone, CPU s", cli["python_startup_s"], "(info)", ""))
    return rows


def table(results):
    """(the table as text, the labels of the missed targets)."""
    rows = rows_of(results)
    width = max(len(r[0]) for r in rows)
    lines = [f"{'case':<{width}}  {'measured':>9}  {'target':>10}  verdict"]
    for label, value, target, mark in rows:
        lines.append(f"{label:<{width}}  {value:>9.3g}  {target:>10}  {mark}".rstrip())
    missed = [r[0].strip() for r in rows if r[3] == "MISSED"]
    lines.append(f"\n{len(missed)} target(s) missed" + (": " + "; ".join(missed) if missed else ""))
    return "\n".join(lines), missed


def write_atomically(path, text):
    """Write ``text`` to ``path`` by memless's own atomic writer (a temporary file beside it, renamed)."""
    from memless.files import write_atomic
    write_atomic(path, lambda fh: fh.write(text), binary=False)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: checks the script runs, not the targets")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--text", metavar="PATH", help="write the table as text (the documentation's cost page "
                        "shows benchmarks/results.txt)")
    parser.add_argument("--repeat", type=int, default=None, help="timings per case (best is kept)")
    parser.add_argument("--only", nargs="+", metavar="CASE", help="run only these cases (the table needs all)")
    args = parser.parse_args(argv)

    if args.quick:
        big_sizes, big_samples, torch_sizes, torch_samples = (8, 16, 4), 32, (8, 32, 4), 16
        big, small = mlp(sizes=big_sizes, samples=big_samples), mlp(sizes=(4, 8, 2), samples=16)
        repeat, windows, steps, short, long = args.repeat or 1, (2, 4, 8), 5, 20, 200
    else:
        big_sizes, big_samples, torch_sizes, torch_samples = (64, 256, 256, 10), 512, (784, 1024, 256, 10), 256
        big, small = mlp(sizes=big_sizes, samples=big_samples), mlp(sizes=(8, 16, 4), samples=64)
        repeat, windows, steps, short, long = args.repeat or 5, (8, 16, 32), 20, 1000, 10_000
    print(f"memless {memless.__version__}, numpy {np.__version__}, python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs; model: {big.description}\n", flush=True)
    cases = {
        "limit_correction": lambda: case_limit_correction(big, repeat),
        "finite_n": lambda: case_finite_n(big, repeat),
        "second_order": lambda: case_second_order(big, repeat),
        "lion_finite_n": lambda: case_lion_finite_n(big, repeat, (30, 60) if args.quick else (1000, 2000, 3000)),
        "history_engine": lambda: case_history_engine(big, repeat, windows),
        "trajectory_step": lambda: case_trajectory_step(big, repeat, steps),
        "streaming": lambda: case_streaming(small, repeat, short, long),
        "cli": lambda: case_cli(1, CLI_CASES[:1]) if args.quick else case_cli(5),
        "regime_map": lambda: case_regime_map(3 if args.quick else 12),
        "black_box_limits": lambda: case_black_box_limits(0.95 if args.quick else 0.999),
        "probe": lambda: case_probe(big, repeat),
        "jax_objective": lambda: case_jax_objective(big_sizes, big_samples, repeat),
        "torch_objective": lambda: case_torch_objective(torch_sizes, torch_samples, repeat),
    }
    results = {}
    for name, run in cases.items():
        if args.only and name not in args.only:
            continue
        start = time.perf_counter()
        results[name] = run()
        print(f"  {name}: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    results["machine"] = {"python": platform.python_version(), "numpy": np.__version__, "cpus": os.cpu_count(),
                          "quick": args.quick}
    if args.only:
        print(json.dumps(results, indent=2))
        return 0
    text, missed = table(results)
    print(text)
    results["missed"] = missed
    if args.text:
        header = (f"memless {memless.__version__}, {date.today().isoformat()}, numpy {np.__version__}, "
                  f"python {platform.python_version()}, {os.cpu_count()} CPUs\n\n")
        write_atomically(args.text, header + text + "\n")
        print(f"table written to {args.text}")
    if args.json:
        write_atomically(args.json, json.dumps(results, indent=2))
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
