"""A user's kind of training loop: a PyTorch MLP, full-batch Adam written out, and memless
measuring at the point the protocol asks for.  Shared by the experiments.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..checks import said
from ..errors import MemlessError

#: the protocol's stopping point: the first step with full-batch training loss below it
THRESHOLD = 0.01


def torch_module():
    try:
        import torch
    except ImportError:
        raise MemlessError("the experiments train PyTorch models: pip install memless[torch,experiments]") from None
    return torch


def mlp(inputs: int, hidden, classes: int, seed: int, activation: str = "tanh", dtype=None):
    """A fully connected network ``inputs-hidden...-classes`` with biases, seeded (inputs of any
    shape are flattened first)."""
    torch = torch_module()
    torch.manual_seed(seed)
    layers, width = [torch.nn.Flatten()], inputs
    for size in hidden:
        layers += [torch.nn.Linear(width, size), torch.nn.Tanh() if activation == "tanh" else torch.nn.ReLU()]
        width = size
    layers.append(torch.nn.Linear(width, classes))
    return torch.nn.Sequential(*layers).to(dtype or torch.float64)


def network(model, data, hidden, seed: int):
    """The experiment's network for ``data``: ``model(shape, classes, seed)`` if you gave a model
    builder (any torch.nn.Module taking a batch of inputs of that shape; e.g. a ResNet for images),
    else the experiment's tanh MLP with ``hidden`` widths."""
    if model is None:
        return mlp(int(np.prod(data.input_shape)), hidden, data.classes, seed)
    torch = torch_module()
    try:
        built = model(data.input_shape, data.classes, seed)
    except Exception as exc:
        raise MemlessError(f"model(shape={data.input_shape}, classes={data.classes}, seed={seed}) raised "
                           f"{type(exc).__name__}: {said(exc)}") from exc
    if not isinstance(built, torch.nn.Module):
        raise MemlessError(f"model(shape, classes, seed) must return a torch.nn.Module, got {type(built).__name__}")
    _check_deterministic(built, data)
    return built


def _check_deterministic(model, data, examples: int = 64):
    """Refuse, before training, a model whose training-mode output is random (Dropout): the
    full-batch loss must be a function of the parameters for memless's correction to mean anything."""
    import copy
    torch = torch_module()
    twin = copy.deepcopy(model).train()                  # the user's model and its buffers stay as they were
    dtype = next(twin.parameters()).dtype
    x = inputs(data, "train", dtype)[0][:examples]
    with torch.no_grad():
        try:
            first, second = twin(x), twin(x)
        except Exception as exc:
            raise MemlessError(f"the model cannot take a batch of inputs of shape {tuple(x.shape[1:])}: "
                               f"{type(exc).__name__}: {said(exc)}") from exc
    if not torch.equal(first, second):
        random = sorted({type(m).__name__ for m in model.modules() if "Dropout" in type(m).__name__})
        raise MemlessError(f"the model's training-mode output is random{' (' + ', '.join(random) + ')' if random else ''}"
                           ": the full-batch loss must be a function of the parameters for memless's correction; "
                           "build the model without dropout or other noise")


def inputs(data, which: str = "train", dtype=None, device: str = "cpu"):
    """The inputs and labels of ``data``'s training or test split as tensors, examples in their shape."""
    torch = torch_module()
    x, y = (data.x, data.y) if which == "train" else (data.x_test, data.y_test)
    x = torch.as_tensor(x, dtype=dtype or torch.float64, device=device).reshape(len(x), *data.input_shape)
    return x, torch.as_tensor(y, dtype=torch.long, device=device)


@dataclass
class Run:
    """Where full-batch training stopped and what was measured there."""

    steps: int                      #: steps taken to reach the threshold (or the cap)
    reached: bool                   #: the training loss fell below the threshold
    loss: float
    gradient: np.ndarray            #: the full-batch gradient at that point (flat)
    test_accuracy: float
    train_accuracy: float


def train_adam(model, data, *, lr: float, beta1: float, beta2: float, eps: float, threshold: float,
               max_steps: int, device: str = "cpu") -> Run:
    """Full-batch Adam as Cattaneo, Klusowski & Shigida (2023) run it (bias-corrected, eps inside
    the root) until the training loss falls below ``threshold`` (or ``max_steps``)."""
    torch = torch_module()
    dtype = next(model.parameters()).dtype
    model = model.to(device)
    x, y = inputs(data, "train", dtype, device)
    params = [p for p in model.parameters()]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    loss_fn = torch.nn.functional.cross_entropy
    step, reached = 0, False
    for step in range(max_steps + 1):
        loss = loss_fn(model(x), y)
        if float(loss.detach()) < threshold:
            reached = True
            break
        if step == max_steps:
            break
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            c1, c2 = 1 - beta1 ** (step + 1), 1 - beta2 ** (step + 1)
            for p, g, mi, vi in zip(params, grads, m, v):
                mi.mul_(beta1).add_(g, alpha=1 - beta1)
                vi.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                p.sub_(lr * (mi / c1) / torch.sqrt(vi / c2 + eps))
    loss = loss_fn(model(x), y)
    grads = torch.autograd.grad(loss, params)
    from ..frameworks.torch import flat
    gradient = flat(grads)
    return Run(step, reached, float(loss.detach()), gradient, accuracy(model, data, "test", device),
               accuracy(model, data, "train", device))


