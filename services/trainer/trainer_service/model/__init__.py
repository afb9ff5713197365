"""The model: the bottleneck ResNet as Keras 3 layers, and every Keras object a run's saved files
name.

- :mod:`.architecture`  the shape, bounds, exact size and cost in closed form (no Keras: the API
                        process validates runs and answers the model report with it alone)
- :mod:`.blocks`        the residual blocks
- :mod:`.resnet`        ``build_resnet``: the network, uint8 images in, logits out
- :mod:`.preprocess`    ``Preprocess``: standardization and the training flip, the first layer
- :mod:`.augment`       ``Augment`` (training-only crops) and the test-time flip average
- :mod:`.schedule`      ``EpochSchedule``, the learning rate a checkpoint's optimizer holds
- :mod:`.saved`         loading what a run saved (importing it registers every class above)

This package's own ``__init__`` imports nothing, so importing ``model.architecture`` never
imports Keras.
"""
