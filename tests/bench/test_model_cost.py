"""bench.model_cost: multiply-adds counted from the layers a forward pass calls, and the memory of
one training step."""

from __future__ import annotations

import json

import keras

from bench.model_cost import count_macs, leaf_layers, main, measure_train_step_memory
from trainer_service.model.resnet import build_resnet


def test_macs_of_a_hand_counted_model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False)(inputs)  # 8*8 * 3*3*3*4
    x = keras.layers.Conv2D(2, 1, strides=2, use_bias=False)(x)  # 4*4 * 4*2
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(5)(x)  # 2*5
    model = keras.Model(inputs, outputs)
    assert count_macs(model) == 64 * 108 + 16 * 8 + 10


def test_the_blocks_sublayers_are_walked():
    model = build_resnet(4, 8, (1,))
    convs = [layer for layer, _ in leaf_layers(model) if isinstance(layer, keras.layers.Conv2D)]
    # tail conv, special bottleneck (3 + projection), bottleneck (3), downsample (3 + projection)
    assert len(convs) == 1 + 4 + 3 + 4


def test_memory_of_one_training_step_is_measured():
    # Width >= 16: TF 2.21's oneDNN CPU kernels corrupt the heap in the gradient of a 1x1/2
    # conv with fewer than 16 input channels at 64x64 (a TF bug; TF_ENABLE_ONEDNN_OPTS=0 avoids it).
    peak, method = measure_train_step_memory(build_resnet(10, 16, (1,)), 4, 10)
    assert isinstance(peak, int) and peak > 0
    assert method.startswith("cpu ")


def test_cli(capsys):
    assert main(["--width", "8", "--levels", "1", "--classes", "4", "--batch-size", "2"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["macs_per_image"] == count_macs(build_resnet(4, 8, (1,)))
    assert found["peak_memory_bytes"] > 0
