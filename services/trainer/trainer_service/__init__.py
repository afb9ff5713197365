"""Trainer service: trains the bottleneck ResNet from the dataset service's shards."""
