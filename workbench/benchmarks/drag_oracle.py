"""How far can a latent optimisation carry a shape when it is told exactly where to go? Prints numbers.

The frontier check behind the shapes world's drag settings (workbench/shapes/world.adapt). On the tuning
relocation tasks (task seed 0, never the held-out seed 1) the inverted latent at DragDiffusion's
adapted timestep is optimised, with the drag's own optimiser and learning rate, so that its decoder
features match, inside the task's mask, those of the GROUND-TRUTH edit inverted the same way. Then
it is sampled under reference control and measured like a drag (MD / initial, identity kept).

This is no drag method (it needs the answer); it separates the two reasons a drag can fall short.
If the oracle moves shapes cleanly, the model and the optimisation can do it and what is missing is
in the drag's supervision or its budget; if the oracle leaves blobs too, the model is the limit.
With `--updates 5,120` a task takes about 50 s (most of it the identity LoRA of world.adapt).

    python -m workbench.benchmarks.drag_oracle [--updates 80,200] [--tasks 16]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from comfyui_drag.drag_ops.coords import Geometry
from comfyui_drag.drag_ops.inversion import invert
from comfyui_drag.drag_ops.lora import train_identity_lora
from comfyui_drag.drag_ops.presets import preset
from comfyui_drag.drag_ops.reference import sample
from workbench.shapes import benchmark, world


def prepare(model, cond, task, config):
    """What every budget shares: the identity LoRA, the inversion, and the ground truth's features."""
    size = (task.scene.size, task.scene.size)
    latent = model.codec.encode(world.to_engine_image(task.scene))
    geometry = Geometry(size, tuple(latent.shape[-2:]), config.drag.features.resolve(size))
    lora = train_identity_lora(model, latent, cond, config.lora)
    with lora.applied(model.network):
        trajectory = invert(model, latent, cond, config.inversion_strength)
        truth = invert(model, model.codec.encode(world.to_engine_image(task.edited)), cond, config.inversion_strength)
        with torch.no_grad():
            _, target = model.forward(truth.at(trajectory.steps), model.schedule.timestep(trajectory.steps), cond,
                                      config.drag.features, geometry.feature_hw)
    mask = geometry.mask_to_feature(torch.from_numpy(task.mask))
    return lora, trajectory, target, mask


def oracle_edit(model, cond, config, prepared, updates: int) -> torch.Tensor:
    """The decoded image after ``updates`` feature-matching steps toward the ground truth's features."""
    lora, trajectory, target, mask = prepared
    k = trajectory.steps
    t = model.schedule.timestep(k)
    with lora.applied(model.network):
        z = torch.nn.Parameter(trajectory.at(k).clone())
        opt = torch.optim.Adam([z], lr=config.drag.learning_rate)
        with torch.inference_mode(False), torch.enable_grad():
            for _ in range(updates):
                _, feats = model.forward(z, t, cond, config.drag.features, tuple(target.shape[-2:]))
                loss = ((feats - target).abs().mean(1, keepdim=True) * mask).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        _, edited = sample(model, trajectory, z.detach(), k, cond, config.reference)
    return model.codec.decode(edited)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--updates", default="80,200", help="comma-separated optimisation budgets")
    ap.add_argument("--tasks", type=int, default=16, help="tasks generated (the moves among them are used)")
    ap.add_argument("--weights", default=None, help="shapes-world weights folder (default: workbench/shapes/weights)")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    try:
        budgets = [int(u) for u in a.updates.split(",")]
    except ValueError:
        ap.error(f"--updates takes comma-separated integers, got {a.updates!r}")
    if min(budgets) < 1 or a.tasks < 1:
        ap.error("--updates values and --tasks must be at least 1")
    torch.set_num_threads(a.threads)
    model, cond = world.engine_model(a.weights), world.conditioning()
    config = world.adapt(preset("DragDiffusion"))
    moves = [t for t in benchmark.make_tasks(a.tasks, seed=0) if t.kind == "move"]
    print(f"{len(moves)} tuning moves (task seed 0), strength {config.inversion_strength}, lr {config.drag.learning_rate}")
    print("| updates | MD / initial | identity kept |")
    print("|---|---|---|")
    rows = {n: [] for n in budgets}
    for task in moves:
        prepared = prepare(model, cond, task, config)
        for n in budgets:
            rows[n].append(benchmark.measure(task, oracle_edit(model, cond, config, prepared, n)))
    for n, found in rows.items():
        print(f"| {n} | {np.mean([r['md_ratio'] for r in found]):.2f} | {np.mean([r['identity'] for r in found]):.0%} |")


if __name__ == "__main__":
    main()
