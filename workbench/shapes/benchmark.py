"""A drag benchmark with exact ground truth, on the shapes world.

Each task is a scene, the scene with the edit done (the ground truth, re-rendered), the
handle/target pairs and the mask of the region allowed to change. Kinds:

- ``move``: relocate one shape 8-16 px; the handle at its centre or near its edge; some tasks
  put a look-alike (same kind and colour) next to it, the case FreeDrag and StableDrag address;
- ``rescale``: two handles on opposite sides pulled apart (or together) by the scale factor;
- ``deform``: stretch along the shape's own axis, handles at both ends.

Where the dragged shape went is measured from the output image: pixels are labelled by the
scene's known colours, connected regions are matched to the ground-truth shapes, and each handle
is mapped through the matched region's displacement (the affine map matching the region's first
and second moments in the input and the output). Points here are scene coordinates (pixel centre
at j + 0.5); the engine gets them through world.to_engine_xy.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from .. import metrics
from comfyui_drag.drag_ops.points import DragPoints
from . import world
from .scenes import KINDS, Scene, Shape, _inside, coverage, random_scene, render, shape_mask

VARIANTS = ("move-centre", "move-edge", "move-lookalike", "rescale",
            "move-centre", "move-edge", "move-lookalike", "deform")
MOVE_RANGE = (8.0, 16.0)  # pixels
MASK_MARGIN = 3  # pixels around the shape's start and end that may change
MIN_OUTLINE_IOU = 0.7  # overlap of a region with the best outline of its kind
COLOR_TOL = 0.25  # RGB distance in [0, 1] units to a bg -> colour blend that still counts as that colour


@dataclass
class Task:
    name: str
    kind: str  # "move", "rescale", "deform"
    scene: Scene
    edited: Scene  # the ground truth
    index: int  # the dragged shape
    handles: tuple  # scene coordinates
    targets: tuple
    mask: np.ndarray = field(repr=False)  # [H, W] bool, True = may change
    lookalike: int | None = None  # index of the look-alike shape, if any

    def points(self) -> DragPoints:
        return DragPoints(tuple(map(world.to_engine_xy, self.handles)), tuple(map(world.to_engine_xy, self.targets)))

    def engine_mask(self):
        """The mask as the engine takes it: float [H, W], 1 = may change."""
        import torch
        return torch.from_numpy(self.mask.astype(np.float32))

    def describe(self) -> dict:
        s = self.scene.shapes[self.index]
        return {"name": self.name, "kind": self.kind, "shape": s.kind, "lookalike": self.lookalike is not None,
                "handles": [list(map(float, h)) for h in self.handles],
                "targets": [list(map(float, t)) for t in self.targets],
                "engine_points": self.points().alternating()}


# -- task generation -------------------------------------------------------------------------------

def edge_point(shape: Shape, angle: float, inset: float = 1.5) -> tuple[float, float]:
    """The point ``inset`` px inside the shape's boundary on the ray from its centre at ``angle``."""
    c, d = shape.center, (math.cos(angle), math.sin(angle))
    r = np.linspace(0, shape.extent + 1, 400)
    inside = _inside(shape, c[0] + r * d[0], c[1] + r * d[1])
    edge = r[np.argmin(inside)] if not inside.all() else r[-1]
    r = max(edge - inset, 0.0)
    return c[0] + r * d[0], c[1] + r * d[1]


def _mask(scene: Scene, edited: Scene, index: int) -> np.ndarray:
    m = shape_mask(scene, index) | shape_mask(edited, index)
    return ndimage.binary_dilation(m, iterations=MASK_MARGIN)


def _move(rng, scene: Scene, index: int):
    """A random clean displacement of shape ``index``, or None."""
    shape = scene.shapes[index]
    for _ in range(24):
        dist, a = rng.uniform(*MOVE_RANGE), rng.uniform(0, 2 * math.pi)
        d = (dist * math.cos(a), dist * math.sin(a))
        if all(world.fits(scene, index, shape.moved(f * d[0], f * d[1])) for f in (0.5, 1.0)):
            return d
    return None


