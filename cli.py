"""Command line: run the pack's engine without ComfyUI.

    python cli.py demo [--preset NAME] [--out DIR]     a drag edit on the bundled shapes model
"""

from __future__ import annotations

import argparse
import sys
import time

import pack_loader


def demo(args) -> None:
    import numpy as np
    import torch
    from PIL import Image

    pack = pack_loader.load()
    from comfyui_drag.drag_ops.presets import preset
    from comfyui_drag.drag_ops.pipeline import run_edit
    from comfyui_drag.drag_ops.points import DragPoints
    from comfyui_drag.nodes.runtime import draw_points
    from comfyui_drag.shapes import world

    torch.manual_seed(args.seed)
    model, cond = world.engine_model(), world.conditioning()
    scene = world.demo_scene(args.seed)
    image = world.to_engine_image(scene)
    handle, target = world.demo_drag(scene)
    points = DragPoints((handle,), (target,))
    config = world.adapt(preset(args.preset))

    stamps = {}
    last = [time.perf_counter()]

    def progress(stage, step, total, _preview):
        now = time.perf_counter()
        stamps[stage] = stamps.get(stage, 0.0) + now - last[0]
        last[0] = now

    t0 = time.perf_counter()
    result = run_edit(model, image, points, cond, config, callback=progress)
    elapsed = time.perf_counter() - t0

    out = pack_loader.ROOT / args.out if not args.out.startswith("/") else __import__("pathlib").Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    zoom = 6

    def save(x, name, handles=None, targets=None, path=None):
        arr = ((x[0].permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
        img = Image.fromarray(arr).resize((arr.shape[1] * zoom, arr.shape[0] * zoom), Image.NEAREST)
        if handles is not None:
            img = draw_points(img, handles, targets, zoom)
        if path:
            from PIL import ImageDraw
            ImageDraw.Draw(img).line([(x * zoom, y * zoom) for x, y in path], fill=(255, 220, 0), width=2)
        img.save(out / name)

    save(image, "input.png", [handle], [target])
    save(result.image, "output.png")
    save(result.image, "trajectory.png", [handle], [target], [h[0] for h in result.drag.history])
    final = result.drag.handles[0]
    print(f"preset {args.preset}: handle {handle} -> target {target}; tracked handle ended at "
          f"({final[0]:.1f}, {final[1]:.1f}) after {result.drag.steps} drag steps")
    print("time per stage: " + ", ".join(f"{k} {v:.1f}s" for k, v in stamps.items()) + f"; total {elapsed:.1f}s")
    print(f"wrote {out / 'input.png'}, {out / 'output.png'}, {out / 'trajectory.png'}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Drag editing engine (no ComfyUI needed).")
    sub = ap.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="drag edit on the bundled shapes-world model")
    d.add_argument("--preset", default="DragDiffusion")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--out", default="out/demo")
    d.set_defaults(run=demo)
    args = ap.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main(sys.argv[1:])
