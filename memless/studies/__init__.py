"""Studies built on the engine: what the correction does along a run.

* :mod:`.trajectories` -- the optimizer's path, the memoryless paths, order studies;
* :mod:`.analysis` -- what memory does to the loss, measured (``analyze``, ``compare``,
  ``regime_map``): the data the report and the figures show;
* :mod:`.meanings` -- what each optimizer family's memory means for the loss (sharpness proxy,
  modified and implicit losses, the structure that decides a verdict), one table per family;
* :mod:`.cache` -- order studies kept on disk between command-line runs;
* :mod:`.modified` -- the modified equation and the implicit loss;
* :mod:`.minibatch` -- mini-batch training (Section 5.2);
* :mod:`.probe` -- measuring inside a user's own training loop.

Nothing here imports rich or matplotlib; :mod:`memless.show` presents the results.
"""
