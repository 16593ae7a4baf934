"""The 2023 paper's experimental protocol at small scale: full-batch Adam on scikit-learn's digits.

    .venv/bin/python tutorials/adam_on_digits.py            # the README's table (a few minutes)
    .venv/bin/python tutorials/adam_on_digits.py --plot tutorials/figures/digits_probe.png   # and its figure
    .venv/bin/python tutorials/adam_on_digits.py --quick    # a smoke run (seconds; the tests run it)

Cattaneo, Klusowski & Shigida (2023, Section 4, Figures 3 and 5) train with full-batch Adam
(eps = 1e-3 inside the root) and measure the perturbed one-norm ||grad E||_{1,eps} =
sum_i sqrt(g_i^2 + eps) at the first point the training loss falls below 0.01: it rose with
rho (= beta2) at fixed beta (= beta1), and fell with beta at fixed rho -- as backward error
analysis predicts: Adam's memory penalizes that norm with weight beta/(1-beta) and rewards
it with weight rho/(1-rho).

Here: the 1797 8x8 digit images that ship inside scikit-learn (no download), a 64-32-10 tanh
network in PyTorch (float64), the user's own training loop (Adam written out, eps inside the
root as in the paper), and memless.Probe called in that loop every ``--every`` steps on the
PyTorch objective, logging the signed strength of the memory term <grad N, M>/|<grad N, F>|
(> 0: regularizing) and |M|/|F|.  What comes out is printed as a table, whether or not it
agrees with the paper; the norm's floor p sqrt(eps) (p parameters) is printed beside it,
because near the end of training |g_i| << sqrt(eps) and the norm is that floor plus a
remainder of about ||g||^2 / (2 sqrt(eps)).

Needs the extras torch and digits: pip install "memless[torch,digits]".

The same protocol with a train/test split, test accuracy, several seeds with effect sizes in
seed standard deviations, eps = 1e-8 (where |g_i| > sqrt(eps) for a share of the parameters, so
the claim is tested at all) and MNIST-1D is ``python -m memless experiment adam-rho`` (and
``adam-beta``): see :mod:`memless.experiments`.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

import memless
from memless.studies import meanings

EPS = 1e-3              # the paper's eps (inside the root)
THRESHOLD = 0.01        # the paper's training-loss threshold


def data():
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        sys.exit("this example needs scikit-learn: pip install memless[digits]")
    images, labels = load_digits(return_X_y=True)
    return images / 16.0, labels


def network_loss(images, labels, hidden, seed=0):
    """The full-batch cross-entropy of a 64-hidden-10 tanh network, as a memless objective."""
    import torch

    from memless.frameworks.torch import objective
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(images.shape[1], hidden), torch.nn.Tanh(),
                                torch.nn.Linear(hidden, 10)).double()
    return objective(model, torch.nn.functional.cross_entropy, (torch.tensor(images), torch.tensor(labels)),
                     name="digits")


def train(loss, beta, rho, lr, every, threshold=THRESHOLD, max_steps=200_000):
    """Full-batch Adam (bias-corrected, eps inside the root) until the loss falls below threshold,
    with memless.Probe in the loop.  Returns (steps, the gradient there, the probe)."""
    probe = memless.Probe(memless.get_optimizer("adam", beta1=beta, beta2=rho, eps=EPS), loss, lr=lr, every=every)
    theta = loss.start.copy()
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    for step in range(max_steps):
        value, g = loss.value_and_gradient(theta)
        if value < threshold:
            return step, g, probe
        probe.step(theta, step=step)                      # the probe, in the training loop
        m = beta * m + (1 - beta) * g
        v = rho * v + (1 - rho) * g ** 2
        theta = theta - lr * (m / (1 - beta ** (step + 1))) / np.sqrt(v / (1 - rho ** (step + 1)) + EPS)
    raise RuntimeError(f"beta={beta}, rho={rho}: the loss did not fall below {threshold} in {max_steps} steps")


def verdict(beta, rho, gradient):
    """memless's declared verdict for Adam at these values and this gradient, with its condition."""
    structure = meanings.structure(memless.get_optimizer("adam", beta1=beta, beta2=rho, eps=EPS), gradient)
    return ("measured only", "no exact statement here") if structure is None else (str(structure.effect),
                                                                                   structure.regime)


def run(settings, lr, hidden, every, threshold):
    images, labels = data()
    rows = []
    for sweep, beta, rho in settings:
        loss = network_loss(images, labels, hidden)
        start = time.perf_counter()
        steps, g, probe = train(loss, beta, rho, lr, every, threshold)
        norm = float(np.sum(np.sqrt(g ** 2 + EPS)))
        effect, condition = verdict(beta, rho, g)
        strengths = [r["strength"] for r in probe.records]
        floor = loss.start.size * np.sqrt(EPS)
        rows.append({"sweep": sweep, "beta": beta, "rho": rho, "steps": steps, "norm": norm, "floor": floor,
                     "excess": norm - floor, "predicted": effect, "condition": condition,
                     "strength_median": float(np.median(strengths)),
                     "strength_first": strengths[0], "strength_last": strengths[-1],
                     "positive_fraction": float(np.mean(np.array(strengths) > 0)),
                     "M/F_max": float(max(r["M/F"] for r in probe.records)),
                     "measurements": len(strengths), "seconds": time.perf_counter() - start,
                     "log": [{"step": r["step"], "strength": r["strength"], "M/F": r["M/F"]} for r in probe.records]})
        print(f"  beta={beta} rho={rho}: {steps} steps, {rows[-1]['seconds']:.0f} s", file=sys.stderr, flush=True)
    return rows


