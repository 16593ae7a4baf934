"""Optimizers written outside memless: a step function, a torch.optim class or an optax
transformation as a :class:`~memless.MemoryOptimizer` (:mod:`.blackbox`), and a
torch.optim optimizer that also applies memless's correction (:mod:`.torch`)."""
