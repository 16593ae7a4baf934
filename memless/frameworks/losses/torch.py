"""A PyTorch model as a memless loss: gradients and Hessian-vector products by ``torch.func``.

>>> import torch, memless                                      # doctest: +SKIP
>>> from memless.frameworks.torch import objective            # doctest: +SKIP
>>> loss = objective(model.double(), torch.nn.functional.mse_loss, (inputs, targets))   # doctest: +SKIP
>>> M = memless.correction(memless.get_optimizer("adamw"), loss, None, lr=1e-3)         # doctest: +SKIP

The parameters are flattened in ``model.named_parameters()`` order; their names and shapes
become the loss's :class:`~memless.parameters.Layout`, so Muon and the other optimizers
that act per matrix see them.  Use a float64 model for results comparable to autograd's.
"""
from __future__ import annotations

import warnings
from typing import Callable, Sequence

import numpy as np

from ...errors import LossError
from ...parameters import Layout
from .external import ExternalLoss


def import_torch():
    try:
        import torch
    except ImportError:
        raise LossError("memless.frameworks.torch needs PyTorch: pip install memless[torch]") from None
    return torch


def objective(model, loss_fn: Callable, batch: Sequence, *, name: str = "") -> ExternalLoss:
    """The loss ``loss_fn(model(*inputs), targets)`` of ``batch = (inputs, targets)`` (or
    ``(inputs..., targets)``) as a function of the model's trainable parameters, flattened.

    value: one forward pass; gradient: ``torch.func.grad``; Hessian-vector product:
    ``torch.func.jvp`` of ``torch.func.grad`` (forward over reverse), at the model's own dtype and device;
    third derivatives (for ``order=2``): three nested backward passes.
    At the point where the engine takes its correction, the gradient is taken with
    ``create_graph=True`` and each HVP there is one backward pass through it (double
    backward), with no second gradient.  The start point is the model's current parameters.
    """
    torch = import_torch()
    from torch.func import functional_call, grad, jvp

    if not isinstance(model, torch.nn.Module):
        raise LossError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise LossError(f"loss_fn must be a callable (outputs, targets) -> scalar, got {type(loss_fn).__name__}")
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise LossError("batch must be (inputs, targets) or (inputs..., targets)")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise LossError("the model has no trainable parameters")
    layout = Layout({n: tuple(p.shape) if p.dim() else (1,) for n, p in named})
    dtype, device = named[0][1].dtype, named[0][1].device
    if device.type == "meta" or any(p.is_meta for _, p in named):
        raise LossError("the model's parameters are on the 'meta' device (shapes without data): materialize them "
                        "first (model.to_empty(device='cpu') and load a state dict)")
    if not dtype.is_floating_point or dtype.is_complex:
        raise LossError(f"the model's parameters must be real floating point, got {dtype}")
    inputs, targets = tuple(batch[:-1]), batch[-1]
    # the user's buffers are never written: each evaluation gets copies (BatchNorm in train mode
    # updates running statistics in place)
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}

    sizes = [p.numel() for _, p in named]

    def flat_loss(flat):
        # torch.split, not flat[slice] per tensor: gradient + HVP 1.5-1.7x faster at d = 1.06e6 (CPU time,
        # interleaved rounds), the same numbers to the bit
        params = {n: part.reshape(p.shape) for (n, p), part in zip(named, torch.split(flat, sizes))}
        own = {n: b.clone() for n, b in buffers.items()}
        return loss_fn(functional_call(model, {**own, **params}, inputs), targets)

    gradient_of = grad(flat_loss)

    def tensor(x):
        array = np.asarray(x, dtype=float)
        if not array.flags.writeable:          # memless's iterates are read-only; torch wants to own its memory
            array = array.copy()
        return torch.as_tensor(array, dtype=dtype, device=device)

    def value(theta):
        with torch.no_grad():
            return float(flat_loss(tensor(theta)))

    def gradient(theta):
        return gradient_of(tensor(theta)).detach().cpu().double().numpy()

    forward_over_reverse = [True]

    def hvp(theta, v):
        if forward_over_reverse[0]:
            try:
                with warnings.catch_warnings():      # torch.func's first use scripts a helper: not the user's concern
                    warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated",
                                            category=DeprecationWarning)
                    return jvp(gradient_of, (tensor(theta),), (tensor(v),))[1].detach().cpu().double().numpy()
            except RuntimeError:
                # some losses have no forward-mode rule for their double backward in torch (mse_loss raises
                # "ZeroTensors are immutable"): reverse over reverse from here on, the same H v
                forward_over_reverse[0] = False
        return linearize(theta)[2](v)

    def linearize(theta):
        flat = tensor(theta).requires_grad_(True)
        with torch.enable_grad():
            value = flat_loss(flat)
            (g,) = torch.autograd.grad(value, flat, create_graph=True)

        def hvp_here(v):
            (hv,) = torch.autograd.grad(g, flat, tensor(v), retain_graph=True)
            return hv.detach().cpu().double().numpy()

        return float(value.detach()), g.detach().cpu().double().numpy(), hvp_here

    def third(theta, v, w):
        flat = tensor(theta).requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(flat_loss(flat), flat, create_graph=True)
            (hv,) = torch.autograd.grad(g, flat, tensor(v), create_graph=True, allow_unused=True)
            if hv is None or not hv.requires_grad:          # H does not depend on theta (a quadratic loss)
                return np.zeros(np.shape(theta))
            (t,) = torch.autograd.grad(hv, flat, tensor(w), allow_unused=True)
        return np.zeros(np.shape(theta)) if t is None else t.detach().cpu().double().numpy()

    start = flat([p for _, p in named])
    _check_deterministic(torch, model, lambda: value(start))
    return ExternalLoss(value, gradient, hvp, linearize=linearize, third=third, start=start, layout=layout,
                        name=name or type(model).__name__)


def flat(tensors) -> np.ndarray:
    """Tensors (a model's parameters, or their gradients) as one flat float64 NumPy vector, in order."""
    torch = import_torch()
    return torch.cat([t.detach().reshape(-1) for t in tensors]).cpu().double().numpy()


def _check_deterministic(torch, model, evaluate) -> None:
    """Two evaluations at the same parameters must agree (a loss is a function); the random number
    generator's state is restored afterwards, so the user's run is not shifted by the check."""
    state = torch.random.get_rng_state()
    try:
        first, second = evaluate(), evaluate()
    finally:
        torch.random.set_rng_state(state)
    if first != second:
        random = sorted({type(m).__name__ for m in model.modules() if m.training and "Dropout" in type(m).__name__})
        hint = f" ({', '.join(random)} in train mode)" if random else ""
        raise LossError(f"the model's loss differs between two evaluations at the same parameters ({first!r} then "
                        f"{second!r}){hint}: memless needs a function of the parameters; call model.eval() (or fix "
                        "the randomness) before memless.frameworks.torch.objective")
