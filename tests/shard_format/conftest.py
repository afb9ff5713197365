"""Fixtures of the shared package's tests."""

import numpy as np
import pytest

from tests.utils.shards import jpeg_bytes


@pytest.fixture
def toy_records():
    """17 records of random 64x64 RGB images with labels 0..4 (17 into 3 shards is uneven)."""
    rng = np.random.default_rng(0)
    records = []
    for i in range(17):
        pixels = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
        label = i % 5
        records.append((jpeg_bytes(pixels), label, f"n0000000{label}", f"img_{i}.JPEG"))
    return records