def table(rows, lr, hidden, threshold):
    lines = [f"Full-batch Adam on digits (1797 images), 64-{hidden}-10 tanh network, h = {lr:g}, eps = {EPS:g} "
             f"(inside the root), measured at the first step with training loss < {threshold:g}.",
             "strength = <grad N, M>/|<grad N, F>| logged by memless.Probe in the loop (> 0: regularizing); "
             "excess = ‖∇L‖_{1,ε} − p √ε.", "",
             "| sweep | beta | rho | steps | ‖∇L‖_{1,ε} | excess | memless's verdict there | strength (first / median / last) "
             "| share > 0 | max M/F |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['sweep']} | {r['beta']} | {r['rho']} | {r['steps']} | {r['norm']:.7f} | {r['excess']:.4e} | "
                     f"{r['predicted']} | {r['strength_first']:+.3f} / {r['strength_median']:+.3f} / "
                     f"{r['strength_last']:+.3f} | {r['positive_fraction']:.0%} | {r['M/F_max']:.3f} |")
    lines.append("")
    lines.append("memless's verdict at the measured point holds where:")
    for r in rows:
        lines.append(f"- beta = {r['beta']}, rho = {r['rho']}: {r['condition']}")
    return "\n".join(lines)


def figure(rows, path):
    """The probe's log for each run: the signed strength of memory's term against the training step."""
    import memless.plot as mp
    plt = mp.pyplot()
    sweeps = [sweep for sweep in ("rho", "beta") if any(r["sweep"] == sweep for r in rows)]
    fig, axes = plt.subplots(1, len(sweeps), figsize=(5.2 * len(sweeps), 4.0), squeeze=False)
    for ax, sweep in zip(axes[0], sweeps):
        for r in (r for r in rows if r["sweep"] == sweep):
            ax.plot([e["step"] for e in r["log"]], [e["strength"] for e in r["log"]], marker=".",
                    label=f"beta = {r['beta']}, rho = {r['rho']}")
        ax.axhline(0.0, color="0.5", linewidth=0.6)
        ax.set_yscale("symlog", linthresh=1e-2)
        ax.set_xlabel("training step (full-batch Adam, digits)")
        ax.set_ylabel("<grad N, M>/|<grad N, F>|  (> 0 regularizing)")
        ax.set_title(f"memless.Probe in the training loop: {sweep} varied", fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def trend(rows, sweep, key):
    part = sorted((r for r in rows if r["sweep"] == sweep), key=lambda r: r[key])
    excess = [r["excess"] for r in part]
    if all(b > a for a, b in zip(excess, excess[1:])):
        return "rises"
    if all(b < a for a, b in zip(excess, excess[1:])):
        return "falls"
    return "is not monotone"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: loose threshold, two settings")
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--every", type=int, default=None, help="probe every this many steps")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    parser.add_argument("--plot", metavar="PATH", help="also draw the probe's logs (needs matplotlib)")
    args = parser.parse_args(argv)
    if args.quick:
        settings = [("rho", 0.9, 0.99), ("rho", 0.9, 0.999)]
        threshold, every = 0.5, args.every or 20
    else:
        beta_fixed, rho_fixed = 0.97, 0.999          # Figure 3's beta, Figure 5's rho
        settings = ([("rho", beta_fixed, rho) for rho in (0.99, 0.995, 0.999)]
                    + [("beta", beta, rho_fixed) for beta in (0.9, 0.95)])
        threshold, every = THRESHOLD, args.every or 200
    rows = run(settings, args.lr, args.hidden, every, threshold)
    for r in rows:                                   # the beta sweep shares the (0.97, 0.999) run
        if r["sweep"] == "rho" and r["rho"] == 0.999 and not args.quick:
            rows.append(dict(r, sweep="beta"))
    print(table(rows, args.lr, args.hidden, threshold))
    print()
    print(f"Across rho at beta = {rows[0]['beta']}: the excess {trend(rows, 'rho', 'rho')} as rho grows "
          "(the paper's Figure 3: the norm rises).")
    if not args.quick:
        print(f"Across beta at rho = 0.999: the excess {trend(rows, 'beta', 'beta')} as beta grows "
              "(the paper's Figure 5: the norm falls).")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    if args.plot:
        print(f"figure written to {figure(rows, args.plot)}")
    return rows


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
