"""Command line: run the pack's engine without ComfyUI.

    python -m workbench demo [--preset NAME] [--out DIR]     a drag edit on the bundled shapes model
    python -m workbench bench [--presets A,B] [--tasks N]    the shapes-world drag benchmark (table + JSON)
    python -m workbench bench --dragbench DIR --checkpoint SD    the same metrics on DragBench / Drag100 folders
                                                               (SD 1.x/2.x or SDXL: a diffusers folder or a file)
"""

from __future__ import annotations

import argparse
import sys
import time

import pack_loader


def demo(args) -> None:
    """The README's main command: one drag edit, its images, and the benchmark's measurement of it."""
    import numpy as np
    import torch
    from PIL import Image

    from comfyui_drag.drag_ops.presets import preset
    from comfyui_drag.drag_ops.pipeline import run_edit
    from comfyui_drag.nodes.runtime import draw_points
    from .shapes import benchmark, world

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    model, cond = world.engine_model(args.weights), world.conditioning()
    task = benchmark.demo_task(args.seed)
    image = world.to_engine_image(task.scene)
    points = task.points()
    mask = task.engine_mask()
    config = world.adapt(preset(args.preset))

    stamps = {}
    last = [time.perf_counter()]

    def progress(stage, step, total, _preview):
        now = time.perf_counter()
        stamps[stage] = stamps.get(stage, 0.0) + now - last[0]
        last[0] = now

    t0 = time.perf_counter()
    result = run_edit(model, image, points, cond, config, mask, callback=progress)
    elapsed = time.perf_counter() - t0

    out = pack_loader.ROOT / args.out if not args.out.startswith("/") else __import__("pathlib").Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    zoom = 6

    def save(x, name, handles=None, targets=None, path=None, shade=None):
        arr = world.to_uint8(x)
        if shade is not None:  # darken what the drag may not change, as the point picker shows a mask
            arr = np.where(shade[..., None], arr, arr // 2).astype(np.uint8)
        img = Image.fromarray(arr).resize((arr.shape[1] * zoom, arr.shape[0] * zoom), Image.NEAREST)
        if handles is not None:
            img = draw_points(img, handles, targets, zoom)
        if path:
            from PIL import ImageDraw
            ImageDraw.Draw(img).line([(x * zoom, y * zoom) for x, y in path], fill=(255, 220, 0), width=2)
        img.save(out / name)

    # drawn in scene coordinates (pixel j's centre at j + 0.5), times the zoom
    h, t = task.handles[0], task.targets[0]
    save(image, "input.png", [h], [t], shade=task.mask)
    save(result.image, "output.png")
    save(result.image, "trajectory.png", [h], [t], [world.to_scene_xy(p[0]) for p in result.drag.history])
    m = benchmark.measure(task, result.image)
    final = result.drag.handles[0]
    print(f"preset {args.preset}: handle {points.handles[0]} -> target {points.targets[0]}; tracked handle "
          f"ended at ({final[0]:.1f}, {final[1]:.1f}) after {result.drag.steps} drag steps")
    print(f"measured in the output: the shape's handle is {m['md']:.1f} of {m['md0']:.1f} px from the target "
          f"(MD / initial {m['md_ratio']:.2f}); identity kept: {'yes' if m['identity'] else 'no'} (looks like a "
          f"{m['shape_kind'] or 'nothing'}, left behind: {'yes' if m['left_behind'] else 'no'}); "
          f"PSNR outside the mask {m['psnr_outside']:.1f} dB")
    print("time per stage: " + ", ".join(f"{k} {v:.1f}s" for k, v in stamps.items()) + f"; total {elapsed:.1f}s")
    print(f"wrote {out / 'input.png'} (mask: the bright region), {out / 'output.png'}, {out / 'trajectory.png'}")


def parse_sets(items) -> dict:
    """--set PATH=VALUE (VALUE as JSON, else text); PRESET:PATH=VALUE applies to that preset only.
    Returns {preset or None: {path: value}}."""
    import json
    out = {}
    for item in items or ():
        key, sep, text = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected PATH=VALUE, e.g. drag.learning_rate=0.02")
        name, _, path = key.rpartition(":")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        out.setdefault(name or None, {})[path.strip()] = value
    return out


def bench_configs(names, sets, adapt=None) -> dict:
    from comfyui_drag.drag_ops.overrides import apply_overrides
    from comfyui_drag.drag_ops.presets import ALL_PRESETS, preset
    names = list(ALL_PRESETS) if names == ["all"] else names
    configs = {}
    for name in names:
        config = preset(name)
        config = adapt(config) if adapt else config
        config = apply_overrides(config, {**sets.get(None, {}), **sets.get(name, {})})
        configs[name] = config
    return configs


def bench(args) -> None:
    import json
    import pathlib

    import torch

    from comfyui_drag.drag_ops.errors import DragInputError

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.presets.split(",") if n.strip()]
    sets = parse_sets(args.set)
    t0 = time.perf_counter()
    try:
        if args.dragbench or args.drag100:
            report = _bench_real(args, names, sets)
        else:
            report = _bench_shapes(args, names, sets)
    except DragInputError as e:
        raise SystemExit(f"error: {e}")
    report["seconds"] = round(time.perf_counter() - t0, 1)
    print(report.pop("table"))
    print(f"{report['seconds']:.0f} s in all")
    if args.json:
        path = pathlib.Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1, default=str) + "\n")
        print(f"wrote {path}")