def accuracy(model, data, which: str = "test", device: str = "cpu") -> float:
    """The share of ``data``'s test (or training) examples the model classifies correctly."""
    torch = torch_module()
    x, y = inputs(data, which, next(model.parameters()).dtype, device)
    was = model.training
    model.eval()                                   # BatchNorm's running statistics, no dropout
    try:
        with torch.no_grad():
            predicted = model(x).argmax(dim=1)
    finally:
        model.train(was)
    return float((predicted == y).double().mean())


def objective_of(model, data, device: str = "cpu"):
    """The full-batch training loss as a memless objective, on a float64 copy of ``model`` on
    ``device`` (the model itself is left as it was: its device, dtype and parameters)."""
    import copy
    torch = torch_module()
    from ..frameworks.torch import objective
    twin = copy.deepcopy(model).to(device=device, dtype=torch.float64)
    return objective(twin, torch.nn.functional.cross_entropy, inputs(data, "train", torch.float64, device),
                     name=data.name)


def perturbed_norm(g: np.ndarray, eps: float) -> float:
    """||g||_{1,eps} = sum_i sqrt(g_i^2 + eps)."""
    return float(np.sum(np.sqrt(g ** 2 + eps)))


def excess(g: np.ndarray, eps: float) -> float:
    """sum_i (sqrt(g_i^2 + eps) - sqrt(eps)): the norm above its floor p sqrt(eps), computed without cancellation."""
    return float(np.sum(g ** 2 / (np.sqrt(g ** 2 + eps) + np.sqrt(eps))))


def fitted_slope(lrs, errors) -> float:
    """Least-squares slope of log(error) on log(h) (NaN where an error is not positive and finite)."""
    lrs, errors = np.asarray(lrs, dtype=float), np.asarray(errors, dtype=float)
    if len(lrs) < 2 or np.any(~(errors > 0)) or np.any(~np.isfinite(errors)):
        return float("nan")
    return float(np.polyfit(np.log(lrs), np.log(errors), 1)[0])


# ----------------------------------------------------------------------------
# Effect sizes and sentences decided by the data
# ----------------------------------------------------------------------------


@dataclass
class Trend:
    """How a measured quantity moves across a swept setting, against seed noise."""

    quantity: str
    change: float                   #: mean over seeds of (value at the last setting - value at the first)
    noise: float                    #: pooled seed standard deviation at a fixed setting
    effect: float                   #: change / noise (NaN where the noise is 0)
    monotone_seeds: int             #: seeds in which the value moves monotonically in the change's direction
    seeds: int
    expected: Optional[int]         #: the paper's direction (+1 rises, -1 falls), None if it claims none
    verdict: str                    #: "reproduced", "reversed", "not distinguishable from noise", ...

    def sentence(self, setting: str, claim: str) -> str:
        if self.seeds < 2:
            size = f"{self.change:+.3g} from the first to the last {setting} in one seed"
        else:
            size = (f"{self.change:+.3g} from the first to the last {setting}, {self.effect:+.1f} seed-sd "
                    f"(seed sd {self.noise:.2g}, {self.monotone_seeds} of {self.seeds} seeds monotone)")
        return f"{self.quantity} vs {setting}: {self.verdict} -- {size}; the claim: {claim}."


def seed_table(rows, quantity: str, key: str, settings) -> np.ndarray:
    """``table[seed, setting]`` of ``quantity`` from rows that carry ``seed`` and ``key`` (the swept setting)."""
    seeds = sorted({r["seed"] for r in rows})
    return np.array([[next(r[quantity] for r in rows if r["seed"] == s and r[key] == v) for v in settings]
                     for s in seeds], dtype=float)


#: |change| / seed-sd at or above which a trend is called an effect
EFFECT = 2.0
#: the fewest seeds whose spread is trusted for a verdict (two seeds' standard deviation is too unsure)
MIN_SEEDS = 3


def trend(quantity: str, table: np.ndarray, expected: Optional[int]) -> Trend:
    """``table[seed, setting]``: the trend of ``quantity`` across settings, decided by the numbers."""
    table = np.asarray(table, dtype=float)
    seeds = table.shape[0]
    change = float(np.mean(table[:, -1] - table[:, 0]))
    noise = float(np.sqrt(np.mean(np.var(table, axis=0, ddof=1)))) if seeds > 1 else float("nan")
    effect = change / noise if noise > 0 else (float("nan") if change == 0 else float(np.sign(change)) * np.inf)
    direction = np.sign(change)
    monotone = int(sum(np.all(np.sign(np.diff(row)) == direction) for row in table)) if direction else 0
    if not np.all(np.isfinite(table)):
        verdict = "not measured"
    elif seeds < 2:
        verdict = "one seed: no noise estimate, no verdict"
    elif seeds < MIN_SEEDS:
        verdict = f"{seeds} seeds: too few for a verdict (indicative only)"
    elif change == 0:
        verdict = "no change"
    elif abs(effect) < EFFECT or monotone < seeds:
        verdict = "not distinguishable from noise"
    elif expected is None:
        verdict = "a trend (the papers claim none)"
    else:
        verdict = "reproduced" if direction == expected else "reversed"
    return Trend(quantity, change, noise, float(effect), monotone, seeds, expected, verdict)
