"""The same loss in autograd and in JAX gives the same corrections for every built-in (float64):
to 2e-10 of |M| (measured: 1e-15 for all but Lion at eps = 1e-8, 1.0e-10)."""
import numpy as np
import pytest

import memless
from reference import (FRAMEWORK_OPTIMIZERS, SECOND_ORDER_OPTIMIZERS, assert_linearize_agrees,
                       assert_same_corrections_as, assert_same_second_order_as)

pytest.importorskip("jax", reason="JAX is not installed (pip install memless[jax])")
from memless.frameworks.jax import objective  # noqa: E402  (before any jax array: float64)
import jax.numpy as jnp  # noqa: E402

from memless.losses import _NET_INPUTS, _NET_TARGETS, REFERENCE_LOSSES  # noqa: E402

NETWORK = REFERENCE_LOSSES["network"]


def _jax_network():
    X, T = jnp.asarray(_NET_INPUTS), jnp.asarray(_NET_TARGETS)

    def network(p):
        return 0.5 * jnp.mean(jnp.sum((jnp.tanh(X @ p["W1"]) @ p["W2"] - T) ** 2, axis=1))

    parts = NETWORK.loss.layout.unflatten(NETWORK.start)
    return objective(network, {k: np.array(v) for k, v in parts.items()})


@pytest.mark.parametrize("name", FRAMEWORK_OPTIMIZERS)
def test_jax_function_gives_autograds_corrections_for_every_builtin(name):
    assert_same_corrections_as(_jax_network(), "network", name)


@pytest.mark.parametrize("name,hyper", SECOND_ORDER_OPTIMIZERS, ids=[n for n, _ in SECOND_ORDER_OPTIMIZERS])
def test_jax_function_gives_autograds_second_order_term(name, hyper):
    assert_same_second_order_as(_jax_network(), "network", name, hyper)


def test_jax_recorded_vjp_hvp_equals_forward_over_reverse():
    assert_linearize_agrees(_jax_network())


def test_jax_objective_refuses_a_non_callable():
    with pytest.raises(memless.LossError, match="fun must be a callable"):
        objective(3, np.ones(2))
