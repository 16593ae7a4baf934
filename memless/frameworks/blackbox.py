"""``memless.frameworks.blackbox``: optimizers memless did not write (the code is in
:mod:`memless.frameworks.optimizers.blackbox`)."""
from .optimizers.blackbox import (BatchedBlackBox, BlackBox, OptaxTransformation, StationarySums, StepFunction,
                                  TorchOptimizer)

__all__ = ["BlackBox", "BatchedBlackBox", "StepFunction", "TorchOptimizer", "OptaxTransformation",
           "StationarySums"]