def _with_lookalike(rng, scene: Scene, index: int, d) -> tuple[Scene, int] | None:
    """The scene plus a shape of the same kind and colour just beside the dragged one's start or
    end, across the direction of the move (so the move itself never runs into it)."""
    shape = scene.shapes[index]
    twin = replace(shape, size=shape.size * rng.uniform(0.85, 1.0), rotation=rng.uniform(0, 2 * math.pi))
    n = np.array([-d[1], d[0]]) / math.hypot(*d) * rng.choice([-1.0, 1.0])
    anchor = np.array(shape.center) + (np.array(d) if rng.uniform() < 0.5 else 0.0)
    gap = rng.uniform(2.0, 5.0)
    twin = replace(twin, center=tuple(anchor + n * (shape.extent + twin.extent + gap)))
    grown = replace(scene, shapes=scene.shapes + (twin,))
    j = len(grown.shapes) - 1
    if not world.fits(grown, j, twin, margin=1.0):
        return None
    moved = shape.moved(*d)
    if not all(world.fits(grown, index, shape.moved(f * d[0], f * d[1]), margin=1.5) for f in (0.5, 1.0)):
        return None
    if math.dist(moved.center, twin.center) <= moved.extent + twin.extent + 1.5:
        return None
    return grown, j


def make_task(seed: int, variant: str, number: int = 0) -> Task:
    rng = np.random.default_rng([seed, number])
    for _ in range(500):
        scene = random_scene(rng, max_shapes=2 if variant == "move-lookalike" else 3)
        index = int(rng.integers(len(scene.shapes)))
        shape = scene.shapes[index]
        lookalike = None
        if variant.startswith("move"):
            d = _move(rng, scene, index)
            if d is None:
                continue
            if variant == "move-lookalike":
                grown = _with_lookalike(rng, scene, index, d)
                if grown is None:
                    continue
                scene, lookalike = grown
            if variant == "move-edge":
                h = edge_point(shape, rng.uniform(0, 2 * math.pi))
            else:
                h = shape.center
            edited = scene.with_shape(index, shape.moved(*d))
            handles, targets, kind = (h,), ((h[0] + d[0], h[1] + d[1]),), "move"
        else:
            if variant == "rescale":
                f = rng.uniform(1.35, 1.6) if rng.uniform() < 0.6 else rng.uniform(0.6, 0.7)
                new, angle = shape.scaled(f), rng.uniform(0, 2 * math.pi)
                scale = np.diag([f, f])
            else:  # deform: stretch (or squash) along the shape's own first axis, area not kept
                f = rng.uniform(1.4, 1.7) if rng.uniform() < 0.7 else rng.uniform(0.6, 0.7)
                new = replace(shape, size=shape.size * math.sqrt(f), aspect=shape.aspect * f)
                angle = -shape.rotation  # the frame's u axis is (cos r, -sin r) on screen
                u = np.array([math.cos(angle), math.sin(angle)])
                scale = np.eye(2) + (f - 1) * np.outer(u, u)
            if not world.fits(scene, index, new):
                continue
            c = np.array(shape.center)
            handles = tuple(edge_point(shape, a) for a in (angle, angle + math.pi))
            targets = tuple(tuple(c + scale @ (np.array(h) - c)) for h in handles)
            if min(math.dist(h, t) for h, t in zip(handles, targets)) < 2.5:
                continue
            edited, kind = scene.with_shape(index, new), variant
        name = f"{number:03d}-{variant}"
        return Task(name, kind, scene, edited, index, tuple(map(tuple, handles)), tuple(map(tuple, targets)),
                    _mask(scene, edited, index), lookalike)
    raise RuntimeError(f"could not make a {variant} task from seed {seed}, number {number}")


def demo_task(seed: int = 0) -> Task:
    """The README's demo as a task: world.demo_scene's largest shape moved by its centre, with the
    mask a user would paint (the shape at its start and end, grown by MASK_MARGIN)."""
    scene = world.demo_scene(seed)
    index, d = world.demo_move(scene)
    shape = scene.shapes[index]
    h = shape.center
    edited = scene.with_shape(index, shape.moved(*d))
    return Task("demo", "move", scene, edited, index, (tuple(h),), ((h[0] + d[0], h[1] + d[1]),),
                _mask(scene, edited, index))


def make_tasks(n: int, seed: int = 0, variants=VARIANTS) -> list[Task]:
    """n tasks cycling through ``variants`` (6 of every 8 are moves), deterministic in (n, seed)."""
    return [make_task(seed, variants[i % len(variants)], i) for i in range(n)]


# -- finding the shapes in an image ---------------------------------------------------------------------

def _background(scene: Scene) -> np.ndarray:
    return render(replace(scene, shapes=())).astype(np.float64) / 255.0


def _palette(scene: Scene) -> list[tuple]:
    out = []
    for s in scene.shapes:
        if s.color not in out:
            out.append(s.color)
    return out


