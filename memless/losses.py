"""Reference losses with real curvature, for reports, tests and tutorials.

Each is a :class:`ReferenceLoss`: the loss, a starting point and a line on what it is.
"""
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence, Tuple, cast

import autograd.numpy as anp
import numpy as np
from autograd.extend import defjvp, defvjp, primitive

from .errors import LossError, MemlessError
from .numerics.autodiff import numpy_for
from .parameters import Layout, StructuredLoss, structured


@dataclass(frozen=True)
class ReferenceLoss:
    name: str
    loss: Callable
    start: np.ndarray
    description: str
    #: the arrays the loss is built from, by name (the MLP's inputs and one-hot labels), for
    #: rebuilding the same loss elsewhere (a framework, a benchmark)
    data: Optional[Dict[str, np.ndarray]] = None


# ----------------------------------------------------------------------------
# Derivatives written by hand: the engine's steps on a reference loss cost NumPy, not tracing
# ----------------------------------------------------------------------------


class ClosedFormLoss:
    """A reference loss with its gradient and Hessian-vector product written by hand.

    Called as ``loss(theta)`` it is the plain ``autograd.numpy`` function (so it can be
    differentiated as any loss).  The engine (:class:`memless.engine.objective.Objective`)
    takes its gradient and HVP from the hand-written forms instead of tracing: a step on a
    3-parameter loss then costs microseconds of NumPy rather than autograd's per-operation
    bookkeeping.  The hand-written forms are themselves written with ``autograd.numpy``, so
    derivatives of every order remain available (the HVP is differentiated by autograd).
    Tests compare gradient, HVP and third derivatives with autograd's of ``function``.
    """

    def __init__(self, function: Callable, gradient: Callable, hvp: Callable):
        self.function, self.gradient_function, self.hvp_function = function, gradient, hvp
        self.__name__ = function.__name__
        self.__doc__ = function.__doc__

    def __call__(self, theta):
        return self.function(theta)

    def value_and_gradient(self, theta) -> Tuple[float, np.ndarray]:
        return self.function(theta), self.gradient_function(theta)

    def linearize(self, theta) -> Tuple[float, np.ndarray, Callable]:
        """(value, gradient, v -> H(theta) v) at theta."""
        return self.function(theta), self.gradient_function(theta), lambda v: self.hvp_function(theta, v)

    def traced_gradient(self, theta):
        """The gradient as autograd sees it: its derivative is the hand-written HVP."""
        return _closed_form_gradient(theta, self)

    def __repr__(self) -> str:
        return f"ClosedFormLoss({self.__name__})"


class ClosedFormStructuredLoss(ClosedFormLoss, StructuredLoss):
    """A :class:`ClosedFormLoss` over named arrays: ``gradient(params)`` and ``hvp(params, v_params)``
    take and return dicts of arrays; the engine sees them on the flat vector of ``flat.layout``."""

    def __init__(self, flat: StructuredLoss, gradient: Callable, hvp: Callable):
        layout = flat.layout
        ClosedFormLoss.__init__(self, flat, lambda theta: _flat(layout, gradient(layout.unflatten(theta))),
                                lambda theta, v: _flat(layout, hvp(layout.unflatten(theta), layout.unflatten(v))))
        StructuredLoss.__init__(self, flat.loss_of_params, layout, flat.start, flat.__name__)


def _flat(layout: Layout, params) -> np.ndarray:
    parts = [params[name] for name, _, _ in layout]
    xp = numpy_for(*parts)
    return xp.concatenate([xp.ravel(part) for part in parts])


@primitive
def _closed_form_gradient(theta, loss):
    return loss.gradient_function(theta)


defjvp(_closed_form_gradient, lambda theta_dot, ans, theta, loss: loss.hvp_function(theta, theta_dot), None)
defvjp(_closed_form_gradient, lambda ans, theta, loss: lambda u: loss.hvp_function(theta, u), None)


# ----------------------------------------------------------------------------
# Losses over vectors
# ----------------------------------------------------------------------------


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


