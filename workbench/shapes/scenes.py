"""Synthetic scenes: a few flat shapes on a gently graded background.

A scene is plain data (shapes with kind, colour, centre, size, rotation, aspect), rendered by one
function, so an edit (move, rescale, deform) is a change to the data and its ground truth is a
re-render. Coordinates are image pixels (x, y) with (0, 0) the top-left corner of the image, so
pixel (i, j) covers [j, j+1) x [i, i+1) and its centre is (j + 0.5, i + 0.5).
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, field, replace

import numpy as np

from comfyui_drag.drag_ops.images import unit_to_uint8

KINDS = ("circle", "square", "triangle")


@dataclass(frozen=True)
class Shape:
    kind: str  # one of KINDS
    color: tuple[float, float, float]  # RGB in [0, 1]
    center: tuple[float, float]  # (x, y) pixels; the centroid for every kind
    size: float  # radius in pixels: circle radius, square half-side, triangle circumradius
    rotation: float = 0.0  # radians
    aspect: float = 1.0  # width / height stretch of the shape's own frame (area kept)

    def moved(self, dx: float, dy: float) -> "Shape":
        return replace(self, center=(self.center[0] + dx, self.center[1] + dy))

    def scaled(self, factor: float) -> "Shape":
        return replace(self, size=self.size * factor)

    @property
    def extent(self) -> float:
        """Radius of a circle around the centre that contains the whole shape."""
        unit = math.sqrt(2.0) if self.kind == "square" else 1.0
        return self.size * unit * math.sqrt(max(self.aspect, 1.0 / self.aspect))


@dataclass(frozen=True)
class Scene:
    size: int  # images are size x size
    background: tuple[tuple[float, float, float], tuple[float, float, float]]  # colour at start, end
    gradient_angle: float  # direction of the background gradient, radians
    shapes: tuple[Shape, ...] = field(default_factory=tuple)  # drawn in order, later on top

    def with_shape(self, index: int, shape: Shape) -> "Scene":
        shapes = list(self.shapes)
        shapes[index] = shape
        return replace(self, shapes=tuple(shapes))


# -- rendering --------------------------------------------------------------------------------

def _grid(size: int, supersample: int) -> tuple[np.ndarray, np.ndarray]:
    c = (np.arange(size * supersample, dtype=np.float64) + 0.5) / supersample
    return np.meshgrid(c, c)  # x varies along columns, y along rows


def _inside(shape: Shape, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Boolean mask of sample points inside the shape."""
    dx, dy = x - shape.center[0], y - shape.center[1]
    # into the shape's own frame: undo rotation (screen y points down), then undo the stretch
    c, s = math.cos(shape.rotation), math.sin(shape.rotation)
    u = (c * dx - s * dy) / (shape.size * math.sqrt(shape.aspect))
    v = (s * dx + c * dy) / (shape.size / math.sqrt(shape.aspect))
    if shape.kind == "circle":
        return u * u + v * v <= 1.0
    if shape.kind == "square":
        return (np.abs(u) <= 1.0) & (np.abs(v) <= 1.0)
    if shape.kind == "triangle":
        # equilateral, apex up, centroid at the origin: base at v = 0.5, apex at v = -1
        return (v <= 0.5) & (math.sqrt(3.0) * np.abs(u) <= v + 1.0)
    raise ValueError(f"unknown shape kind {shape.kind!r}; expected one of {KINDS}")


def _downsample(a: np.ndarray, supersample: int) -> np.ndarray:
    h, w = a.shape[0] // supersample, a.shape[1] // supersample
    return a.reshape(h, supersample, w, supersample, *a.shape[2:]).mean(axis=(1, 3))


def coverage(scene: Scene, index: int, supersample: int = 4, visible: bool = True) -> np.ndarray:
    """Fraction of each pixel covered by shape ``index`` [H, W] in [0, 1].

    visible=True removes what later (higher) shapes hide, so this is what the image shows.
    """
    x, y = _grid(scene.size, supersample)
    cov = _inside(scene.shapes[index], x, y)
    if visible:
        for above in scene.shapes[index + 1:]:
            cov &= ~_inside(above, x, y)
    return _downsample(cov.astype(np.float64), supersample)


def render(scene: Scene, supersample: int = 4) -> np.ndarray:
    """The scene as a uint8 RGB image [H, W, 3], anti-aliased by supersampling."""
    x, y = _grid(scene.size, supersample)
    # background: linear blend of the two colours along the gradient direction, 0..1 across the image
    d = np.array([math.cos(scene.gradient_angle), math.sin(scene.gradient_angle)])
    proj = (x - scene.size / 2) * d[0] + (y - scene.size / 2) * d[1]
    span = scene.size / 2 * (abs(d[0]) + abs(d[1]))
    w = ((proj / span + 1.0) / 2.0)[..., None]
    c0, c1 = (np.asarray(c, dtype=np.float64) for c in scene.background)
    img = (1.0 - w) * c0 + w * c1
    for shape in scene.shapes:
        img[_inside(shape, x, y)] = shape.color
    img = _downsample(img, supersample)
    return unit_to_uint8(img)


