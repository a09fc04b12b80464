"""drag_ops/images.py: the one place images change between the engine's [-1, 1], [0, 1] and uint8."""

import numpy as np
import torch

from comfyui_drag.drag_ops.images import (engine_to_uint8, engine_to_unit, uint8_to_engine, uint8_to_unit,
                                          unit_to_engine, unit_to_uint8)


def test_every_uint8_value_survives_the_round_trip_through_the_engine_range():
    values = np.arange(256, dtype=np.uint8)
    image = np.stack([values.reshape(16, 16)] * 3, -1)  # [16, 16, 3]
    engine = uint8_to_engine(image)
    assert engine.shape == (1, 3, 16, 16) and float(engine.min()) == -1.0 and float(engine.max()) == 1.0
    assert np.array_equal(engine_to_uint8(engine)[0], image)
    assert np.array_equal(unit_to_uint8(uint8_to_unit(image)), image)


def test_a_batch_keeps_its_order_and_channels_move_as_each_layout_says():
    batch = np.random.default_rng(0).integers(0, 256, (2, 4, 5, 3), dtype=np.uint8)
    engine = uint8_to_engine(batch)
    assert engine.shape == (2, 3, 4, 5)
    assert np.array_equal(engine_to_uint8(engine), batch)
    unit = engine_to_unit(engine)  # ComfyUI's IMAGE layout
    assert unit.shape == (2, 4, 5, 3)
    assert torch.allclose(unit_to_engine(unit), engine, atol=1e-6)


def test_values_out_of_range_are_clamped_on_the_way_out():
    engine = torch.tensor([-3.0, -1.0, 0.0, 1.0, 3.0]).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    assert engine_to_unit(engine)[0, 0, :, 0].tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    assert engine_to_uint8(engine)[0, 0, :, 0].tolist() == [0, 0, 128, 255, 255]
    assert unit_to_uint8(np.array([-0.5, 0.5, 1.5])).tolist() == [0, 128, 255]
