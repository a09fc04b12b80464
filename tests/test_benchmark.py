"""The drag benchmark: shapes-world tasks and their ground truth, the metrics on cases whose answer
is known, and the DragBench / Drag100 loaders and runner on tiny generated folders."""

import json
import math
import pickle
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from workbench import datasets, metrics
from comfyui_drag.drag_ops.errors import DragInputError
from comfyui_drag.drag_ops.lora import LoraSettings
from comfyui_drag.drag_ops.presets import dragdiffusion
from comfyui_drag.drag_ops.drag_schedules import SingleTimestep
from workbench.shapes import benchmark, world
from workbench.shapes.scenes import Scene, Shape, _inside, render, shape_mask
from tiny_models import blob_image, tiny_cond, tiny_model

VARIANTS = ("move-centre", "move-edge", "move-lookalike", "rescale", "deform")


@pytest.fixture(scope="module")
def tasks():
    return [benchmark.make_task(5, v, i) for i, v in enumerate(VARIANTS)]


def inside(shape, xy):
    return bool(_inside(shape, np.array([xy[0]]), np.array([xy[1]]))[0])


def test_tasks_are_deterministic():
    a, b = benchmark.make_tasks(8, seed=3), benchmark.make_tasks(8, seed=3)
    for s, t in zip(a, b):
        assert (s.scene, s.edited, s.handles, s.targets) == (t.scene, t.edited, t.handles, t.targets)
        assert np.array_equal(s.mask, t.mask)
    assert benchmark.make_tasks(8, seed=4)[0].scene != a[0].scene
    assert [t.kind for t in a] == ["move"] * 3 + ["rescale"] + ["move"] * 3 + ["deform"]


def test_ground_truth_matches_the_points(tasks):
    for task in tasks:
        before, after = task.scene.shapes[task.index], task.edited.shapes[task.index]
        assert before.kind == after.kind and before.color == after.color
        # the rest of the scene is unchanged
        assert [s for j, s in enumerate(task.scene.shapes) if j != task.index] == \
               [s for j, s in enumerate(task.edited.shapes) if j != task.index]
        for h, t in zip(task.handles, task.targets):
            assert inside(before, h) and inside(after, t)
            if task.kind == "move":
                assert 8 <= math.dist(h, t) <= 16
                assert np.allclose(np.subtract(t, h), np.subtract(after.center, before.center))
        # the mask covers the shape where it starts and where it ends, and not the whole image
        assert task.mask[shape_mask(task.scene, task.index)].all() and task.mask[shape_mask(task.edited, task.index)].all()
        assert task.mask.mean() < 0.6
    look = tasks[2]
    twin = look.scene.shapes[look.lookalike]
    dragged = look.scene.shapes[look.index]
    assert (twin.kind, twin.color) == (dragged.kind, dragged.color)
    assert math.dist(twin.center, dragged.center) < dragged.extent + twin.extent + 6 or \
        math.dist(twin.center, look.edited.shapes[look.index].center) < dragged.extent + twin.extent + 6


def test_engine_points_are_pixel_indices(tasks):
    task = tasks[0]
    (hx, hy), = task.points().handles
    assert (hx, hy) == (task.handles[0][0] - 0.5, task.handles[0][1] - 0.5)
    assert world.to_scene_xy(world.to_engine_xy((3.25, 7.5))) == (3.25, 7.5)


def test_doing_nothing_scores_no_progress_and_keeps_identity(tasks):
    for task in tasks:
        m = benchmark.measure(task, render(task.scene))
        assert m["md_ratio"] == pytest.approx(1.0, abs=1e-6), task.name
        assert m["identity"] and m["found"] and not m["left_behind"] and not m["added"], task.name
        assert m["psnr_outside"] == float("inf")


def test_the_ground_truth_scores_perfectly(tasks):
    for task in tasks:
        m = benchmark.measure(task, render(task.edited))
        assert m["md"] < 0.4 and m["md_ratio"] < 0.1, task.name
        assert m["identity"] and m["iou"] > 0.95 and m["psnr_gt"] == float("inf") and m["ssim_gt"] == 1.0
        assert m["dai_1"] < 0.01