# -- where a shape is --------------------------------------------------------------------------

def shape_mask(scene: Scene, index: int, threshold: float = 0.5) -> np.ndarray:
    """Boolean [H, W] mask of the visible pixels of shape ``index`` (covered more than threshold)."""
    return coverage(scene, index) > threshold


def mask_centroid(mask: np.ndarray) -> tuple[float, float] | None:
    """Centroid (x, y) in pixels of a boolean or weight mask; None if empty."""
    m = np.asarray(mask, dtype=np.float64)
    total = m.sum()
    if total <= 0:
        return None
    ys, xs = np.indices(m.shape)
    return float((m * (xs + 0.5)).sum() / total), float((m * (ys + 0.5)).sum() / total)


def shape_centroid(scene: Scene, index: int) -> tuple[float, float] | None:
    """Centroid of what is visible of shape ``index`` (its centre when nothing hides it)."""
    return mask_centroid(coverage(scene, index))


def color_mask(image: np.ndarray, color: tuple[float, float, float], tol: float = 0.2) -> np.ndarray:
    """Pixels of a rendered or generated uint8 image within ``tol`` (RGB distance in [0, 1] units)
    of ``color``: where a shape of that colour is in an image whose scene is unknown (a model's output)."""
    diff = image.astype(np.float64) / 255.0 - np.asarray(color, dtype=np.float64)
    return np.sqrt((diff ** 2).sum(axis=-1)) <= tol


# -- random scenes -----------------------------------------------------------------------------

def random_color(rng: np.random.Generator, hue: float | None = None) -> tuple[float, float, float]:
    """A saturated, bright colour (optionally of a given hue in [0, 1))."""
    h = rng.uniform() if hue is None else hue
    return colorsys.hsv_to_rgb(h, rng.uniform(0.75, 1.0), rng.uniform(0.8, 1.0))


def random_background(rng: np.random.Generator):
    """Two close, muted colours and a direction: a gentle gradient that never looks like a shape."""
    h, s, v = rng.uniform(), rng.uniform(0.05, 0.3), rng.uniform(0.3, 0.75)
    c0 = colorsys.hsv_to_rgb(h, s, v)
    c1 = colorsys.hsv_to_rgb((h + rng.uniform(-0.08, 0.08)) % 1.0, float(np.clip(s + rng.uniform(-0.1, 0.1), 0, 0.35)),
                             float(np.clip(v + rng.uniform(-0.15, 0.15), 0.25, 0.8)))
    return (c0, c1), rng.uniform(0, 2 * math.pi)


def random_shape(rng: np.random.Generator, image_size: int, kind: str | None = None,
                 color=None, size_range=(0.11, 0.2)) -> Shape:
    """A shape somewhere fully inside the image; size_range is a fraction of the image size."""
    kind = kind or KINDS[rng.integers(len(KINDS))]
    size = rng.uniform(*size_range) * image_size
    if kind == "triangle":
        size *= 1.25  # a triangle covers less of its circumcircle; keep its area comparable
    # a third are stretched; rotation is free (a square turned by 45 degrees is a diamond)
    aspect = float(np.exp(rng.uniform(-0.35, 0.35))) if rng.uniform() < 0.33 else 1.0
    shape = Shape(kind, color or random_color(rng), (0.0, 0.0), size, rng.uniform(0, 2 * math.pi), aspect)
    margin = shape.extent + 1.0
    return replace(shape, center=tuple(rng.uniform(margin, image_size - margin, size=2)))


def random_scene(seed_or_rng, size: int = 64, max_shapes: int = 3, min_shapes: int = 1,
                 max_tries: int = 100) -> Scene:
    """A seeded scene of min..max shapes that do not overlap and have well separated hues."""
    rng = np.random.default_rng(seed_or_rng)
    background, angle = random_background(rng)
    n = int(rng.integers(min_shapes, max_shapes + 1))
    shapes, hues = [], []
    for _ in range(max_tries):
        if len(shapes) == n:
            break
        hue = rng.uniform()
        if any(min(abs(hue - h), 1 - abs(hue - h)) < 0.12 for h in hues):
            continue
        cand = random_shape(rng, size, color=random_color(rng, hue))
        if all(math.dist(cand.center, s.center) > cand.extent + s.extent + 1.0 for s in shapes):
            shapes.append(cand)
            hues.append(hue)
    return Scene(size, background, angle, tuple(shapes))


def scene_images(seeds, size: int = 64) -> np.ndarray:
    """Rendered scenes for a sequence of seeds, uint8 [N, H, W, 3]."""
    return np.stack([render(random_scene(int(s), size)) for s in seeds])