def _bench_shapes(args, names, sets) -> dict:
    from comfyui_drag.drag_ops.presets import describe
    from .shapes import benchmark, world

    model, cond = world.engine_model(args.weights), world.conditioning()
    tasks = benchmark.make_tasks(args.tasks, args.task_seed)
    if args.only:
        tasks = [t for t in tasks if t.kind in args.only.split(",")]
    configs = bench_configs(names, sets, world.adapt)
    images = {} if args.images else None
    cache = None
    if args.lora_cache:
        from .lora_cache import LoraCache
        cache = LoraCache(args.lora_cache, model)
    results = _run_checkpointed(args, tasks, lambda task: benchmark.run(model, cond, [task], configs, images=images,
                                                                          lora_cache=cache))
    summary = benchmark.summarise(results)
    if images:
        _save_images(args.images, tasks, images)
    return {"benchmark": "shapes", "weights": str(args.weights or "workbench/shapes/weights"), "task_seed": args.task_seed,
            "settings": {n: {k: v["value"] for k, v in describe(n, c).items()} for n, c in configs.items()},
            "tasks": [t.describe() for t in tasks], "summary": summary, "results": results,
            "table": benchmark.table(summary)}


def _run_checkpointed(args, tasks, run_task) -> dict:
    """{method: rows} over tasks in order. With --json, each finished task's rows are appended to
    <json>.rows.jsonl as they come; with --resume, tasks already there are read back instead of run,
    so that an interrupted run (hours on a CPU) loses at most the task it was on."""
    import json
    import pathlib

    rows_path = pathlib.Path(args.json).with_suffix(".rows.jsonl") if args.json else None
    if args.resume and not rows_path:
        raise SystemExit("--resume needs --json (the rows file sits beside it)")
    if args.resume and args.images:
        raise SystemExit("--resume cannot redraw --images for the tasks it reads back: give one or the other")
    done = {}
    if rows_path and args.resume and rows_path.exists():
        for line in rows_path.read_text().splitlines():
            if line.strip():
                entry = json.loads(line)
                done[entry["task"]] = entry["results"]
        print(f"resuming: {len(done)} of {len(tasks)} tasks read back from {rows_path}")
    elif rows_path:
        rows_path.parent.mkdir(parents=True, exist_ok=True)
        rows_path.write_text("")
    results = {}
    for task in tasks:
        task_results = done.get(task.name)
        if task_results is None:
            task_results = run_task(task)
            if rows_path:
                with rows_path.open("a") as f:
                    f.write(json.dumps({"task": task.name, "results": task_results}, default=str) + "\n")
        for method, rows in task_results.items():
            results.setdefault(method, []).extend(rows)
    return results


def _save_images(folder, tasks, images) -> None:
    """One row per task: input, ground truth, then every method's output."""
    import numpy as np
    from PIL import Image
    from .shapes.scenes import render

    out = pack_loader.ROOT / folder
    out.mkdir(parents=True, exist_ok=True)
    methods = sorted({m for m, _ in images})
    rows = [np.concatenate([render(t.scene), render(t.edited)] + [images[(m, t.name)] for m in methods], 1)
            for t in tasks]
    Image.fromarray(np.concatenate(rows, 0)).resize((64 * (2 + len(methods)) * 3, 64 * len(tasks) * 3),
                                                    Image.NEAREST).save(out / "bench_grid.png")
    (out / "bench_grid.txt").write_text("columns: input, ground truth, " + ", ".join(methods) + "\n")