def test_a_copy_at_the_target_with_the_original_left_is_not_identity():
    def copy_of(task):
        copy = replace(task.scene, shapes=task.scene.shapes + (task.edited.shapes[task.index],))
        return benchmark.measure(task, render(copy))

    # a long move, so the copy and the original do not touch
    shape = Shape("triangle", (0.9, 0.2, 0.1), (16.0, 30.0), 7.0, 0.3)
    scene = Scene(64, ((0.4, 0.4, 0.45), (0.5, 0.45, 0.4)), 0.5, (shape,))
    edited = scene.with_shape(0, shape.moved(24, 4))
    task = benchmark.Task("far", "move", scene, edited, 0, (shape.center,), (edited.shapes[0].center,),
                          shape_mask(scene, 0) | shape_mask(edited, 0))
    assert copy_of(task)["md"] < 0.5 and copy_of(task)["left_behind"] and not copy_of(task)["identity"]
    # the benchmark's moves are shorter: a copy merges with the original into a blob of the wrong outline
    moves = [t for t in benchmark.make_tasks(6, seed=1) if t.kind == "move" and t.lookalike is None]
    assert not any(copy_of(t)["identity"] for t in moves[:2])


def test_a_changed_lost_or_extra_shape_is_not_identity(tasks):
    task = tasks[0]
    moved = task.edited.shapes[task.index]
    other = "square" if moved.kind != "square" else "circle"
    morphed = task.edited.with_shape(task.index, replace(moved, kind=other))
    m = benchmark.measure(task, render(morphed))
    assert m["shape_kind"] == other and not m["identity"]

    gone = replace(task.edited, shapes=tuple(s for j, s in enumerate(task.edited.shapes) if j != task.index))
    m = benchmark.measure(task, render(gone))
    assert not m["found"] and not m["identity"] and m["md_ratio"] == 1.0 and m["iou"] == 0.0

    img = render(task.edited).copy()
    free = ~task.mask & ~np.any([shape_mask(task.edited, j) for j in range(len(task.edited.shapes))], 0)
    ys, xs = np.nonzero(free)
    y, x = ys[len(ys) // 2], xs[len(xs) // 2]
    img[max(y - 3, 0):y + 4, max(x - 3, 0):x + 4] = (255, 255, 255)  # a new white blob
    m = benchmark.measure(task, img)
    assert m["added"] and not m["identity"]


def test_sample_quality_tells_crisp_shapes_from_rounded_blobs():
    """outline_quality scores a model's samples without knowing their scenes: rendered squares fit
    their outline, the same squares blurred into rounded blobs (what an undertrained model draws) do not."""
    from scipy import ndimage

    scenes = [Scene(64, ((0.45, 0.45, 0.5), (0.5, 0.45, 0.45)), 0.3,
                    (Shape("square", (1.0, 0.2, 0.1), (18.0 + k, 20.0), 8.0, 0.2 * k, 1.0),
                     Shape("triangle", (0.1, 0.3, 1.0), (44.0, 44.0 - k), 10.0, 0.4 * k, 1.0))) for k in range(4)]
    crisp = np.stack([render(s) for s in scenes])
    blobs = np.stack([ndimage.gaussian_filter(im.astype(float), (2.5, 2.5, 0)).round().astype(np.uint8)
                      for im in crisp])
    good, bad = benchmark.outline_quality(crisp), benchmark.outline_quality(blobs)
    assert good["shapes"] == bad["shapes"] == 8  # two shapes per image, the background never counted
    assert good["clean"] >= 0.75 and good["mean_iou"] > 0.93  # a fit's 10-degree rotation steps cost a little
    assert bad["clean"] <= good["clean"] - 0.25 and bad["mean_iou"] < good["mean_iou"] - 0.05


def test_dai_of_identical_patches_is_zero_and_grows_with_error():
    rng = np.random.default_rng(0)
    img = rng.uniform(size=(32, 32, 3))
    assert metrics.dai(img, img, [(5, 6)], [(5, 6)]) == {f"dai_{g}": 0.0 for g in metrics.DAI_RADII}
    shifted = np.roll(img, (2, 3), axis=(0, 1))  # content at p is at p + (3, 2) now
    assert all(v == 0 for v in metrics.dai(img, shifted, [(10, 12)], [(13, 14)], radii=(1, 5)).values())
    noisy = np.clip(img + 0.1, 0, 1)
    two = metrics.dai(img, noisy, [(10, 12), (0, 31)], [(10, 12), (31, 0)], radii=(1,))["dai_1"]
    one = metrics.dai(img, noisy, [(10, 12)], [(10, 12)], radii=(1,))["dai_1"]
    assert 0 < one and two > 0  # averaged over points once: a far-off second point raises the mean


def test_outside_change_and_psnr():
    a = np.zeros((8, 8, 3))
    b = a.copy()
    b[:2] = 0.5
    mask = np.zeros((8, 8), bool)
    mask[:2] = True
    assert metrics.outside_change(a, b, mask)["psnr_outside"] == float("inf")
    assert metrics.outside_change(a, b, None)["mae_outside"] == pytest.approx(0.125)
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(1 / (0.25 / 4)))


