"""Training with Darknet's semantics.

``run.train(TrainOptions(...))`` does what ``darknet detector train`` does, from the ``.data``/``.cfg``/``.weights``
files; the pieces are usable alone: ``schedule`` (learning rate), ``optim`` (``[net]`` settings, Darknet's SGD),
``loop.Trainer`` (iterations, evaluation, saving), ``checkpoint`` (file names, state, ``partial``), ``ema``, ``chart``
and ``distributed`` (DDP under torchrun).  Submodules are imported on demand, so ``schedule`` stays light.
"""
