"""What the trainer's worker processes run: the job kinds the runner knows and their functions.

- :mod:`.training`: a training run from start to end: train (``engine``), then the exports
  (``inference.export``) and the model card (``runs.card``).

This package's own ``__init__`` imports nothing (the app reads the kinds and targets here).
"""

#: The job kind of a training run, and the function its worker runs.
TRAINING_KIND = "train"
TRAINING_TARGET = "trainer_service.jobs.training:run_training"
