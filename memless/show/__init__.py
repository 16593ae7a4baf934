"""Presentation: the rich terminal report (:mod:`.report`), matplotlib figures
(:mod:`.plot`, public as :mod:`memless.plot`) and the Jupyter views (:mod:`.jupyter`,
registered with :mod:`memless._views` when the package is imported).  Computes nothing
the studies do not.
"""
