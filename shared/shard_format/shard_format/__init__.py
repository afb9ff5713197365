"""The Tiny ImageNet shard format: one source of truth for both services.

- :mod:`shard_format.schema`     feature keys, schema version, shard and metadata file names
- :mod:`shard_format.metadata`   pydantic models of a prepared dataset (splits, shards, classes)
- :mod:`shard_format.encode`     ``serialize`` and the TFRecord framing for writers (no TF)
- :mod:`shard_format.records`    ``parse``/``decode``/``decode_batch`` for readers (TF)
- :mod:`shard_format.pipeline`   the tf.data builder for a split

The wire format only: what a reader does with the decoded images (standardizing, augmenting)
is the reader's (the trainer does it in its model). Importing this package imports neither
TensorFlow nor Keras; ``records`` and ``pipeline`` import TensorFlow when they are imported.
"""

from shard_format.schema import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION"]