def _bilinear_gradient(theta, x=2.0, y=1.5):
    xp = numpy_for(theta)
    r = y - theta[0] * theta[1] * x
    if xp.size(theta) == 2:                    # the reference start: (theta2, theta1) without building arrays
        return -x * r * theta[::-1]
    head = xp.array([-x * theta[1] * r, -x * theta[0] * r])
    return xp.concatenate([head, xp.zeros(xp.size(theta) - 2)])


def _bilinear_hvp(theta, v, x=2.0, y=1.5):
    xp = numpy_for(theta, v)
    r = y - theta[0] * theta[1] * x
    cross = x * x * theta[0] * theta[1] - x * r
    if xp.size(theta) == 2:
        return x * x * theta[::-1] ** 2 * v + cross * v[::-1]
    head = xp.array([x * x * theta[1] ** 2 * v[0] + cross * v[1], cross * v[0] + x * x * theta[0] ** 2 * v[1]])
    return xp.concatenate([head, xp.zeros(xp.size(theta) - 2)])


def _rosenbrock_gradient(theta, a=1.0, b=10.0):
    xp = numpy_for(theta)
    u, w, left = theta[1:] - theta[:-1] ** 2, a - theta[:-1], theta[:-1]
    return (xp.concatenate([-4.0 * b * left * u - 2.0 * w, xp.zeros(1)])
            + xp.concatenate([xp.zeros(1), 2.0 * b * u]))


def _rosenbrock_hvp(theta, v, a=1.0, b=10.0):
    xp = numpy_for(theta, v)
    u, left = theta[1:] - theta[:-1] ** 2, theta[:-1]
    du = v[1:] - 2.0 * left * v[:-1]
    return (xp.concatenate([-4.0 * b * (v[:-1] * u + left * du) + 2.0 * v[:-1], xp.zeros(1)])
            + xp.concatenate([xp.zeros(1), 2.0 * b * du]))


def _curvy_gradient(theta):
    xp = numpy_for(theta)
    r = 1.5 - 2.0 * theta[0] * theta[1]
    coupled = xp.array([-2.0 * theta[1] * r, -2.0 * theta[0] * r + 0.3 * theta[2] ** 2, 0.6 * theta[1] * theta[2]])
    return coupled + 0.1 * xp.cos(theta) + 0.2 * theta ** 3


def _curvy_hvp(theta, v):
    xp = numpy_for(theta, v)
    r = 1.5 - 2.0 * theta[0] * theta[1]
    dr = -2.0 * (v[0] * theta[1] + theta[0] * v[1])
    coupled = xp.array([-2.0 * (v[1] * r + theta[1] * dr),
                         -2.0 * (v[0] * r + theta[0] * dr) + 0.6 * theta[2] * v[2],
                         0.6 * (v[1] * theta[2] + theta[1] * v[2])])
    return coupled + (-0.1 * xp.sin(theta) + 0.6 * theta ** 2) * v


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


def _sigmoid(z):
    return 0.5 * (anp.tanh(0.5 * z) + 1.0)


def _logistic_gradient(theta):
    xp = numpy_for(theta)
    return xp.dot(_sigmoid(xp.dot(_X, theta)) - _Y, _X) / _X.shape[0]


def _logistic_hvp(theta, v):
    xp = numpy_for(theta, v)
    p = _sigmoid(xp.dot(_X, theta))
    return xp.dot(p * (1.0 - p) * xp.dot(_X, v), _X) / _X.shape[0]


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


def _factorization_gradient(p):
    xp = numpy_for(p["U"], p["V"])
    residual = xp.dot(p["U"], xp.transpose(p["V"])) - _FACTOR_TARGET
    return {"U": xp.dot(residual, p["V"]), "V": xp.dot(xp.transpose(residual), p["U"])}


