"""Dataset service: tiny-imagenet-200 archive -> sharded TFRecords on the shared volume."""