def label_colours(scene: Scene, image) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: the index into _palette(scene) of the shape colour it shows (-1: background or a
    colour not in the scene), and whether it is "foreign" (neither the background, a palette colour,
    nor an anti-aliased blend of the two)."""
    img, bg = metrics.as_float01(image), _background(scene)
    palette = _palette(scene)
    if not palette:
        return np.full(img.shape[:2], -1), np.linalg.norm(img - bg, axis=-1) > COLOR_TOL
    t_all, d_all = [], []
    for c in palette:
        seg = np.asarray(c) - bg
        t = np.clip(((img - bg) * seg).sum(-1) / np.maximum((seg * seg).sum(-1), 1e-9), 0, 1)
        t_all.append(t)
        d_all.append(np.linalg.norm(img - (bg + t[..., None] * seg), axis=-1))
    t_all, d_all = np.stack(t_all), np.stack(d_all)
    best = np.argmin(np.where(t_all >= 0.5, d_all, np.inf), axis=0)
    ok = (np.take_along_axis(t_all, best[None], 0)[0] >= 0.5) & (np.take_along_axis(d_all, best[None], 0)[0] < COLOR_TOL)
    foreign = (d_all.min(0) >= COLOR_TOL)
    return np.where(ok, best, -1), foreign


def _regions(mask: np.ndarray, min_area: float) -> list[np.ndarray]:
    lab, n = ndimage.label(mask)
    regions = [lab == k for k in range(1, n + 1)]
    return [r for r in regions if r.sum() >= min_area]


def _moments(m: np.ndarray):
    ys, xs = np.nonzero(m)
    p = np.stack([xs + 0.5, ys + 0.5], 1).astype(np.float64)
    c = p.mean(0)
    cov = np.cov((p - c).T) if len(p) > 2 else np.eye(2)
    return c, cov + 1e-6 * np.eye(2)


def _sqrtm(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(a)
    return v @ np.diag(np.sqrt(np.maximum(w, 0))) @ v.T


def map_points(before: np.ndarray, after: np.ndarray, points) -> list[tuple[float, float]]:
    """Points carried along by a region's change from ``before`` to ``after`` (boolean masks): the
    affine map without rotation that matches the regions' centroids and second moments (a
    translation for a move, a scale for a rescale, a stretch for a deformation)."""
    c0, cov0 = _moments(before)
    c1, cov1 = _moments(after)
    m = _sqrtm(cov1) @ np.linalg.inv(_sqrtm(cov0))
    return [tuple(c1 + m @ (np.asarray(p, float) - c0)) for p in points]


def shape_kind(region: np.ndarray, steps: int = 36) -> tuple[str, float]:
    """The kind whose best-fitting outline (same area and centroid, the region's own stretch from its
    second moments, any rotation) overlaps ``region`` most, and that IoU."""
    size = region.shape[0]
    area = float(region.sum())
    c, cov = _moments(region)
    w = np.linalg.eigvalsh(cov)
    stretch = math.sqrt(w[1] / max(w[0], 1e-9))
    aspects = (1.0,) if stretch < 1.08 else (stretch, 1 / stretch)
    unit_area = {"circle": math.pi, "square": 4.0, "triangle": 3 * math.sqrt(3) / 4}
    best = ("", -1.0)
    for kind in KINDS:
        s = math.sqrt(area / unit_area[kind])
        for aspect in aspects:
            for r in np.linspace(0, 2 * math.pi, steps, endpoint=False):
                probe = Shape(kind, (1.0, 1.0, 1.0), tuple(c), s, float(r), aspect)
                m = coverage(Scene(size, ((0, 0, 0), (0, 0, 0)), 0.0, (probe,)), 0, supersample=2) > 0.5
                score = metrics.iou(m, region)
                if score > best[1]:
                    best = (kind, score)
    return best


def locate(scene: Scene, expected: Scene, image) -> dict:
    """Regions of ``image`` matched to the shapes of ``expected`` (same colours as ``scene``).

    Returns {"regions": {shape index: mask or None}, "extra": [(colour, mask) of regions of a scene
    colour no shape claimed], "foreign": [masks of blobs of colours the scene does not have]}.
    """
    labels, foreign = label_colours(scene, image)
    palette = _palette(scene)
    masks = [shape_mask(expected, j) for j in range(len(expected.shapes))]
    areas = [m.sum() for m in masks]
    min_area = 0.2 * max(min(areas), 1)
    found, extra = {}, []
    for k, colour in enumerate(palette):
        owners = [j for j, s in enumerate(expected.shapes) if s.color == colour]
        regions = _regions(labels == k, min_area)
        if regions and owners:
            centres = [_moments(r)[0] for r in regions]
            cost = np.array([[math.dist(c, _moments(masks[j])[0]) for c in centres] for j in owners])
            rows, cols = linear_sum_assignment(cost)
            for a, b in zip(rows, cols):
                found[owners[a]] = regions[b]
            claimed = set(cols.tolist())
            extra += [(colour, r) for i, r in enumerate(regions) if i not in claimed]
        else:
            extra += [(colour, r) for r in regions]
    blobs = _regions(ndimage.binary_opening(foreign), min_area)
    biggest = max(areas) if areas else 0
    return {"regions": {j: found.get(j) for j in range(len(expected.shapes))}, "extra": extra,
            "foreign": [b for b in blobs if b.sum() <= 2 * biggest]}


CLEAN_OUTLINE_IOU = 0.9  # rendered scenes: 0.95 on average; a rounded square fits a circle at 0.85-0.9


def outline_quality(images, min_area: int = 20, min_saturation: float = 0.55) -> dict:
    """How clean a model's shapes are, without knowing its scenes (for samples from noise): the
    saturated regions of each image (shapes are HSV saturation >= 0.75, backgrounds <= 0.35), how
    well each fits its best outline (mean IoU), and the share that fit at CLEAN_OUTLINE_IOU."""
    fits = []
    for image in images:
        rgb = metrics.as_float01(image)
        saturation = 1 - rgb.min(-1) / np.maximum(rgb.max(-1), 1e-6)
        fits += [shape_kind(region)[1] for region in _regions(saturation >= min_saturation, min_area)]
    if not fits:
        return {"images": len(images), "shapes": 0, "mean_iou": 0.0, "clean": 0.0}
    fits = np.asarray(fits)
    return {"images": len(images), "shapes": len(fits), "mean_iou": round(float(fits.mean()), 3),
            "clean": round(float((fits >= CLEAN_OUTLINE_IOU).mean()), 3)}


# -- measuring one edit -----------------------------------------------------------------------------------

def measure(task: Task, output, source=None) -> dict:
    """Every metric of one edited image (uint8 [H, W, 3], float [0, 1] or engine tensor) for a task.
    source: the image the edit started from (default: the scene's render)."""
    source = render(task.scene) if source is None else source
    truth = render(task.edited)
    out = metrics.as_float01(output)
    i = task.index
    before = locate(task.scene, task.scene, source)["regions"][i]
    seen = locate(task.scene, task.edited, out)
    region = seen["regions"][i]
    expected_area = shape_mask(task.edited, i).sum()
    found = region is not None and region.sum() >= 0.4 * expected_area
    d0 = [math.dist(h, t) for h, t in zip(task.handles, task.targets)]
    if found and before is not None:
        ends = map_points(before, region, task.handles)
    else:  # the shape is gone: its content reached nothing, count it as not moved
        ends = list(task.handles)
    d = [math.dist(e, t) for e, t in zip(ends, task.targets)]
    kind, kind_iou = shape_kind(region) if found else ("", 0.0)
    dragged = task.scene.shapes[i].color
    # a region of the dragged colour that no shape claims: the original left behind (or a copy)
    left_behind = any(c == dragged and r.sum() >= 0.3 * expected_area for c, r in seen["extra"])
    added = bool(seen["foreign"]) or any(c != dragged for c, _ in seen["extra"])
    # the outline: the right kind, fitting well, and about the size it had or should have (a smear, a
    # merged copy or a shrunk remnant is not the shape)
    areas = (shape_mask(task.scene, i).sum(), expected_area)
    size_ok = found and 0.6 * min(areas) <= region.sum() <= 1.4 * max(areas)
    outline = found and kind == task.scene.shapes[i].kind and kind_iou >= MIN_OUTLINE_IOU and size_ok
    identity = outline and not left_behind and not added
    others = [j for j in range(len(task.edited.shapes)) if j != i]
    row = {
        "md": float(np.mean(d)), "md0": float(np.mean(d0)), "md_ratio": float(sum(d) / sum(d0)),
        "ends": [list(map(float, e)) for e in ends],
        "identity": bool(identity), "found": bool(found), "shape_kind": kind, "kind_iou": float(kind_iou),
        "outline_ok": bool(outline), "left_behind": bool(left_behind), "added": bool(added),
        "others_kept": all(seen["regions"][j] is not None for j in others),
        "iou": metrics.iou(region, shape_mask(task.edited, i)) if region is not None else 0.0,
        "psnr_gt": metrics.psnr(truth, out), "ssim_gt": metrics.ssim(truth, out),
        **metrics.outside_change(source, out, task.mask),
        **metrics.dai(source, out, [world.to_engine_xy(h) for h in task.handles],
                      [world.to_engine_xy(t) for t in task.targets]),
    }
    return row


# -- running ------------------------------------------------------------------------------------------------

NONE = "do-nothing"  # inversion + reconstruction (each preset's own original branch)
SUMMARY_KEYS = ("md", "md_ratio", "identity", "iou", "psnr_gt", "ssim_gt", "psnr_outside", "mae_outside",
                "dai_1", "dai_5", "dai_10", "dai_20", "seconds")


def run(model, cond, tasks: list[Task], configs: dict, log=print, images: dict | None = None,
        lora_cache=None) -> dict:
    """{method: [metrics per task]} for each named EditConfig, plus "<name> do-nothing": the same
    run's reconstruction (inversion and sampling of the unedited latent, LoRA included; for the
    one-pass presets, which sample no original, the VAE's round trip).
    images, if a dict, receives {(method, task name): uint8 output}.
    lora_cache (workbench/lora_cache.py), if given, trains each identity LoRA once; a row's seconds
    still include the LoRA's training time (as measured when it was trained)."""
    from comfyui_drag.drag_ops.pipeline import run_edit
    results = {}
    for task in tasks:
        image = world.to_engine_image(task.scene)
        mask = task.engine_mask()
        for name, config in configs.items():
            lora, trained = None, 0.0
            if lora_cache is not None and getattr(config, "lora", None) is not None:
                lora, trained = lora_cache.lora(model, image, cond, config.lora)
            t0 = time.perf_counter()
            result = run_edit(model, image, task.points(), cond, config, mask, lora=lora)
            seconds = time.perf_counter() - t0 + trained
            for method, img in ((name, result.image), (f"{name} {NONE}", result.reconstruction)):
                row = {"task": task.name, "kind": task.kind, "lookalike": task.lookalike is not None,
                       **measure(task, img), "seconds": seconds}
                if method == name:
                    row["tracked"] = [list(map(float, world.to_scene_xy(h))) for h in result.drag.handles]
                    row["drag_steps"] = result.drag.steps
                results.setdefault(method, []).append(row)
                if images is not None:
                    images[(method, task.name)] = world.to_uint8(img)
            r = results[name][-1]
            log(f"{task.name:<20} {name:<14} MD {r['md']:5.1f}/{r['md0']:4.1f} px  identity {r['identity']!s:<5} "
                f"PSNR gt {r['psnr_gt']:4.1f}  outside {r['psnr_outside']:4.1f} dB  {seconds:5.1f} s")
    return results


def summarise(results: dict) -> dict:
    """Averages per method over all tasks and over the move tasks."""
    out = {}
    for method, rows in results.items():
        entry = {"tasks": len(rows), **{k: _mean(rows, k) for k in SUMMARY_KEYS}}
        moves = [r for r in rows if r["kind"] == "move"]
        if moves:
            entry["move_tasks"] = len(moves)
            entry["move_md_ratio"] = _mean(moves, "md_ratio")
            entry["move_identity"] = _mean(moves, "identity")
        look = [r for r in rows if r.get("lookalike")]
        if look:
            entry["lookalike_md_ratio"] = _mean(look, "md_ratio")
        for kind in ("rescale", "deform"):
            sub = [r for r in rows if r["kind"] == kind]
            if sub:
                entry[f"{kind}_md_ratio"] = _mean(sub, "md_ratio")
        out[method] = entry
    return out


def _mean(rows, key) -> float:
    vals = [float(r[key]) for r in rows if key in r and r[key] is not None and math.isfinite(float(r[key]))]
    return float(np.mean(vals)) if vals else float("nan")


COLUMNS = (("MD px", "md", "{:.2f}"), ("MD/init", "md_ratio", "{:.2f}"), ("move MD/init", "move_md_ratio", "{:.2f}"),
           ("move ident", "move_identity", "{:.0%}"), ("ident", "identity", "{:.0%}"), ("IoU", "iou", "{:.2f}"),
           ("PSNR gt", "psnr_gt", "{:.1f}"), ("SSIM gt", "ssim_gt", "{:.3f}"), ("PSNR out", "psnr_outside", "{:.1f}"),
           ("DAI1", "dai_1", "{:.4f}"), ("DAI5", "dai_5", "{:.4f}"), ("DAI10", "dai_10", "{:.4f}"),
           ("DAI20", "dai_20", "{:.4f}"), ("s/task", "seconds", "{:.0f}"))


def table(summary: dict, columns=COLUMNS) -> str:
    """A markdown table, one row per method."""
    head = "| method | tasks | " + " | ".join(c[0] for c in columns) + " |"
    lines = [head, "|" + "---|" * (len(columns) + 2)]
    for method, s in summary.items():
        cells = [("-" if key not in s or s[key] != s[key] else fmt.format(s[key])) for _, key, fmt in columns]
        lines.append(f"| {method} | {s['tasks']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