def _factorization_hvp(p, v):
    xp = numpy_for(p["U"], p["V"], v["U"], v["V"])
    residual = xp.dot(p["U"], xp.transpose(p["V"])) - _FACTOR_TARGET
    d_residual = xp.dot(v["U"], xp.transpose(p["V"])) + xp.dot(p["U"], xp.transpose(v["V"]))
    return {"U": xp.dot(d_residual, p["V"]) + xp.dot(residual, v["V"]),
            "V": xp.dot(xp.transpose(d_residual), p["U"]) + xp.dot(xp.transpose(residual), v["U"])}


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


def _network_gradient(p):
    xp = numpy_for(p["W1"], p["W2"])
    samples = _NET_INPUTS.shape[0]
    hidden = xp.tanh(xp.dot(_NET_INPUTS, p["W1"]))
    error = (xp.dot(hidden, p["W2"]) - _NET_TARGETS) / samples
    d_hidden = xp.dot(error, xp.transpose(p["W2"]))
    return {"W1": xp.dot(xp.transpose(_NET_INPUTS), d_hidden * (1.0 - hidden ** 2)),
            "W2": xp.dot(xp.transpose(hidden), error)}


def _network_hvp(p, v):
    xp = numpy_for(p["W1"], p["W2"], v["W1"], v["W2"])
    samples = _NET_INPUTS.shape[0]
    hidden = xp.tanh(xp.dot(_NET_INPUTS, p["W1"]))
    slope = 1.0 - hidden ** 2
    error = (xp.dot(hidden, p["W2"]) - _NET_TARGETS) / samples
    d_hidden_value = slope * xp.dot(_NET_INPUTS, v["W1"])
    d_error = (xp.dot(d_hidden_value, p["W2"]) + xp.dot(hidden, v["W2"])) / samples
    back = xp.dot(error, xp.transpose(p["W2"]))
    d_back = xp.dot(d_error, xp.transpose(p["W2"])) + xp.dot(error, xp.transpose(v["W2"]))
    d_pre = d_back * slope - 2.0 * back * hidden * d_hidden_value
    return {"W1": xp.dot(xp.transpose(_NET_INPUTS), d_pre),
            "W2": xp.dot(xp.transpose(d_hidden_value), error) + xp.dot(xp.transpose(hidden), d_error)}


def _matrix_loss(name, loss, start, description, gradient, hvp):
    flat = structured(loss, start)
    flat.__name__ = name
    closed = ClosedFormStructuredLoss(flat, gradient, hvp)
    return ReferenceLoss(name, closed, cast(np.ndarray, flat.start), description)   # structured() sets it


REFERENCE_LOSSES = {
    "bilinear": ReferenceLoss("bilinear", ClosedFormLoss(bilinear, _bilinear_gradient, _bilinear_hvp), np.array([2.8, 3.5]),
                              "E = (3/2 - 2 theta1 theta2)^2 / 2, the model of Figure 1 in Cattaneo et al. 2023"),
    "rosenbrock": ReferenceLoss("rosenbrock", ClosedFormLoss(rosenbrock, _rosenbrock_gradient, _rosenbrock_hvp), np.array([-0.5, 0.8, 0.3]),
                                "Rosenbrock valley in 3 dimensions, b = 10"),
    "curvy": ReferenceLoss("curvy", ClosedFormLoss(curvy, _curvy_gradient, _curvy_hvp), np.array([0.3, 0.5, -0.4]),
                           "3-d loss with sines, quartics and a cubic coupling (real third derivatives)"),
    "logistic": ReferenceLoss("logistic", ClosedFormLoss(logistic, _logistic_gradient, _logistic_hvp), np.full(4, 0.3),
                              "logistic regression, 4 features, 64 seeded synthetic samples"),
    "factorization": _matrix_loss("factorization", factorization, _FACTOR_START,
                                  "matrices: ||U V^T - Y||^2/2, Y full rank (6 x 5), U 6 x 3, V 5 x 3 (33 parameters)",
                                  _factorization_gradient, _factorization_hvp),
    "network": _matrix_loss("network", network, _NET_START,
                            "matrices: two-layer tanh network tanh(X W1) W2, W1 4 x 6, W2 6 x 3, 32 samples",
                            _network_gradient, _network_hvp),
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
