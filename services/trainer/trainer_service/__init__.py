"""Trainer service: trains the bottleneck ResNet from the dataset service's shards.

Layers, each importing only those below it (``tests/packaging/test_imports.py`` checks):

- ``api/``, ``main``, ``jobs``, ``predict``, ``saved``: the routes, the app, the job function
  the worker runs, the test-set predictions CLI, loading what a run saved;
- ``engine/``: Keras: the training loop, its callbacks, runtime, schedule, input pipelines,
  evaluation (imported by the worker only);
- ``runs/``: a run's bookkeeping without Keras: its configuration, history, checkpoint index,
  resume point, the operations behind the routes (the API process imports these);
- ``model/``: the ResNet as Keras layers (imports neither ``runs`` nor ``engine``);
- ``architecture``, ``settings``, ``schemas``: shape arithmetic, the service's settings, the
  API's response models (no Keras).
"""
