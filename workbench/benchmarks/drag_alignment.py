"""Where do a preset's first latent updates point on the shapes world? Prints numbers.

For each move task of the shapes benchmark: invert the scene to the preset's strength, run the
preset's tracker and supervision for the first N updates at that timestep (no LoRA, the task's
mask rather than AdaptiveDrag's auto-mask, no sampling; every schedule's first updates are at the
inversion timestep), and compare the latent's change with two changes known from the scene:

- *move*: the inverted latent of the same scene with the dragged shape moved a few pixels toward
  its target, minus the original's (what a drag that moves content would do);
- *erase*: the inverted latent of the scene without the dragged shape, minus the original's.

Cosine near 1 with *move*: the updates move the shape; near 1 with *erase*: they remove it (the
two changes themselves have a cosine of about 0.3, printed as "move vs erase"); near 0 with both:
most of the change is neither (on this world, off-manifold latent changes that decode to
smears). About 2.5 minutes for all five presets on one thread (12 tasks, 40 updates), so it can rank
checkpoints and settings before a full benchmark (25 minutes).

    python -m workbench.benchmarks.drag_alignment --presets DragDiffusion,GoodDrag --updates 1,10
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import torch

from workbench.cli import bench_configs, parse_sets
from comfyui_drag.drag_ops.errors import DragInputError
from comfyui_drag.drag_ops.inversion import invert
from comfyui_drag.drag_ops.pipeline import drag_stage
from comfyui_drag.drag_ops.drag_schedules import SingleTimestep
from workbench.shapes import benchmark, world

MOVE_PIXELS = 4.0  # the probe move: about one latent pixel, what tens of updates should achieve


def inverted_changes(model, cond, task: benchmark.Task, strength: float):
    """(the scene's inversion trajectory, the *move* change, the *erase* change) at ``strength``."""
    def inverted(scene):
        return invert(model, model.codec.encode(world.to_engine_image(scene)), cond, strength)

    trajectory = inverted(task.scene)
    z0 = trajectory.start
    shape = task.scene.shapes[task.index]
    d = np.subtract(task.targets[0], task.handles[0])
    d = d / np.linalg.norm(d) * MOVE_PIXELS
    moved = inverted(task.scene.with_shape(task.index, shape.moved(*d))).start - z0
    erased = inverted(replace(task.scene, shapes=tuple(s for j, s in enumerate(task.scene.shapes)
                                                      if j != task.index))).start - z0
    return trajectory, moved, erased


def alignment(model, cond, task: benchmark.Task, config, updates: list[int], changes) -> dict:
    """{n: (cos with move, cos with erase)} of the latent change after each n in ``updates``, and
    "move_vs_erase": the cosine of those two changes with each other (a move also empties the start).
    changes: inverted_changes() at the config's inversion strength."""
    trajectory, moved, erased = changes
    z0 = trajectory.start
    latents = {}

    def keep(stage, step, total, preview):  # after each update
        if stage == "drag" and step in updates:
            latents[step] = preview["latent"].clone()

    size = task.scene.size
    mask = task.engine_mask()
    result = drag_stage(model, trajectory, cond, task.points(), (size, size), mask,
                        replace(config, schedule=SingleTimestep(max(updates))), keep)
    cos = torch.nn.functional.cosine_similarity
    out = {"move_vs_erase": float(cos(moved.flatten(), erased.flatten(), dim=0))}  # the scale to read against
    for n in updates:  # a drag that stopped early (handles within reach) keeps its last latent
        change = (latents.get(n, result.latent) - z0).flatten()
        out[n] = tuple(float(cos(change, ref.flatten(), dim=0)) for ref in (moved, erased))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="all")
    ap.add_argument("--updates", default="1,10", help="comma-separated update counts to measure after")
    ap.add_argument("--tasks", type=int, default=16, help="benchmark tasks generated (the move tasks are used)")
    ap.add_argument("--task-seed", type=int, default=0)
    ap.add_argument("--weights", default=None, help="shapes-world weights folder (default: workbench/shapes/weights)")
    ap.add_argument("--set", action="append", metavar="[PRESET:]PATH=VALUE", help="as workbench/cli.py bench --set")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    try:
        updates = sorted({int(n) for n in a.updates.split(",")})
    except ValueError:
        updates = [0]
    if updates[0] < 1:
        raise SystemExit(f"--updates {a.updates!r}: expected positive whole numbers, e.g. 1,10,40")
    try:
        configs = bench_configs([p.strip() for p in a.presets.split(",")], parse_sets(a.set), world.adapt)
    except DragInputError as e:
        raise SystemExit(f"error: {e}")
    model, cond = world.engine_model(a.weights), world.conditioning()
    tasks = [t for t in benchmark.make_tasks(a.tasks, a.task_seed) if t.kind == "move"]
    print(f"{len(tasks)} move tasks, seed {a.task_seed}; cosine of the latent change with a {MOVE_PIXELS:g}-px move "
          "/ with erasing the shape")
    print("| preset | move vs erase | " + " | ".join(f"after {n}: move | erase" for n in updates) + " |")
    print("|---|---|" + "---|---|" * len(updates))
    changes = {}  # (task, strength) -> inverted_changes: presets that share a strength share them
    for name, config in configs.items():
        rows = []
        for i, task in enumerate(tasks):
            key = (i, config.inversion_strength)
            if key not in changes:
                changes[key] = inverted_changes(model, cond, task, config.inversion_strength)
            rows.append(alignment(model, cond, task, config, updates, changes[key]))
        cells = [f"{np.mean([r[n][0] for r in rows]):+.3f} | {np.mean([r[n][1] for r in rows]):+.3f}" for n in updates]
        scale = np.mean([r["move_vs_erase"] for r in rows])
        print(f"| {name} | {scale:+.3f} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
