"""Trainer service: trains the bottleneck ResNet from the dataset service's shards.

Its rooms, each importing only those below it (``tests/packaging/test_imports.py`` checks every
import, lazy ones included, and that the drawing has no arrow running up):

- ``main``, ``__main__``: the app and its entry point;
- ``api/``: the routes, the API's request and response models (``schemas``) and how a run is
  presented;
- ``sweeps/``: searches over run settings (Optuna), run by the service: each trial a run it
  queues; no Keras;
- ``jobs/``: what a worker process runs: a training run from start to end (train, export, model
  card); its ``__init__`` names the job kinds the API queues;
- ``engine/`` (Keras: the training loop, its callbacks, runtime, input pipelines, evaluation)
  and ``inference/`` (using a trained model: classify images, the exports), side by side:
  neither imports the other;
- ``runs/``: a run's bookkeeping without Keras: its configuration, history, checkpoint index,
  resume point, model card, the checks behind the routes;
- ``model/``: the model graph and every Keras object a saved file names (``architecture`` is
  its shape arithmetic without Keras, all the API process imports of it);
- ``settings``: the service's settings.

:data:`TENSORFLOW_ENV` is set by every entry point that may import TensorFlow (the worker, the
export process, the evaluate command) before it does.
"""

#: TensorFlow 2.21's oneDNN CPU kernels corrupt the heap ("double free or corruption", SIGSEGV)
#: when training this pre-activation ResNet without XLA; the plain Eigen kernels are fine. The
#: value is read once, when TensorFlow is imported.
TENSORFLOW_ENV = {"TF_ENABLE_ONEDNN_OPTS": "0"}