def _bench_real(args, names, sets) -> dict:
    from . import datasets, metrics
    from comfyui_drag.drag_ops import families

    if not args.checkpoint:
        raise SystemExit("--dragbench / --drag100 need --checkpoint (a local SD or SDXL diffusers folder or file)")
    device = args.device or ("cuda" if __import__("torch").cuda.is_available() else "cpu")
    if args.dragbench:
        print(f"loading DragBench metadata from {args.dragbench}: meta_data.pkl files are unpickled")
        samples = datasets.load_dragbench(args.dragbench, allow_pickle=True)
    else:
        samples = datasets.load_drag100(args.drag100)
    if args.tasks:
        samples = samples[:args.tasks]
    model, encode = datasets.load_checkpoint(args.checkpoint, device, config=args.config)
    family = families.summary(model.network)
    print(family)
    fidelity = metrics.Fidelity(device)
    if not fidelity.usable:
        print(f"1 - LPIPS skipped: {fidelity.reason}")
    configs = bench_configs(names, sets)
    set_by = {path: "--set" for paths in sets.values() for path in paths}  # the family leaves these as set
    results = datasets.run(model, encode, samples, configs, fidelity=fidelity, set_by=set_by)
    summary = datasets.summarise(results)
    from .shapes.benchmark import table
    return {"benchmark": "dragbench" if args.dragbench else "drag100", "checkpoint": str(args.checkpoint),
            "model": family, "lpips": fidelity.usable or fidelity.reason, "summary": summary, "results": results,
            "settings": {n: {k: v["value"] for k, v in families.describe(n, families.adapt(c, model.network, set_by),
                                                                          model.network).items()}
                         for n, c in configs.items()},
            "table": table(summary, datasets.COLUMNS)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m workbench", description="Drag editing engine (no ComfyUI needed).")
    sub = ap.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="drag edit on the bundled shapes-world model")
    d.add_argument("--preset", default="DragDiffusion")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--out", default="out/demo")
    d.add_argument("--weights", default=None, help="shapes-world weights folder (default: workbench/shapes/weights)")
    d.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: this model is too small to gain from more, and busy cores make more threads stall)")
    d.set_defaults(run=demo)
    b = sub.add_parser("bench", help="drag benchmark: shapes world (exact ground truth) or DragBench/Drag100",
                       description="Run presets on drag tasks and print a table of metrics (and write JSON). "
                       "Without --dragbench/--drag100: the shapes-world tasks on the bundled model, measured "
                       "exactly against re-rendered ground truth. Each preset's do-nothing row is its own "
                       "inversion + reconstruction.")
    b.add_argument("--presets", default="DragDiffusion", help="comma-separated preset names, or 'all'")
    b.add_argument("--tasks", type=int, default=24, help="number of tasks (DragBench/Drag100: first N samples)")
    b.add_argument("--task-seed", type=int, default=0, help="seed of the generated shapes tasks")
    b.add_argument("--only", default=None, help="shapes task kinds to keep: move,rescale,deform")
    b.add_argument("--set", action="append", metavar="[PRESET:]PATH=VALUE",
                   help="override a setting, e.g. drag.learning_rate=0.02 or GoodDrag:schedule.drag_rounds=40 "
                   "(repeatable; VALUE is JSON)")
    b.add_argument("--json", default=None, help="write per-task metrics, averages and settings here")
    b.add_argument("--resume", action="store_true",
                   help="shapes world: read back the tasks already in <json>.rows.jsonl (written task by task) "
                   "and run only the rest")
    b.add_argument("--images", default=None, help="folder for a grid of inputs, ground truths and outputs")
    b.add_argument("--lora-cache", default=None, metavar="DIR",
                   help="shapes world: keep each task's identity LoRA here and reuse it in later runs and other "
                   "presets with the same LoRA settings (the same LoRA a fresh run trains; workbench/lora_cache.py)")
    b.add_argument("--weights", default=None, help="shapes-world weights folder (default: workbench/shapes/weights)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: on a busy 2-core machine a second thread waits for a core and "
                   "slows every step several times)")
    b.add_argument("--dragbench", default=None, metavar="DIR",
                   help="DragBench folder (<category>/<sample>/original_image.png + meta_data.pkl). "
                   "WARNING: meta_data.pkl files are Python pickles and are unpickled, which can run code: "
                   "give only a folder you trust")
    b.add_argument("--drag100", default=None, metavar="DIR",
                   help="Drag100 folder (<sample>/original.jpg, mask.png, points.json)")
    b.add_argument("--checkpoint", default=None,
                   help="local SD 1.x/2.x or SDXL checkpoint for --dragbench/--drag100: a diffusers folder or a "
                   "single .safetensors file, loaded by diffusers from disk only (nothing is downloaded)")
    b.add_argument("--config", default=None, metavar="DIR",
                   help="for a single-file --checkpoint: a local diffusers folder of the same model type without "
                   "weights (model_index.json, */config.json, tokenizer*/, scheduler/), when its configs are "
                   "not in the local Hugging Face cache")
    b.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    b.set_defaults(run=bench)
    args = ap.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main(sys.argv[1:])
