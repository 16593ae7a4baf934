"""The correction engine: M^(n)(theta) of Eq. (12) (Cattaneo & Shigida 2025) for any
optimizer, and the problem it is computed on.

* :mod:`.corrections` -- :func:`correction`, :func:`correction_terms`, :func:`memory_profile`;
* :mod:`.objective` -- a loss (callable, reference name or framework loss), its start,
  its derivatives, and the checks on theta and lr, set up once by ``problem``.
"""
from .corrections import CorrectionInfo, MemoryProfile, correction, correction_terms, history_entries, memory_profile

__all__ = ["correction", "correction_terms", "CorrectionInfo", "memory_profile", "MemoryProfile",
           "history_entries"]


def __getattr__(name: str):
    """The other names of 0.6's module ``memless.engine`` (``MAX_HISTORY``, ``terms_at``, ...), now in
    :mod:`memless.engine.corrections`: still read, with a DeprecationWarning, until 0.8."""
    from ..deprecation import warn
    from . import corrections
    if name.startswith("__") or not hasattr(corrections, name):
        raise AttributeError(f"module 'memless.engine' has no attribute {name!r}")
    warn(f"memless.engine.{name}", f"memless.engine.corrections.{name}")
    return getattr(corrections, name)
