"""The shapes-world scene generator: seeded, geometrically exact, and editable by re-rendering."""

import math

import numpy as np
import pytest

from workbench.shapes.scenes import (KINDS, Scene, Shape, color_mask, coverage, mask_centroid,
                                        random_scene, render, shape_centroid, shape_mask)

BG = ((0.4, 0.4, 0.45), (0.5, 0.45, 0.4))


def one_shape_scene(shape, size=64):
    return Scene(size, BG, 0.3, (shape,))


def test_same_seed_same_scene_and_pixels():
    a, b = random_scene(7), random_scene(7)
    assert a == b
    assert np.array_equal(render(a), render(b))
    assert random_scene(8) != a


def test_scenes_are_valid():
    for seed in range(40):
        scene = random_scene(seed, size=48)
        img = render(scene)
        assert img.shape == (48, 48, 3) and img.dtype == np.uint8
        assert 1 <= len(scene.shapes) <= 3
        for i, s in enumerate(scene.shapes):
            assert s.kind in KINDS
            # fully inside the image and not touching any other shape
            assert s.extent < s.center[0] < 48 - s.extent and s.extent < s.center[1] < 48 - s.extent
            for t in scene.shapes[i + 1:]:
                assert math.dist(s.center, t.center) > s.extent + t.extent


@pytest.mark.parametrize("kind", KINDS)
def test_shape_is_where_the_scene_says(kind):
    shape = Shape(kind, (1.0, 0.0, 0.0), (30.0, 25.0), 9.0, rotation=0.4, aspect=1.2)
    scene = one_shape_scene(shape)
    img = render(scene)
    mask = shape_mask(scene, 0)
    cx, cy = shape_centroid(scene, 0)
    assert abs(cx - 30.0) < 0.1 and abs(cy - 25.0) < 0.1  # the centre is the centroid for every kind
    cov = coverage(scene, 0)
    # fully covered pixels are exactly the shape's colour, uncovered ones are background,
    # and the anti-aliased edge lies in between
    assert (img[cov == 1.0] == (255, 0, 0)).all()
    assert (img[cov == 0.0][:, 0] < 160).all()
    found = color_mask(img, shape.color, tol=0.25)
    assert found[cov == 1.0].all() and not found[cov == 0.0].any()
    assert mask.sum() == pytest.approx(cov.sum(), abs=0.05 * cov.sum())


def test_shape_area_matches_geometry():
    r = 10.0
    areas = {"circle": math.pi * r * r, "square": 4 * r * r, "triangle": 3 * math.sqrt(3) / 4 * r * r}
    for kind, area in areas.items():
        scene = one_shape_scene(Shape(kind, (0.0, 1.0, 0.0), (32.0, 32.0), r, rotation=1.0))
        assert coverage(scene, 0).sum() == pytest.approx(area, rel=0.01)


def test_moving_a_shape_moves_its_mask_exactly():
    scene = random_scene(3)
    dx, dy = 5, -4
    moved = scene.with_shape(0, scene.shapes[0].moved(dx, dy))
    before, after = shape_mask(scene, 0), shape_mask(moved, 0)
    if len(scene.shapes) == 1:  # nothing can occlude it: an exact integer shift
        assert np.array_equal(np.roll(before, (dy, dx), axis=(0, 1)), after)
    (x0, y0), (x1, y1) = mask_centroid(before), mask_centroid(after)
    assert (x1 - x0, y1 - y0) == pytest.approx((dx, dy), abs=0.05)
    # the other shapes did not change
    for i in range(1, len(scene.shapes)):
        assert np.array_equal(shape_mask(scene, i), shape_mask(moved, i))


def test_integer_move_is_an_exact_pixel_shift():
    shape = Shape("triangle", (0.1, 0.2, 1.0), (24.3, 30.7), 8.0, rotation=0.2)
    a = coverage(one_shape_scene(shape), 0)
    b = coverage(one_shape_scene(shape.moved(7, 3)), 0)
    assert np.allclose(np.roll(a, (3, 7), axis=(0, 1)), b)


def test_rescale_and_occlusion():
    big = Shape("circle", (1.0, 1.0, 0.0), (32.0, 32.0), 6.0)
    scene = one_shape_scene(big)
    assert coverage(scene.with_shape(0, big.scaled(1.5)), 0).sum() == pytest.approx(2.25 * coverage(scene, 0).sum(), rel=0.02)
    # a shape drawn later hides what is below it: the lower shape's visible mask loses that part
    cover = Shape("square", (0.0, 0.0, 1.0), (36.0, 32.0), 4.0)
    stacked = Scene(64, BG, 0.0, (big, cover))
    assert coverage(stacked, 0).sum() < coverage(stacked, 0, visible=False).sum() - 40
    assert not (shape_mask(stacked, 0) & shape_mask(stacked, 1)).any()
