"""optax transformations as black boxes: the built-in's correction at finite n and in the limit."""
import numpy as np
import pytest

import memless

optax = pytest.importorskip("optax", reason="optax is not installed (pip install memless[jax])")


@pytest.mark.parametrize("factory,kwargs,builtin", [
    ("adamw", dict(b1=0.9, b2=0.95, eps=1e-3, weight_decay=0.05),
     ("adamw", dict(beta1=0.9, beta2=0.95, eps=1e-3, eps_inside=False, weight_decay=0.05))),
    ("sgd", dict(momentum=0.9), ("heavy-ball", dict(beta=0.9))),
], ids=["adamw", "sgd-momentum"])
@pytest.mark.parametrize("loss", ["curvy", "network"])
def test_optax_transformations_give_the_builtin_correction(factory, kwargs, builtin, loss):
    """optax.adamw and optax.sgd(momentum) as black boxes (one jitted, vmapped update per step for all
    replays): the built-in's M^(n) at n = 3, 30 and the limit, to 1e-7 relative (measured
    1e-13 to 4e-11).  On 'network' each matrix is its own leaf of the parameter pytree."""
    from memless.frameworks.blackbox import OptaxTransformation
    box = OptaxTransformation(getattr(optax, factory), **kwargs)
    ref = memless.get_optimizer(builtin[0], **builtin[1])
    for n in (3, 30, None):
        ours = memless.correction(box, loss, None, lr=1e-3, n=n)
        reference = memless.correction(ref, loss, None, lr=1e-3, n=n)
        np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-7 * np.max(np.abs(reference)))
        assert box.derivative_error < 1e-8
    np.testing.assert_allclose(memless.trajectory(box, loss, None, lr=1e-2, steps=20),
                               memless.trajectory(ref, loss, None, lr=1e-2, steps=20), rtol=0, atol=1e-12)


def test_optax_adapter_errors_are_one_line():
    from memless.frameworks.blackbox import OptaxTransformation
    with pytest.raises(memless.MemlessError, match="leave learning_rate out"):
        OptaxTransformation(optax.adamw, learning_rate=0.1)
    with pytest.raises(memless.MemlessError, match="go with a factory"):
        OptaxTransformation(optax.adamw(1.0), b1=0.5)
    with pytest.raises(memless.MemlessError, match="raised TypeError"):
        OptaxTransformation(optax.adamw, nonsense=3)
