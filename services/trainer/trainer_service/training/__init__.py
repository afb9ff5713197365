"""Training: config, learning-rate schedule, run folder and checkpoints, callbacks, the loop.

Only :mod:`.config`, :mod:`.checkpoints`, :mod:`.history` and :mod:`.files` are imported by the API
process; they import neither TensorFlow nor Keras (config validates shapes with
``trainer_service.architecture``; ``tests/trainer/test_architecture.py`` checks it).
"""
