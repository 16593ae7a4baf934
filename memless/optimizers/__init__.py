"""The built-in optimizers: each in the momentum-variable form of Remark 3.2, except
Schedule-Free SGD, written as F^(n) over the history (Eq. 1): its memory does not decay.

:data:`BUILTIN` is the one list of them: the registry reads it directly (no
entry point, no reinstall for a new built-in); third-party optimizers come
through the ``memless.optimizers`` entry-point group.
"""
from .adam import Adam, AdamW, Adaptive, NAdam, RMSProp
from .lion import Lion
from .muon import Muon
from .schedule_free import ScheduleFreeSGD
from .sgd import GD, HeavyBall, Nesterov

BUILTIN = {cls.name: cls for cls in (GD, HeavyBall, Nesterov, Adam, AdamW, NAdam, RMSProp, Lion, Muon, ScheduleFreeSGD)}

__all__ = ["GD", "HeavyBall", "Nesterov", "Adam", "AdamW", "NAdam", "RMSProp", "Lion", "Muon", "ScheduleFreeSGD", "Adaptive", "BUILTIN"]
