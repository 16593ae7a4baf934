"""Reference losses with real curvature, for reports, tests and tutorials.

Each is a :class:`ReferenceLoss`: the loss, a starting point and a line on what it is.
"""
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence, cast

import autograd.numpy as anp
import numpy as np

from .errors import LossError, MemlessError
from .parameters import structured


@dataclass(frozen=True)
class ReferenceLoss:
    name: str
    loss: Callable
    start: np.ndarray
    description: str
    #: the arrays the loss is built from, by name (the MLP's inputs and one-hot labels), for
    #: rebuilding the same loss elsewhere (a framework, a benchmark)
    data: Optional[Dict[str, np.ndarray]] = None


def bilinear(theta, x: float = 2.0, y: float = 1.5):
    """E(theta) = (y - theta_1 theta_2 x)^2 / 2: the model of Figure 1 in Cattaneo, Klusowski & Shigida (2023)."""
    return 0.5 * (y - theta[0] * theta[1] * x) ** 2


def rosenbrock(theta, a: float = 1.0, b: float = 10.0):
    """A scaled-down Rosenbrock valley, sum_i b (theta_{i+1} - theta_i^2)^2 + (a - theta_i)^2."""
    return anp.sum(b * (theta[1:] - theta[:-1] ** 2) ** 2 + (a - theta[:-1]) ** 2)


def curvy(theta):
    """A 3-d loss with non-trivial third derivatives: a bilinear valley, sines, quartics, a cubic coupling."""
    r = 1.5 - 2.0 * theta[0] * theta[1]
    return (0.5 * r ** 2 + 0.1 * anp.sum(anp.sin(theta)) + 0.05 * anp.sum(theta ** 4)
            + 0.3 * theta[1] * theta[2] ** 2)


def _logistic_data(samples=64, features=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(samples, features))
    w = rng.normal(size=features)
    y = (X @ w + 0.5 * rng.normal(size=samples) > 0).astype(float)
    return X, y


_X, _Y = _logistic_data()


def logistic(theta):
    """Mean logistic loss of a 4-feature linear classifier on 64 seeded synthetic samples."""
    z = anp.dot(_X, theta)
    return anp.mean(anp.logaddexp(0.0, z) - _Y * z)


# ----------------------------------------------------------------------------
# Losses over matrices (for optimizers that act per matrix: Muon, Lion-K nuclear, Shampoo)
# ----------------------------------------------------------------------------


def _factorization_data(seed=1):
    rng = np.random.default_rng(seed)
    target = 1.5 * rng.normal(size=(6, 5))
    start = {"U": 0.5 * rng.normal(size=(6, 3)), "V": 0.5 * rng.normal(size=(5, 3))}
    return target, start


_FACTOR_TARGET, _FACTOR_START = _factorization_data()


def factorization(params):
    """||U V^T - Y||_F^2 / 2 for a seeded full-rank target Y (6 x 5) and a rank-3 model U V^T
    (U 6 x 3, V 5 x 3): quartic in (U, V), and its gradient matrices stay of full rank."""
    residual = anp.dot(params["U"], anp.transpose(params["V"])) - _FACTOR_TARGET
    return 0.5 * anp.sum(residual ** 2)


def _network_data(seed=2, samples=32):
    rng = np.random.default_rng(seed)
    inputs = rng.normal(size=(samples, 4))
    targets = 3.0 * np.tanh(inputs @ rng.normal(size=(4, 6))) @ rng.normal(size=(6, 3))
    start = {"W1": 0.5 * rng.normal(size=(4, 6)), "W2": 0.5 * rng.normal(size=(6, 3))}
    return inputs, targets, start


_NET_INPUTS, _NET_TARGETS, _NET_START = _network_data()


def network(params):
    """A two-layer tanh network without biases, ``tanh(X W1) W2`` (W1 4 x 6, W2 6 x 3), mean squared
    error against a seeded teacher on 32 Gaussian inputs."""
    outputs = anp.dot(anp.tanh(anp.dot(_NET_INPUTS, params["W1"])), params["W2"])
    return 0.5 * anp.mean(anp.sum((outputs - _NET_TARGETS) ** 2, axis=1))


