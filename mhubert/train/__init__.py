"""HuBERT pretraining: the recipe (``config``), the :class:`~mhubert.train.trainer.Trainer`, its
checkpoints, callbacks and telemetry, and one run start to finish (``run.train``).

Nothing is imported here, so ``mhubert train --help`` stays free of torch.
"""
