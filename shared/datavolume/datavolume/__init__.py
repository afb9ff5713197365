"""The shared volume: the contract between the dataset service, the trainer and the client tools.

- :mod:`datavolume.layout`    ``DataRoot``: where everything lives (the layout, documented once)
- :mod:`datavolume.datasets`  opening a ready dataset; staging and publishing a new version
- :mod:`datavolume.runs`      ``RunFolder``: the files of one training run
- :mod:`datavolume.files`     crash-safe writes (temp file + rename), JSON reads, checksums

Imports neither TensorFlow nor Keras.
"""

from datavolume.layout import DataRoot, OutsideRoot
from datavolume.runs import RunFolder

__all__ = ["DataRoot", "OutsideRoot", "RunFolder"]
