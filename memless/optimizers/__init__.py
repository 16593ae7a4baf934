"""The built-in optimizers, each in the momentum-variable form of Remark 3.2.

They are registered through the ``memless.optimizers`` entry-point group in
memless's own ``setup.cfg``, exactly like third-party plugins;
:data:`BUILTIN` is the same table, used only when memless runs from a source
tree that was never installed.
"""
from .adam import Adam, AdamW, NAdam, RMSProp
from .lion import Lion
from .sgd import GD, HeavyBall, Nesterov

BUILTIN = {cls.name: cls for cls in (GD, HeavyBall, Nesterov, Adam, AdamW, NAdam, RMSProp, Lion)}

__all__ = ["GD", "HeavyBall", "Nesterov", "Adam", "AdamW", "NAdam", "RMSProp", "Lion", "BUILTIN"]
