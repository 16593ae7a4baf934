"""Everything memless does with PyTorch, in one import.

* :func:`objective` -- a ``torch.nn.Module`` and a loss function as a memless loss
  (:mod:`memless.frameworks.losses.torch`); :func:`flat` -- tensors as one NumPy vector;
* :class:`TorchOptimizer` -- a torch.optim class as a MemoryOptimizer
  (:mod:`memless.frameworks.optimizers.blackbox`);
* :class:`Compensated` -- a torch.optim optimizer that also subtracts ``c h M`` each step
  (:mod:`memless.frameworks.optimizers.torch`).
"""
from .losses.torch import flat, objective
from .optimizers.blackbox import TorchOptimizer
from .optimizers.torch import Compensated

__all__ = ["objective", "flat", "TorchOptimizer", "Compensated"]
