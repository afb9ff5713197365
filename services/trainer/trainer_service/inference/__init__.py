"""Using a trained model: classify images, export it for other runtimes.

- :mod:`.images`      decode any image Pillow reads into the model's 64x64 uint8 input (no Keras)
- :mod:`.classifier`  the API side of ``POST /v1/runs/{id}/predict``: the predictor process,
                      started on first use and replaced when it dies, and the bounded queue in
                      front of it (no Keras: the API process never loads it)
- :mod:`.wire`        the messages between the API process and the predictor (a Unix socket)
- :mod:`.server`      the predictor process (``python -m``; ONNX Runtime, no Keras)
- :mod:`.predictor`   what it runs: warm models, batching, top-k answers (also in-process)
- :mod:`.models`      the checkpoint exports it serves, made on first use, and their cache
- :mod:`.batching`    requests that arrive together share one model run
- :mod:`.classify`    the same code on a run folder in one process (``python -m``; ``tin
                      predict --local``)
- :mod:`.export`      the SavedModel and ONNX exports of a run, and the predictor's export of a
                      checkpoint (``python -m``; Keras on TensorFlow)
- :mod:`.process`     run one of those commands in a process of its own, read its JSON answer

Loading a saved model is the model's (``trainer_service.model.saved``); this package never
imports the training engine, and only :mod:`.export` imports Keras.
"""
