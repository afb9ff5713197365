"""Using a trained model: classify images, export it for other runtimes, describe it.

- :mod:`.images`     decode any image Pillow reads into the model's 64x64 uint8 input (no Keras)
- :mod:`.classify`   top-k classes of images from a run's checkpoint (``python -m``; Keras)
- :mod:`.predictor`  the API side of ``POST /v1/runs/{id}/predict``: one classify process at a
                     time, on the CPU, with its limits (no Keras: the API process never loads it)
- :mod:`.export`     the SavedModel and ONNX exports of a run (``python -m``; Keras on TensorFlow)
- :mod:`.card`       the run's model card, ``model_card.json`` and ``MODEL.md`` (no Keras)
"""
