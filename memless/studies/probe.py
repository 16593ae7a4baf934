"""A training probe: call it from your own training loop, and it logs what the optimizer's
memory does to the loss as training goes.

>>> import numpy as np, memless
>>> probe = memless.Probe(memless.get_optimizer("adamw"), "curvy", lr=1e-3, every=2)
>>> for step in range(4):
...     row = probe.step(np.array([0.3, 0.5, -0.4]) * (1 - 0.1 * step))
>>> len(probe.records), sorted(probe.records[0])[:3]
(2, ['M/F', 'N', 'regime'])

Every ``every`` calls it measures, at the current parameters: each channel's signed
strength <grad N, M_l>/|<grad N, F>| (> 0 regularizing), |M|/|F| and the regime it implies
(the first-order picture needs |M|/|F| small: "first-order" at most 0.2, else "outside"),
and the sharpness proxy N itself.  ``to_csv``/``to_json`` write the log; with matplotlib,
:func:`memless.plot.probe` draws it.  Cost per measurement: one correction (one gradient and
one Hessian-vector product shared by the channels) and one gradient of N (a second HVP).
"""
from __future__ import annotations

import csv
import json
from typing import Dict, List, Mapping, Optional

import numpy as np

from .._json import strict
from ..checks import check_lr, check_n
from ..engine.objective import Objective, objective, problem, resolve_loss
from ..errors import MemlessError
from . import meanings
from .analysis import measure_point

#: |M|/|F| at most this: the first-order picture is expected to hold (as in the report)
FIRST_ORDER = 0.2


def framework_parameters(theta):
    """``theta`` as memless takes it: a PyTorch model, ``model.parameters()`` or
    ``model.named_parameters()`` become one flat float64 vector of the trainable parameters in
    order; tensors in a dict become arrays; anything else is returned as it is."""
    if callable(getattr(theta, "named_parameters", None)):
        theta = [p for _, p in theta.named_parameters() if getattr(p, "requires_grad", True)]
    elif not isinstance(theta, (np.ndarray, Mapping, str, bytes)) and hasattr(theta, "__iter__") \
            and not hasattr(theta, "detach") and not hasattr(theta, "__array__"):
        theta = list(theta)
        if theta and all(isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str) for item in theta):
            theta = [p for _, p in theta if getattr(p, "requires_grad", True)]
    if isinstance(theta, list) and theta and all(hasattr(p, "detach") for p in theta):
        return np.concatenate([_array(p).ravel() for p in theta])
    if isinstance(theta, Mapping) and any(hasattr(v, "detach") for v in theta.values()):
        return {name: _array(value) if hasattr(value, "detach") else value for name, value in theta.items()}
    return _array(theta) if hasattr(theta, "detach") else theta


def _array(tensor) -> np.ndarray:
    return np.asarray(tensor.detach().cpu().double().numpy())


class Probe:
    """Log, every ``every`` calls of :meth:`step`, what memory does at the current parameters.

    ``loss``: anything memless takes as a loss (an autograd callable, a reference-loss name,
    :class:`~memless.frameworks.ExternalLoss` or a PyTorch objective); for a mini-batch
    loop, pass the loss whose sharpness you want to follow (e.g. a fixed probe batch).
    """

    def __init__(self, optimizer, loss, *, lr: float, every: int = 100, theta=None):
        self.optimizer, self.loss, start, self.loss_name = problem(optimizer, loss, theta, need_theta=False)
        self.lr = check_lr(lr)
        self.every = check_n(every, allow_none=False, name="every")
        if self.every < 1:
            raise MemlessError(f"every must be an integer >= 1 (measure every that many steps), got {every!r}")
        self.calls = 0
        self.records: List[Dict] = []
        self._objective: Optional[Objective] = None

    def step(self, theta, step: Optional[int] = None) -> Optional[Dict]:
        """Count one training step; every ``every`` steps measure at ``theta`` and return the new
        record (else None).  ``theta``: a flat vector, a dict of arrays, or what a PyTorch loop has --
        the model itself, ``model.parameters()`` or ``model.named_parameters()`` (its trainable
        parameters in order, as :func:`memless.frameworks.torch.objective` flattens them)."""
        step = None if step is None else check_n(step, allow_none=False, name="step")
        self.calls += 1
        if (self.calls - 1) % self.every:
            return None
        _, theta, _ = resolve_loss(self.loss, framework_parameters(theta))
        if self._objective is None:
            self._objective = objective(self.loss, theta)
        obj = objective(self._objective, theta, linearize=True)
        measured = measure_point(self.optimizer, obj, theta, self.lr)
        with np.errstate(all="ignore"):       # N from the gradient already computed
            N = float(meanings.sharpness_proxy(self.optimizer, lambda t: measured.gradient, self._objective.loss)(theta))
        ratio = measured.ratio
        record = {"step": self.calls - 1 if step is None else step, "N": N, "M/F": ratio,
                  "regime": "first-order" if ratio <= FIRST_ORDER else "outside"}
        strengths = measured.strengths
        for name, value in strengths.items():
            record[f"strength:{name}"] = value
        record["strength"] = sum(measured.along_M.values()) / (measured.along_F or 1.0)
        self.records.append(record)
        return record

    def __repr__(self) -> str:
        head = f"Probe({self.optimizer.label} on {self.loss_name}, lr={self.lr:g}, every {self.every} steps: " \
               f"{self.calls} steps, {len(self.records)} records"
        if not self.records:
            return head + ")"
        last = self.records[-1]
        return (head + f"; at step {last['step']}: |M|/|F| = {last['M/F']:.3g} ({last['regime']}), "
                f"strength {last['strength']:+.3g}, N = {last['N']:.4g})")

    # -- the log ------------------------------------------------------------------

    def to_csv(self, path) -> str:
        """Write the records as CSV (one row per measurement), atomically: a temporary file in the
        same folder renamed into place, so a failed write leaves an existing file as it was."""
        from ..files import check_output_path, write_atomic
        path = check_output_path(path, "path")
        if not self.records:
            raise MemlessError("the probe has no records yet: call probe.step(params) first")

        def write(fh):
            writer = csv.DictWriter(fh, fieldnames=list(self.records[0]))
            writer.writeheader()
            writer.writerows(self.records)
        return write_atomic(path, write, binary=False)

    def to_json(self, path=None) -> str:
        """The records as strict JSON (written atomically to ``path`` if given)."""
        from ..files import check_output_path, write_atomic
        if path is not None:
            path = check_output_path(path, "path")
        text = json.dumps(strict({"optimizer": self.optimizer.label, "loss": self.loss_name, "lr": self.lr,
                                  "every": self.every, "records": self.records}), indent=2)
        if path is not None:
            write_atomic(path, lambda fh: fh.write(text), binary=False)
        return text