def test_lpips_is_skipped_with_a_reason_when_unusable():
    usable, reason = metrics.lpips_status()
    fid = metrics.Fidelity()
    assert fid.usable == usable
    if not usable:
        assert reason and fid(blob_image(), blob_image()) is None


# -- DragBench / Drag100 -------------------------------------------------------------------------------

def _png(path, array):
    Image.fromarray(array).save(path)


def make_dragbench(root, n=2, size=32):
    img = ((blob_image(size, size)[0].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()
    for i in range(n):
        folder = root / "animals" / f"sample_{i}"
        folder.mkdir(parents=True)
        _png(folder / "original_image.png", img)
        mask = np.zeros((size, size), np.uint8)
        mask[4:24, 4:28] = 1
        meta = {"prompt": "a red disc", "points": [[10, 12], [18, 12 + i]], "mask": mask}
        (folder / "meta_data.pkl").write_bytes(pickle.dumps(meta))
    return root


def make_drag100(root, size=32):
    img = ((blob_image(size, size)[0].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()
    folder = root / "disc"
    folder.mkdir(parents=True)
    Image.fromarray(img).save(folder / "original.jpg", quality=95)
    mask = np.zeros((size, size), np.uint8)
    mask[:, :20] = 255
    _png(folder / "mask.png", mask)
    (folder / "points.json").write_text(json.dumps({"points": [[10, 12], [16, 12], [11, 9], [15, 9]]}))
    return root


def test_dragbench_loader_needs_consent_for_the_pickle(tmp_path):
    root = make_dragbench(tmp_path)
    with pytest.raises(DragInputError, match="pickle"):
        datasets.load_dragbench(root)
    samples = datasets.load_dragbench(root, allow_pickle=True)
    assert [s.name for s in samples] == ["animals/sample_0", "animals/sample_1"]
    s = samples[1]
    assert s.image.shape == (32, 32, 3) and s.prompt == "a red disc"
    assert s.points.handles == ((10.0, 12.0),) and s.points.targets == ((18.0, 13.0),)
    assert s.mask.dtype == bool and s.mask.sum() == 20 * 24


def test_drag100_loader(tmp_path):
    (s,) = datasets.load_drag100(make_drag100(tmp_path))
    assert s.name == "disc" and s.image.shape == (32, 32, 3)
    assert s.points.handles == ((10.0, 12.0), (11.0, 9.0)) and s.points.targets == ((16.0, 12.0), (15.0, 9.0))
    assert s.mask[:, :20].all() and not s.mask[:, 20:].any()


def test_resizing_a_sample_keeps_points_on_the_same_content(tmp_path):
    (s,) = datasets.load_drag100(make_drag100(tmp_path))
    big = datasets.fit_to(replace(s, image=np.asarray(Image.fromarray(s.image).resize((40, 40)))), 16)
    assert big.image.shape == (48, 48, 3) or big.image.shape == (32, 32, 3)
    assert datasets.fit_to(s, 16) is s


def test_feature_matching_finds_points_in_the_same_image():
    model, cond = tiny_model(), tiny_cond()
    img = blob_image()
    pts = [(10.0, 12.0), (20.0, 20.0)]
    found = metrics.correspondences(model, cond, img, img, pts, blocks=(2,))
    assert all(math.dist(p, f) <= 2.0 for p, f in zip(pts, found))


def test_the_real_image_runner_on_a_tiny_dragbench(tmp_path):
    samples = datasets.load_dragbench(make_dragbench(tmp_path, n=1), allow_pickle=True)
    model = tiny_model()
    config = dragdiffusion()
    config.lora = LoraSettings(steps=2, rank=4)
    config.schedule = SingleTimestep(max_steps=3)
    results = datasets.run(model, lambda prompt: tiny_cond(), samples, {"DragDiffusion": config}, log=lambda *a: None)
    assert set(results) == {"DragDiffusion", "DragDiffusion do-nothing"}
    row = results["DragDiffusion"][0]
    assert row["sample"] == "animals/sample_0" and math.isfinite(row["md"]) and row["md"] >= 0
    assert {"dai_1", "dai_5", "dai_10", "dai_20", "psnr_outside"} <= set(row)
    summary = datasets.summarise(results)
    assert summary["DragDiffusion"]["tasks"] == 1


def test_drag_alignment_benchmark_prints_cosines_for_each_update_count():
    """workbench/benchmarks/drag_alignment.py (the cheap score of where a preset's updates point) runs on the
    shipped model and prints one cosine with the move and one with erasing per update count."""
    import re
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run([sys.executable, "-m", "workbench.benchmarks.drag_alignment", "--presets", "DragDiffusion",
                          "--updates", "1,3", "--tasks", "2"], cwd=root, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    row = next(line for line in run.stdout.splitlines() if line.startswith("| DragDiffusion |"))
    values = [float(v) for v in re.findall(r"[+-]\d\.\d{3}", row)]  # move vs erase, then 2 per count
    assert len(values) == 5 and all(-1 <= v <= 1 for v in values)
    assert values[0] > 0  # a move also empties where the shape was: it shares that with the erase
    assert values[3] != values[1]  # the session went on optimising between the two counts


def test_drag_oracle_carries_a_shape_to_its_target_given_the_ground_truth_features():
    """workbench/benchmarks/drag_oracle.py (the frontier check behind the shapes world's drag settings): with
    the ground-truth edit's features as the target, enough updates move the shape onto its target
    and a handful leave it near where it was."""
    import re
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run([sys.executable, "-m", "workbench.benchmarks.drag_oracle", "--updates", "5,120", "--tasks", "1"],
                         cwd=root, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = {int(m[1]): (float(m[2]), int(m[3])) for m in re.finditer(r"^\| (\d+) \| ([\d.]+) \| (\d+)% \|$",
                                                                     run.stdout, re.M)}
    assert set(rows) == {5, 120}, run.stdout
    assert rows[120][0] < 0.2 and rows[120][0] < rows[5][0] - 0.5
    assert rows[120][1] == 100


def test_lora_fit_the_adapter_with_the_resnet_convs_fits_the_image_where_attention_alone_does_not():
    """workbench/benchmarks/lora_fit.py (why the shapes world's identity LoRA needs the ResNet convs): on this
    UNet, whose attention sits only at its coarsest levels, the attention-only adapter leaves the
    image's denoising loss where it was, the one with the convs lowers it; both help the image
    come back from strength 0.5."""
    import re
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run([sys.executable, "-m", "workbench.benchmarks.lora_fit", "--scenes", "1", "--steps", "100"],
                         cwd=root, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = {m[1]: [float(v) for v in m.groups()[1:]] for m in re.finditer(
        r"^\| ([a-z+]+) \| [\d,]+ \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) dB \| ([\d.]+) dB \|", run.stdout, re.M)}
    assert set(rows) == {"attention", "attention+resnets"}, run.stdout
    a_before, a_after, a_plain, a_with = rows["attention"]
    c_before, c_after, c_plain, c_with = rows["attention+resnets"]
    # 1 scene, 100 steps: 0.0861 -> 0.0792 with the convs, -> 0.0938 without (run-4 UNet; before it 0.9x)
    assert c_after < 0.95 * c_before and c_after < a_after
    assert a_after > 0.95 * a_before
    assert a_with > a_plain + 1 and c_with > c_plain + 1


def test_an_interrupted_shapes_bench_resumes_from_its_rows_file(tmp_path):
    """Hours-long CPU runs write each task's rows as they finish; --resume reads those back, runs only
    the missing tasks, and the final JSON is the same as an uninterrupted run's."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "bench.json"

    def bench(*extra):
        run = subprocess.run([sys.executable, "-m", "workbench", "bench", "--presets", "FastDrag", "--tasks", "3",
                              "--task-seed", "11", "--json", str(out), *extra], cwd=root, capture_output=True,
                             text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-2000:]
        return run.stdout, json.loads(out.read_text())

    _, whole = bench()
    rows_file = out.with_suffix(".rows.jsonl")
    lines = rows_file.read_text().splitlines()
    assert [json.loads(line)["task"] for line in lines] == [t["name"] for t in whole["tasks"]]
    # cut after the first task, and mark it so that reading it back is told apart from running it again
    first = json.loads(lines[0])
    first["results"]["FastDrag"][0]["seconds"] = -1.0
    rows_file.write_text(json.dumps(first) + "\n")
    stdout, resumed = bench("--resume")
    assert "resuming: 1 of 3 tasks" in stdout
    assert resumed["results"]["FastDrag"][0]["seconds"] == -1.0
    assert len(rows_file.read_text().splitlines()) == 3
    for method, rows in whole["results"].items():
        for a, b in zip(rows[1:], resumed["results"][method][1:]):
            assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}


def test_presets_with_the_same_identity_lora_train_it_once_with_a_lora_cache(tmp_path):
    """--lora-cache: DragDiffusion and StableDrag share world.adapt's LoRA recipe, so a task's LoRA is
    trained once, kept on disk and read back by later runs; the edits are those of a run without it."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    cache = tmp_path / "loras"

    def bench(name, *extra):
        out = tmp_path / f"{name}.json"
        run = subprocess.run([sys.executable, "-m", "workbench", "bench", "--presets", "DragDiffusion,StableDrag",
                              "--tasks", "1", "--task-seed", "11", "--set", "lora.steps=3",
                              "--set", "schedule.max_steps=2", "--json", str(out), *extra],
                             cwd=root, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-2000:]
        return json.loads(out.read_text())["results"]

    def edits(results):
        return {m: [{k: v for k, v in r.items() if k != "seconds"} for r in rows] for m, rows in results.items()}

    plain = bench("plain")
    cached = bench("cached", "--lora-cache", str(cache))
    assert len(list(cache.glob("*.safetensors"))) == 1  # one LoRA for both presets
    assert edits(cached) == edits(plain)
    # mark the kept LoRA's training time, so that reading it back is told apart from training it again
    meta = next(cache.glob("*.json"))
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "seconds": 1000.0}))
    again = bench("again", "--lora-cache", str(cache))
    assert edits(again) == edits(plain)
    assert all(r["seconds"] > 1000 for rows in again.values() for r in rows)


def test_bench_ci_pools_seeds_and_gives_intervals_around_the_mean(tmp_path, capsys):
    from workbench.benchmarks import bench_ci
    rng = np.random.default_rng(0)
    files = []
    for seed in (3, 4):
        rows = [{"task": f"{i:03d}", "kind": "move" if i % 4 else "rescale", "md_ratio": float(r),
                 "identity": bool(i % 3), "psnr_outside": 30.0, "dai_1": 0.02, "seconds": 10.0 + (i == 0) * 1000}
                for i, r in enumerate(rng.uniform(0.2, 0.6, 12))]
        path = tmp_path / f"seed{seed}.json"
        path.write_text(json.dumps({"task_seed": seed, "results": {"P": rows}}))
        files.append((path, rows))
    bench_ci.main([str(p) for p, _ in files])
    pooled = capsys.readouterr().out.split("\n\n")[1].splitlines()[2]
    cells = [c.strip() for c in pooled.split("|")[1:-1]]
    assert cells[:2] == ["P", "24"]
    moves = [r["md_ratio"] for _, rows in files for r in rows if r["kind"] == "move"]
    mean, low, high = (float(v) for v in cells[2].replace("[", "").replace("]", "").replace(",", "").split())
    assert mean == round(float(np.mean(moves)), 2) and low < mean < high and high - low < 0.2
    assert cells[-1] == "10"  # the median: one paused task does not move it
