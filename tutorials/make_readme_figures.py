"""Regenerate the README's figures from the package itself:

    .venv/bin/python tutorials/make_readme_figures.py [FOLDER]

Writes tutorials/figures/figure1.png (Figure 1 of Cattaneo, Klusowski & Shigida 2023:
Adam on the bilinear model, beta and rho varied) and tutorials/figures/regime_map.png
(AdamW's corrected order and the sign of its memory term over (beta1, beta2)).
Takes about a minute on a 2-core machine.
"""
import os
import sys

import memless
import memless.plot as mp

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "figures")


def figure1(path):
    adams = [memless.get_optimizer("adam", beta1=beta, beta2=rho, eps=1e-6)
             for beta, rho in ((0.8, 0.999), (0.9, 0.999), (0.95, 0.999), (0.9, 0.99), (0.9, 0.995))]
    fig = mp.trajectories(adams, "bilinear", lr=1e-3, steps=12_000)
    fig.axes[0].set_title("Adam on the bilinear model (Figure 1 of Cattaneo, Klusowski & Shigida 2023):\n"
                          "larger beta2 ends farther from the flattest minimum; the beta1 paths nearly overlap "
                          "here\n(Tutorial 3 measures their end points: larger beta1 ends nearer)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def regime_map(path):
    result = mp.regime_map("adamw", "bilinear", x="beta1", y="beta2", grid=12, lr=1e-2, steps=20)
    result.figure().savefig(path, dpi=110)


if __name__ == "__main__":
    OUT = sys.argv[1] if len(sys.argv) > 1 else OUT       # another folder, for the test
    os.makedirs(OUT, exist_ok=True)
    figure1(os.path.join(OUT, "figure1.png"))
    regime_map(os.path.join(OUT, "regime_map.png"))
    print("wrote", os.path.join(OUT, "figure1.png"), "and", os.path.join(OUT, "regime_map.png"))
