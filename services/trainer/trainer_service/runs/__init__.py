"""A run's bookkeeping, without Keras: its configuration, history, checkpoint index, resume
point, and the operations the API performs on runs.

The API process imports this package (never Keras, TensorFlow or JAX: the engine's imports would
claim a GPU beside a training worker); :mod:`trainer_service.engine` trains through it.
"""