def _matrix_loss(name, loss, start, description):
    flat = structured(loss, start)
    flat.__name__ = name
    return ReferenceLoss(name, flat, cast(np.ndarray, flat.start), description)   # structured() sets it


REFERENCE_LOSSES = {
    "bilinear": ReferenceLoss("bilinear", bilinear, np.array([2.8, 3.5]),
                              "E = (3/2 - 2 theta1 theta2)^2 / 2, the model of Figure 1 in Cattaneo et al. 2023"),
    "rosenbrock": ReferenceLoss("rosenbrock", rosenbrock, np.array([-0.5, 0.8, 0.3]),
                                "Rosenbrock valley in 3 dimensions, b = 10"),
    "curvy": ReferenceLoss("curvy", curvy, np.array([0.3, 0.5, -0.4]),
                           "3-d loss with sines, quartics and a cubic coupling (real third derivatives)"),
    "logistic": ReferenceLoss("logistic", logistic, np.full(4, 0.3),
                              "logistic regression, 4 features, 64 seeded synthetic samples"),
    "factorization": _matrix_loss("factorization", factorization, _FACTOR_START,
                                  "matrices: ||U V^T - Y||^2/2, Y full rank (6 x 5), U 6 x 3, V 5 x 3 (33 parameters)"),
    "network": _matrix_loss("network", network, _NET_START,
                            "matrices: two-layer tanh network tanh(X W1) W2, W1 4 x 6, W2 6 x 3, 32 samples"),
}


def get_loss(name: str) -> ReferenceLoss:
    try:
        return REFERENCE_LOSSES[name]
    except KeyError:
        raise LossError(f"unknown reference loss {name!r}; available: {', '.join(REFERENCE_LOSSES)}") from None


# ----------------------------------------------------------------------------
# A model with many parameters: a tanh MLP classifier on seeded synthetic data
# ----------------------------------------------------------------------------


def mlp(sizes: Sequence[int] = (64, 256, 256, 10), samples: int = 512, seed: int = 0) -> ReferenceLoss:
    """A ``ReferenceLoss`` for an MLP classifier with ``sum (a+1) b`` parameters.

    tanh hidden layers, softmax cross-entropy, ``samples`` Gaussian inputs
    labelled by a random teacher network; the start is a seeded Glorot-style
    initialisation.  The default has 85,002 parameters (the benchmark's model).

    >>> problem = mlp(sizes=(3, 5, 2), samples=8)
    >>> problem.start.size, float(problem.loss(problem.start)) > 0
    (32, True)
    """
    sizes = tuple(int(s) for s in sizes)
    if len(sizes) < 2 or min(sizes) < 1:
        raise MemlessError(f"sizes must list at least two layer widths >= 1, got {sizes}")
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(samples, sizes[0]))
    teacher = rng.normal(size=(sizes[0], sizes[-1]))
    labels = np.argmax(X @ teacher, axis=1)
    Y = np.eye(sizes[-1])[labels]
    shapes = [(a, b) for a, b in zip(sizes[:-1], sizes[1:])]
    cuts = np.cumsum([0] + [(a + 1) * b for a, b in shapes])

    def loss(theta):
        h = X
        for i, (a, b) in enumerate(shapes):
            layer = theta[cuts[i]:cuts[i + 1]]
            W, c = anp.reshape(layer[: a * b], (a, b)), layer[a * b:]
            h = anp.dot(h, W) + c
            if i < len(shapes) - 1:
                h = anp.tanh(h)
        h = h - anp.max(h, axis=1, keepdims=True)
        log_probs = h - anp.log(anp.sum(anp.exp(h), axis=1, keepdims=True))
        return -anp.sum(Y * log_probs) / samples

    start = np.concatenate([np.concatenate([rng.normal(scale=1.0 / np.sqrt(a), size=a * b), np.zeros(b)])
                            for a, b in shapes])
    return ReferenceLoss("mlp", loss, start,
                         f"MLP {'-'.join(map(str, sizes))} (tanh, softmax), {samples} seeded samples, "
                         f"{start.size} parameters", data={"inputs": X, "labels": Y})
