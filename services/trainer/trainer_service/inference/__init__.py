"""Using a trained model: classify images, export it for other runtimes.

- :mod:`.images`      decode any image Pillow reads into the model's 64x64 uint8 input (no Keras)
- :mod:`.classify`    top-k classes of images from a run's checkpoint (``python -m``; Keras)
- :mod:`.classifier`  the API side of ``POST /v1/runs/{id}/predict``: one classify process at a
                      time, on the CPU, with its limits (no Keras: the API process never loads it)
- :mod:`.export`      the SavedModel and ONNX exports of a run (``python -m``; Keras on TensorFlow)
- :mod:`.process`     run one of those commands in a process of its own, read its JSON answer

Loading a saved model is the model's (``trainer_service.model.saved``); this package never
imports the training engine.
"""
