"""``memless.minibatch``: mini-batch training, Section 5.2 (the code is in
:mod:`memless.studies.minibatch`)."""
from .studies.minibatch import *  # noqa: F401,F403
from .studies.minibatch import __all__  # noqa: F401
