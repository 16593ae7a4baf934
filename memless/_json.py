"""Strict JSON for the results objects, private: one converter for every ``to_dict``."""
from __future__ import annotations

import enum
import math

import numpy as np


def strict(x):
    """JSON-safe: non-finite floats become None, enums their values, numpy scalars Python numbers."""
    if isinstance(x, enum.Enum):
        return x.value
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return strict(x.item())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: strict(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [strict(v) for v in x]
    return x
