"""``memless.plot``: the figures (the code is in :mod:`memless.show.plot`).

>>> import memless.plot                                     # doctest: +SKIP
>>> memless.plot.regime_map("adamw").savefig("map.png")     # doctest: +SKIP
"""
from .show.plot import *  # noqa: F401,F403
from .show.plot import __all__  # noqa: F401
